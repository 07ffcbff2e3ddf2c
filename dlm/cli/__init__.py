"""Command line: `python -m dlm <step>` (or `dlm <step>`), one subcommand per pipeline stage.

Every step is a thin face over the stage's module; user errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys

from dlm import __version__
# Each module registers its steps; the import order is the order `dlm --help` lists them.
from dlm.cli import data, train, evaluate, cluster, bill  # noqa: F401,I001
from dlm.cli.common import COMMANDS, resolve_defaults
from dlm.pipeline.runner import HelpFormatter
from dlm.errors import DLMError


# ----------------------------------------------------------------------------- entry point


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes (an unknown flag, a value out of range) are one line, like every other user error."""

    def error(self, message: str):
        raise DLMError(f"{self.prog}: {message} (`{self.prog} --help` lists the options)")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The top-level parser; with `argv`, only the step it names gets its options (train's import TRL: slow)."""
    parser = ArgumentParser(prog="dlm", description="democratic-llm: sortition-aligned DPO on PRISM",
                            formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"dlm {__version__}")
    sub = parser.add_subparsers(dest="step", required=True, metavar="step")
    wanted = None if argv is None else next((a for a in argv if a in COMMANDS), "")
    for name, (add_args, run) in COMMANDS.items():
        p = sub.add_parser(name, help=(run.__doc__ or "").strip().splitlines()[0], description=run.__doc__,
                           formatter_class=HelpFormatter)
        if wanted is None or wanted == name:
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
