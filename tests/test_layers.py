"""The package layering of docs/design.md: no import circles, and no package imports one above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Bottom to top: a module may import its own package and those listed before it, never one after it.
LAYERS = ("core", "data", "sortition", "preferences", "arms", "training", "llm", "stats", "alignment", "judging",
          "experiment", "pipeline", "notebook", "cli")
CORE = ("dlm", "dlm.errors", "dlm.paths", "dlm.io", "dlm.progress")


def module_names(package: Path) -> dict[str, Path]:
    """Dotted name → file of every module under `package`."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of the package that `name` imports, inside functions too."""
    top = name.split(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t.split(".")[0] == top and t != name:
                found.add(t)
    return found


def layer(module: str) -> str:
    """The layer a module belongs to: its subpackage, or core for the shared modules at the bottom."""
    if module == "dlm.__main__":
        return "cli"
    if module in CORE or module.startswith("dlm.io."):  # dlm.io is a package of file helpers, all core
        return "core"
    return module.split(".")[1]


def violations(package: Path) -> list[str]:
    """Every import that goes up the layers, and every circle, each naming the modules."""
    known = module_names(package)
    graph = {m: imports(m, p, known) for m, p in known.items()}
    problems = []
    for m, targets in sorted(graph.items()):
        for t in sorted(targets):
            if LAYERS.index(layer(t)) > LAYERS.index(layer(m)):
                problems.append(f"{m} imports {t}: {layer(m)} may not import {layer(t)}, which is above it")
    # A package's __init__ naming its own modules is its face, not a dependency of theirs.
    edges = {m: {t for t in ts if not (known[m].name == "__init__.py" and t.startswith(m + "."))}
             for m, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                problems.append("circle: " + " -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    return problems


def test_dlm_imports_only_downward_and_has_no_circles():
    assert violations(ROOT / "dlm") == []


def test_every_subpackage_has_a_declared_layer():
    packages = {f"dlm.{p.parent.name}" for p in (ROOT / "dlm").glob("*/__init__.py")}
    assert {p.removeprefix("dlm.") for p in packages if p not in CORE} <= set(LAYERS)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "dlm" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "dlm"


def test_an_upward_import_inside_a_function_is_reported_naming_both_modules(tmp_path):
    package = _write(tmp_path, {"__init__.py": "", "errors.py": "", "stats/__init__.py": "",
                                "stats/winrates.py": "def f():\n    from dlm.experiment.designs import design\n",
                                "experiment/__init__.py": "", "experiment/designs.py": "def design():\n    pass\n"})
    problems = violations(package)
    assert problems == ["dlm.stats.winrates imports dlm.experiment.designs: stats may not import experiment, "
                        "which is above it"]


def test_a_circle_is_reported(tmp_path):
    package = _write(tmp_path, {"__init__.py": "", "judging/__init__.py": "",
                                "judging/a.py": "from dlm.judging import b\n",
                                "judging/b.py": "def g():\n    from dlm.judging.a import x\n"})
    assert violations(package) == ["circle: dlm.judging.a -> dlm.judging.b -> dlm.judging.a"]


def test_downward_imports_pass(tmp_path):
    package = _write(tmp_path, {"__init__.py": "", "io.py": "", "stats/__init__.py": "",
                                "stats/winrates.py": "from dlm.io import x\n", "cli/__init__.py": "",
                                "cli/main.py": "from dlm.stats.winrates import f\n"})
    assert violations(package) == []


@pytest.mark.parametrize("step", ["sortition", "design", "prepare", "explore", "bill", "submit", "summarize", "evaluate"])
def test_a_step_that_loads_no_model_imports_neither_torch_nor_trl(step):
    """Only the step's own module is imported (dlm.cli.STEPS), and it defers torch and TRL to where a model is loaded."""
    import subprocess
    import sys

    code = (f"import sys; from dlm.cli import build_parser; build_parser([{step!r}])\n"
            "print(sorted(m for m in ('torch', 'trl', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_step_is_registered_by_the_module_the_dispatcher_imports_for_it():
    import importlib

    from dlm.cli import STEPS, build_parser
    from dlm.cli.common import COMMANDS

    build_parser()  # every module: their registrations
    assert list(STEPS) == [s for s in STEPS if s in COMMANDS] and set(COMMANDS) == set(STEPS)
    for step, module in STEPS.items():
        assert COMMANDS[step][1].__module__ == importlib.import_module(f"dlm.cli.{module}").__name__
