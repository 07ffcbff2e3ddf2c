"""Command line: `python -m dlm <step>` (or `dlm <step>`), one subcommand per pipeline stage.

Every step is a thin face over the stage's module; user errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys

from dlm import __version__
# Each module registers its steps; the import order is the order `dlm --help` lists them.
from dlm.cli import data, train, evaluate  # noqa: F401,I001
from dlm.cli.common import COMMANDS, HelpFormatter, resolve_defaults
from dlm.errors import DLMError


# ----------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered step."""
    parser = argparse.ArgumentParser(prog="dlm", description="democratic-llm: sortition-aligned DPO on PRISM",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"dlm {__version__}")
    sub = parser.add_subparsers(dest="step", required=True, metavar="step")
    for name, (add_args, run) in COMMANDS.items():
        p = sub.add_parser(name, help=(run.__doc__ or "").strip().splitlines()[0], description=run.__doc__,
                           formatter_class=HelpFormatter)
        add_args(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one step; user errors become one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
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
