"""docs/: the reference pages' generated blocks equal what the parsers and notebooks produce today."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_docs_equal_the_generated_ones():
    gen = _generator()
    stale = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if gen.regenerate(p.read_text()) != p.read_text()]
    assert stale == [], "run `python docs/generate.py` and commit the pages"


def test_every_dlm_command_and_notebook_is_documented_on_some_page():
    from dlm.pipeline import runner
    from dlm.cli.common import COMMANDS

    blocks = set(re.findall(r"<!-- generated: (\w+) ([\w.-]+) -->", "".join(
        p.read_text() for p in (ROOT / "docs").glob("*.md"))))
    assert {name for kind, name in blocks if kind == "help"} >= set(COMMANDS) | {"run_all"}
    assert {name for kind, name in blocks if kind == "parameters"} == {nb.stem for nb in runner.notebooks()}


def test_readme_links_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    assert [p.name for p in sorted((ROOT / "docs").glob("*.md")) if f"docs/{p.name}" not in readme] == []
