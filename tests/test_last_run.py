"""A notebook opened by hand starts from the last run's parameters and never overwrites that run's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from dlm.pipeline import last_run, runner

ROOT = Path(__file__).resolve().parent.parent
EVALUATE = ROOT / "notebooks" / "06_evaluate.ipynb"


def _namespace(stem: str, **changed) -> dict:
    """What a kernel holds after the parameters cell ran as committed, with the user's edits."""
    return {**last_run.defaults(stem), **changed}


def test_a_notebook_run_by_hand_uses_the_last_runs_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("DLM_ARTIFACTS", str(tmp_path))
    monkeypatch.delenv(last_run.RUNNER_ENV, raising=False)
    run = {"arms": "hard,soft,us_rep,full,contrast", "contrasts": "hard:contrast", "max_new_tokens": 48}
    last_run.record_stage("demo-run", "demo", "06_evaluate", run)
    hand = last_run.hand_run("06_evaluate", _namespace("06_evaluate"))
    assert {k: hand.values[k] for k in run} == run
    assert hand.run_id == "demo-run" and set(hand.from_run) == set(run) and not hand.moved
    assert hand.values["evaluation_output"] == last_run.defaults("06_evaluate")["evaluation_output"]


def test_a_hand_run_with_other_parameters_writes_elsewhere_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("DLM_ARTIFACTS", str(tmp_path))
    monkeypatch.delenv(last_run.RUNNER_ENV, raising=False)
    last_run.record_stage("demo-run", "demo", "06_evaluate", {"arms": "hard,soft,contrast", "max_new_tokens": 48})
    hand = last_run.hand_run("06_evaluate", _namespace("06_evaluate", max_new_tokens=16))
    output = last_run.defaults("06_evaluate")["evaluation_output"]
    assert hand.values["arms"] == "hard,soft,contrast"  # untouched parameters still follow the run
    assert hand.differing == {"max_new_tokens": (16, 48)}
    moved = Path(hand.values["evaluation_output"])
    assert moved != Path(output) and moved.name == Path(output).name and moved.parent.parent == Path(output).parent
    assert "max_new_tokens" in hand.note() and str(moved) in hand.note()
    again = last_run.hand_run("06_evaluate", _namespace("06_evaluate", max_new_tokens=16))
    assert again.values["evaluation_output"] == str(moved)  # the same settings reuse their own folder


def test_the_runner_and_the_switch_keep_the_cells_values(tmp_path, monkeypatch):
    monkeypatch.setenv("DLM_ARTIFACTS", str(tmp_path))
    last_run.record_stage("demo-run", "demo", "06_evaluate", {"arms": "hard,soft,contrast"})
    monkeypatch.setenv(last_run.RUNNER_ENV, "06_evaluate")
    ns = _namespace("06_evaluate", arms="hard")
    assert last_run.hand_run("06_evaluate", ns).values == ns and last_run.hand_run("06_evaluate", ns).note() == ""
    monkeypatch.delenv(last_run.RUNNER_ENV)
    ns = _namespace("06_evaluate", from_last_run=False)
    assert last_run.hand_run("06_evaluate", ns).values == ns


def test_no_recorded_run_leaves_the_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("DLM_ARTIFACTS", str(tmp_path))
    monkeypatch.delenv(last_run.RUNNER_ENV, raising=False)
    ns = _namespace("07_aligned_to_whom")
    hand = last_run.hand_run("07_aligned_to_whom", ns)
    assert hand.values == ns and hand.run_id is None


def test_metadata_jupyterlab_rewrites_does_not_change_the_stage_key(tmp_path):
    nb = nbformat.read(EVALUATE, as_version=4)
    copy = tmp_path / EVALUATE.name
    nbformat.write(nb, copy)
    before = runner.stage_key(copy, {}, upstream="u")
    nb.metadata["widgets"] = {"state": {}}
    nb.metadata["language_info"]["version"] = "3.99"
    nb.cells[0].metadata["jp-MarkdownHeadingCollapsed"] = True
    nb.cells[1]["outputs"] = []
    copy.write_text(json.dumps(nb, indent=2))  # JupyterLab's own formatting
    assert runner.stage_key(copy, {}, upstream="u") == before
    nb.cells[2].source += "\nprint('changed')"
    nbformat.write(nb, copy)
    assert runner.stage_key(copy, {}, upstream="u") != before
