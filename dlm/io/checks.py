"""Checks of what a user passes, before any work: numeric ranges (argparse `type=` helpers) and output paths;
and the help format of every command (each option ends with its default)."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dlm.errors import DLMError


def _number(text: Any, kind: type) -> int | float:
    """`text` as an int or a finite float; ArgumentTypeError otherwise."""
    if isinstance(text, bool):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    try:
        value = kind(text)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _ranged(kind: type, test: Callable[[Any], bool], rule: str) -> Callable[[Any], Any]:
    def parse(text: Any) -> Any:
        value = _number(text, kind)
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value
    parse.__name__ = rule.replace(" ", "_")  # argparse names the type in its messages
    return parse


def int_at_least(low: int) -> Callable[[Any], int]:
    """An argparse `type=` that takes integers >= `low` (-1 where -1 means "the default")."""
    return _ranged(int, lambda v: v >= low, f"an integer >= {low}")


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
positive_float = _ranged(float, lambda v: v > 0, "a number > 0")
non_negative_float = _ranged(float, lambda v: v >= 0, "a number >= 0")
probability = _ranged(float, lambda v: 0 <= v <= 1, "a number between 0 and 1")
share_below_one = _ranged(float, lambda v: 0 <= v < 1, "a number >= 0 and < 1")


def check_value(name: str, value: Any, parse: Callable[[Any], Any]) -> None:
    """DLMError naming `name` when `value` breaks the range `parse` checks (for settings not read by argparse)."""
    if value is None:
        return
    try:
        parse(value)
    except argparse.ArgumentTypeError as exc:
        raise DLMError(f"{name} {exc}") from None


def _key(path: str | Path) -> str:
    return os.path.normcase(os.path.realpath(Path(path).expanduser()))


def check_outputs(outputs: Mapping[str, str | Path | None], inputs: Mapping[str, str | Path | None] | None = None,
                  folders: tuple[str, ...] = ()) -> None:
    """Before any work: no output is an input or another output, and no file output is an existing folder.

    `outputs` and `inputs` map a flag (`--output`) to its path (None: not given); flags in `folders`
    name output folders. Paths are compared after resolving links, so `./x` and a link to `x` clash too.
    """
    inputs = inputs or {}
    seen: dict[str, str] = {}
    for flag, path in inputs.items():
        if path is not None and str(path) != "":
            seen.setdefault(_key(path), flag)
    given_outputs = {flag: path for flag, path in outputs.items() if path is not None and str(path) != ""}
    for flag, path in given_outputs.items():
        key = _key(path)
        if key in seen:
            other = seen[key]
            role = "an input" if other in inputs else "another output"
            raise DLMError(f"{flag} {path} is also {other} ({role}); writing it would replace that file: "
                           "give another path")
        seen[key] = flag
        if flag not in folders and Path(path).is_dir():
            raise DLMError(f"{flag} {path} is an existing folder; give the path of a file (inside it or elsewhere)")
        if flag in folders and Path(path).exists() and not Path(path).is_dir():
            raise DLMError(f"{flag} {path} is an existing file; give a folder")


class HelpFormatter(argparse.HelpFormatter):
    """Help that ends each option with its default, unless the text already says it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or "default" in text.lower() or action.required
                or action.default is None or action.default is False or action.default == argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"
