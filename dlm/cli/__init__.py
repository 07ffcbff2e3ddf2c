"""Command line: `python -m dlm <step>` (or `dlm <step>`), one subcommand per pipeline stage.

Every step is a thin face over the stage's module; user errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dlm import __version__
from dlm.cli.common import COMMANDS, resolve_defaults
from dlm.errors import DLMError
from dlm.io.checks import HelpFormatter

# The module of each step, in the order `dlm --help` lists them. A step's module registers it on import
# (`dlm.cli.common.command`); only the module of the step asked for is imported, so `dlm sortition`
# or `dlm design` does not load torch and TRL, which `dlm train` needs.
STEPS = {"explore": "data", "synth": "data", "sortition": "sortition", "prepare": "data", "design": "data",
         "train": "train", "make-tiny-model": "train", "questions": "evaluate", "evaluate": "evaluate",
         "judge-agreement": "evaluate", "summarize": "evaluate", "rank": "evaluate", "submit": "cluster",
         "status": "cluster", "bill": "bill"}


# ----------------------------------------------------------------------------- entry point


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes (an unknown flag, a value out of range) are one line, like every other user error."""

    def error(self, message: str):
        raise DLMError(f"{self.prog}: {message} (`{self.prog} --help` lists the options)")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The top-level parser: every step, or with `argv` naming one, only that step (and only its module imported)."""
    parser = ArgumentParser(prog="dlm", description="democratic-llm: sortition-aligned DPO on PRISM",
                            formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"dlm {__version__}")
    sub = parser.add_subparsers(dest="step", required=True, metavar="step")
    wanted = None if argv is None else next((a for a in argv if a in STEPS), None)
    for module in dict.fromkeys(STEPS.values()) if wanted is None else [STEPS[wanted]]:
        importlib.import_module(f"dlm.cli.{module}")
    for name in STEPS if wanted is None else [wanted]:
        add_args, run = COMMANDS[name]
        p = sub.add_parser(name, help=(run.__doc__ or "").strip().splitlines()[0], description=run.__doc__,
                           formatter_class=HelpFormatter)
        add_args(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one step; user errors become one line on stderr and exit code 2."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    try:
        args = build_parser(argv).parse_args(argv)
        resolve_defaults(args)
        return args.run(args)
    except DLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
