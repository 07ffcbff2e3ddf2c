"""Paths: one project root and one artifacts root, whatever the working directory; hints name real flags."""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dlm import paths
from dlm.errors import DLMError

ROOT = Path(__file__).resolve().parent.parent


def test_artifacts_paths_live_under_the_artifacts_root_and_others_under_the_project_root(monkeypatch, tmp_path):
    monkeypatch.setenv(paths.ARTIFACTS_ENV, str(tmp_path / "art"))
    assert paths.resolve("artifacts/ci/sortition") == str(tmp_path / "art" / "ci" / "sortition")
    assert paths.resolve("configs/panel_config.yaml") == str(ROOT / "configs" / "panel_config.yaml")
    assert paths.resolve(str(tmp_path / "mine.yaml")) == str(tmp_path / "mine.yaml")
    assert [paths.resolve(v) for v in ("", "hub", "hub:someone/prism")] == ["", "hub", "hub:someone/prism"]
    monkeypatch.setenv(paths.ARTIFACTS_ENV, "scratch/art")  # relative: against the project root
    assert paths.artifacts_root() == ROOT / "scratch" / "art"
    monkeypatch.delenv(paths.ARTIFACTS_ENV)
    assert paths.artifacts_root() == ROOT / "artifacts"


def test_a_model_is_a_project_path_or_a_hub_id(monkeypatch, tmp_path):
    monkeypatch.setenv(paths.ARTIFACTS_ENV, str(tmp_path))
    assert paths.model("artifacts/models/tiny") == str(tmp_path / "models" / "tiny")
    assert paths.model("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"
    assert paths.model("gpt-4o-mini") == "gpt-4o-mini"


def test_the_root_is_found_from_any_working_directory_and_can_be_overridden(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert paths.project_root() == ROOT
    monkeypatch.setenv(paths.ROOT_ENV, str(tmp_path))
    assert paths.project_root() == tmp_path.resolve()
    monkeypatch.setenv(paths.ROOT_ENV, str(tmp_path / "missing"))
    with pytest.raises(DLMError, match="DLM_ROOT=.*is not a folder"):
        paths.project_root()


def test_a_kernel_started_in_notebooks_reads_the_projects_files():
    """JupyterLab starts a notebook's kernel in notebooks/: the notebooks' default paths still resolve."""
    code = "from dlm import paths; print(paths.resolve('configs/panel_config.yaml')); print(paths.resolve('artifacts/x'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "notebooks", capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    config, artifact = out.stdout.split()
    assert Path(config).is_file() and Path(artifact) == paths.artifacts_root() / "x"


def test_cli_defaults_resolve_against_the_project_but_typed_paths_stay_relative_to_cwd(monkeypatch, tmp_path):
    from dlm.cli import build_parser
    from dlm.cli.common import resolve_defaults

    monkeypatch.chdir(tmp_path)
    args = resolve_defaults(build_parser().parse_args(["sortition"]))
    assert args.output == str(paths.artifacts_root() / "sortition" / "probs.csv")
    assert args.panel_config == str(ROOT / "configs" / "panel_config.yaml")
    args = resolve_defaults(build_parser().parse_args(["sortition", "--output", "p.csv", "--panel-config", "q.yaml"]))
    assert (args.output, args.panel_config) == ("p.csv", "q.yaml")


# ----------------------------------------------------------------------------- hints name real flags

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")
HINT_CALLS = ("DLMError", "warn", "print")  # errors, warnings and messages a user reads


def _parser_flags() -> set[str]:
    from dlm.pipeline import runner
    from dlm.cli import build_parser

    flags: set[str] = set()

    def walk(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            flags.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)

    walk(build_parser())
    walk(runner.build_parser())
    return flags


def _hinted_flags() -> dict[str, list[str]]:
    """Every --flag written in an error, warning or printed message, or in an option's help, of the package."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "dlm").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", "")
            parts = node.args if name in HINT_CALLS or name.endswith("Error") else []
            parts = [*parts, *(k.value for k in node.keywords if k.arg == "help")]
            for part in parts:
                for const in ast.walk(part):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str):
                        for flag in FLAG.findall(const.value):
                            found.setdefault(flag, []).append(f"{path.relative_to(ROOT)}:{const.lineno}")
    return found


def test_every_flag_a_message_names_exists_in_a_parser():
    hinted, known = _hinted_flags(), _parser_flags()
    assert {"--survey", "--eval-ratio", "--only", "--panel-config"} <= set(hinted)  # the scan sees messages
    assert {f: where for f, where in hinted.items() if f not in known} == {}


def test_the_prism_hint_names_settings_that_exist():
    from dlm.data.prism import load_prism

    with pytest.raises(DLMError) as exc:
        load_prism(ROOT / "no-such-prism")
    assert "--prism-source" not in str(exc.value) and "prism_source: hub" in str(exc.value)


# ----------------------------------------------------------------------------- every option says what it does


def _options():
    from dlm.pipeline import runner
    from dlm.cli import build_parser

    top = build_parser()
    subs = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, parser in [*subs.items(), ("run_all.py", runner.build_parser())]:
        for action in parser._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                yield name, parser, action


def test_every_option_of_every_command_has_help_with_its_default():
    missing = []
    for name, parser, action in _options():
        formatter = parser._get_formatter()
        shown = formatter._expand_help(action) if action.help else ""
        switch = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))  # off unless given
        if not shown or not ("default" in shown.lower() or action.required or switch):
            missing.append(f"{name} {action.option_strings[0]}: {shown!r}")
    assert missing == []
