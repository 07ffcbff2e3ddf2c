"""Rewrite the generated blocks of docs/*.md from the command line's own help and the notebooks' parameters cells.

A block is written `<!-- generated: help COMMAND -->` … `<!-- end generated -->` (COMMAND a `dlm`
subcommand, or `run_all`) or `<!-- generated: parameters NOTEBOOK -->` … (a notebook's stem).
`python docs/generate.py` rewrites every block; `--check` changes nothing and exits 1 naming the
pages that differ (tests/test_docs.py runs it, so the pages cannot drift from the code).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BLOCK = re.compile(r"(<!-- generated: (\w+) ([\w.-]+) -->\n)(.*?)(<!-- end generated -->)", re.S)
WIDTH = "100"  # help is wrapped to this many columns whatever the terminal


def command_help(name: str) -> str:
    """`dlm NAME --help` (or `python run_all.py --help`) as text."""
    os.environ["COLUMNS"] = WIDTH
    sys.path.insert(0, str(ROOT))
    from dlm.pipeline import runner
    from dlm.cli import build_parser

    if name == "run_all":
        parser = runner.build_parser()
        parser.prog = "python run_all.py"
    else:
        subs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
        if name not in subs:
            raise SystemExit(f"docs: no dlm command {name!r} (known: {', '.join(subs)})")
        parser = subs[name]
        parser.prog = f"python -m dlm {name}"
    return parser.format_help()


def parameters_table(stem: str) -> str:
    """A notebook's parameters (name, default, meaning) as a Markdown table, from its parameters cell."""
    path = ROOT / "notebooks" / f"{stem}.ipynb"
    if not path.is_file():
        raise SystemExit(f"docs: no notebook {path.relative_to(ROOT)}")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    source = next("".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    rows = ["| parameter | default | meaning |", "| --- | --- | --- |"]
    for line in source.splitlines():  # `name = value  # meaning`, one per line (the parameters cell's convention)
        match = re.match(r"^(\w+) = (.+?)(?:\s+# (.*))?$", line)
        if match:
            name, default, meaning = match.groups()
            rows.append(f"| `{name}` | `{default}` | {(meaning or '').replace('|', chr(92) + '|')} |")
    return "\n".join(rows) + "\n"


def render(kind: str, arg: str) -> str:
    """The text of one generated block."""
    if kind == "help":
        return f"```text\n{command_help(arg).rstrip()}\n```\n"
    if kind == "parameters":
        return parameters_table(arg)
    raise SystemExit(f"docs: unknown block kind {kind!r} (help or parameters)")


def regenerate(text: str) -> str:
    """A page with every generated block rewritten."""
    return BLOCK.sub(lambda m: m.group(1) + render(m.group(2), m.group(3)) + m.group(5), text)


def main(argv: list[str] | None = None) -> int:
    """Rewrite docs/*.md (or, with --check, report the pages whose generated blocks are stale)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page is stale")
    args = parser.parse_args(argv)
    stale = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        new = regenerate(text)
        if new != text:
            stale.append(page.name)
            if not args.check:
                page.write_text(new, encoding="utf-8")
    if args.check and stale:
        print(f"stale generated blocks in {', '.join(stale)}: run `python docs/generate.py`", file=sys.stderr)
        return 1
    print(f"{'checked' if args.check else 'wrote'} {len(list(DOCS.glob('*.md')))} pages"
          + (f"; updated {', '.join(stale)}" if stale and not args.check else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
