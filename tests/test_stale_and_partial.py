"""Nothing stale is reused and nothing partial is used silently (issue 24): stage keys over folders, runs
trained or built with other settings, hand-edited question files, partial question folders, sortition's locks
and the temp files a killed run leaves."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest
from conftest import ROOT
from fake_openai import FakeOpenAI
from test_jobs import fake_checkpoint, fake_dataset, tmp_profile

from dlm import cli
from dlm.experiment import jobs, runs
from dlm.io import commit_output_set, lock_path, output_lock
from dlm.judging import questions as question_module
from dlm.pipeline import runner

POOL = "user_id,gender,age\n" + "".join(f"u{i},{'fm'[i % 2]},{['young', 'old'][i // 2 % 2]}\n" for i in range(8))
PANEL = "panel_size: 2\nattributes:\n  - {name: gender, quotas: {f: [1, 1], m: [1, 1]}}\n" \
        "  - {name: age, quotas: {young: [1, 1], old: [1, 1]}}\n"
CONSTITUTION = "1. Choose the honest answer.\n2. Choose the kind answer.\n3. Choose the brief answer.\n"


def sortition(tmp: Path, *extra) -> list[str]:
    (tmp / "pool.csv").write_text(POOL)
    (tmp / "panel.yaml").write_text(PANEL)
    return [str(a) for a in ["sortition", "--pool", tmp / "pool.csv", "--panel-config", tmp / "panel.yaml",
                             "--num-panel-samples", "20", "--output", tmp / "probs.csv", *extra]]


def held(path: Path) -> int:
    """Hold `path`'s output lock as a second process would; returns the descriptor to close."""
    fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b"pid 4242, started 2026-12-07 06:00:00: dlm sortition\n")
    return fd


# ----------------------------------------------------------------------------- stage keys


def test_editing_a_file_inside_a_folder_a_parameter_names_changes_the_stage_key(tmp_path, monkeypatch):
    """Changing 40 participants' gender in a prism_source folder must rerun 02, not reuse its old output."""
    (tmp_path / "configs").mkdir()
    source = tmp_path / "prism"
    source.mkdir()
    (source / "survey.jsonl").write_text('{"user_id": "u1", "gender": "Female"}\n')
    monkeypatch.setattr(runner, "ROOT", tmp_path)
    before = runner._config_hash({"prism_source": str(source)})
    assert runner._config_hash({"prism_source": str(source)}) == before  # stable while nothing changes
    (source / "survey.jsonl").write_text('{"user_id": "u1", "gender": "Male"}\n')
    assert runner._config_hash({"prism_source": str(source)}) != before


# ----------------------------------------------------------------------------- submit / status


def test_a_run_trained_with_another_learning_rate_or_seed_is_stale_and_submitted_again(tmp_path):
    design, _, _ = jobs.profile_settings(str(tmp_profile(tmp_path)), "train")
    for name in ("hard", "hard-r1", "soft"):
        fake_dataset(design, name)
    folder = fake_checkpoint(design, "hard", steps=design.steps())
    summary = json.loads((folder / "training_summary.json").read_text())
    settings = runs.train_settings(design, "hard")
    summary["config"] = {"finetune": settings["finetune"], "dpo": {k: v for k, v in settings.items() if k != "finetune"}}
    (folder / "training_summary.json").write_text(json.dumps(summary))
    assert runs.unfinished("train", design, "hard") == ""
    for key, value in (("learning_rate", 0.5), ("seed", settings["seed"] + 7)):
        summary["config"]["dpo"] = {**{k: v for k, v in settings.items() if k != "finetune"}, key: value}
        (folder / "training_summary.json").write_text(json.dumps(summary))
        state = {s.name: s for s in jobs.status("train", design)}["hard"]
        assert state.state == "stale" and f"{key} {value!r}" in state.detail, state


def test_a_dataset_built_with_another_eval_ratio_is_stale(tmp_path):
    design, _, _ = jobs.profile_settings(str(tmp_profile(tmp_path)), "prepare")
    run = design.find("soft")
    path = design.dataset_path(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = vars(design.prepare_options(run))
    for ratio, expected in ((options["eval_ratio"], "done"), (0.3, "stale")):
        with output_lock(path):
            commit_output_set(path, {path: lambda tmp: tmp.write_text("{}\n")},
                              {"config": {**options, "eval_ratio": ratio}})
        state = {s.name: s for s in jobs.status("prepare", design)}["soft"]
        assert state.state == expected, state
    assert "eval_ratio 0.3" in state.detail


# ----------------------------------------------------------------------------- questions


def test_a_hand_edited_question_file_is_reported_on_rerun_not_adopted(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    (tmp_path / "c.txt").write_text(CONSTITUTION)
    args = ["questions", "--backend", "template", "--n-questions", "2", "--constitution-path", str(tmp_path / "c.txt"),
            "--output-dir", str(tmp_path / "q")]
    assert cli.main(args) == 0
    f = tmp_path / "q" / "clause_02.json"
    edited = f.read_text().replace("I want", "I need")
    f.write_text(edited)
    recorded = (tmp_path / "q" / "questions_run.json").read_text()
    capsys.readouterr()
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "clause_02.json was changed since questions_run.json recorded it" in err[0], err
    assert f.read_text() == edited and (tmp_path / "q" / "questions_run.json").read_text() == recorded
    assert cli.main(args + ["--force"]) == 0  # --force writes the clause again
    assert "I need" not in f.read_text()


def failed_questions_folder(tmp_path: Path, monkeypatch) -> Path:
    """A questions run that finished clauses 01 and 02, then failed on clause 03."""
    (tmp_path / "c.txt").write_text(CONSTITUTION)
    finalise = question_module._finalise

    def failing(writer, clause, *args):
        if clause.clause_id == "03":
            raise RuntimeError("the server went away")
        return finalise(writer, clause, *args)

    monkeypatch.setattr(question_module, "_finalise", failing)
    with pytest.raises(RuntimeError):
        question_module.generate_questions(tmp_path / "c.txt", tmp_path / "q", backend="template", n_questions=2)
    monkeypatch.undo()
    return tmp_path / "q"


def test_evaluate_refuses_a_failed_questions_folder_unless_allow_partial(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    folder = failed_questions_folder(tmp_path, monkeypatch)
    assert json.loads((folder / "questions_run.json").read_text())["runs"][-1]["status"].startswith("failed")
    with FakeOpenAI() as server:
        args = ["evaluate", "--questions-dir", str(folder), "--models", "m1", "m2", "--answer-backend", "openai",
                "--answer-base-url", server.url, "--judge-model", "fake-judge", "--judge-base-url", server.url,
                "--output", str(tmp_path / "e.jsonl")]
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        capsys.readouterr()
        assert cli.main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is partial (clause(s) 03 unfinished; its last questions run ended 'failed" in err[0]
        assert not (tmp_path / "e.jsonl").exists()
        assert cli.main(args + ["--allow-partial"]) == 0
    records = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert {r["clause_id"] for r in records} == {"01", "02"}
    summary = json.loads((tmp_path / "e.summary.json").read_text())
    assert "clause(s) 03 unfinished" in summary["partial_questions"]
    assert "partial questions folder" in capsys.readouterr().err


def test_notebook_06_passes_its_allow_partial_parameter_to_every_evaluation():
    """06's questions go through evaluate in several cells (LLM judge, oracle judges, second judge, listwise):
    every one of them refuses a partial folder unless the notebook's `allow_partial` parameter says otherwise."""
    import ast

    from dlm.experiment.profiles import declared_parameters

    notebook = ROOT / "notebooks" / "06_evaluate.ipynb"
    assert "allow_partial" in declared_parameters(notebook)  # a declared parameter (profiles and papermill set it)
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    source = "\n".join("".join(line for line in c["source"] if not line.startswith("%")) for c in cells)
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)
             and getattr(n.func, "attr", None) in ("evaluate", "judge_as_groups")]
    kwargs = {n.targets[0].id: {k.arg for k in n.value.keywords} for n in ast.walk(ast.parse(source))
              if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call) and getattr(n.value.func, "id", "") == "dict"
              and isinstance(n.targets[0], ast.Name)}
    assert len(calls) >= 5
    for call in calls:
        passed = {k.arg for k in call.keywords} | {a for k in call.keywords if k.arg is None
                                                   for a in kwargs.get(getattr(k.value, "id", ""), set())}
        assert "allow_partial" in passed, ast.unparse(call)[:80]


# ----------------------------------------------------------------------------- sortition: locks and temps


def test_sortition_takes_every_output_lock_before_any_work(tmp_path, capsys):
    """A second run sharing only --panel-output stops at once: nothing computed, nothing written."""
    fd = held(tmp_path / "panel.csv")
    try:
        assert cli.main(sortition(tmp_path, "--panel-output", str(tmp_path / "panel.csv"))) == 2
    finally:
        os.close(fd)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sortition --panel-output" in err[0] and "pid 4242" in err[0], err
    assert not (tmp_path / "probs.csv").exists()


def test_sortition_lock_comes_before_reading_the_pool(tmp_path, capsys):
    args = sortition(tmp_path)
    (tmp_path / "pool.csv").unlink()  # the lock is checked first: the pool is not even read
    fd = held(tmp_path / "probs.csv")
    try:
        assert cli.main(args) == 2
    finally:
        os.close(fd)
    assert "is being written by another run" in capsys.readouterr().err


def test_temp_files_of_a_killed_run_are_removed_by_the_next_run(tmp_path, tiny_prism, monkeypatch):
    monkeypatch.chdir(ROOT)
    stale = [tmp_path / ".panel.csv.k1ll3d.tmp", tmp_path / ".rest.csv.k1ll3d.tmp", tmp_path / ".probs.csv.x.tmp"]
    for f in stale:
        f.write_text("half")
    assert cli.main(sortition(tmp_path, "--panel-output", str(tmp_path / "panel.csv"), "--remaining-output",
                              str(tmp_path / "rest.csv"))) == 0
    # prepare's rows are written through a temp file inside the set's own temp file
    nested = tmp_path / "..out.jsonl.abc123.tmp.def456.tmp"
    nested.write_text("half")
    assert cli.main(["prepare", "--mode", "full", "--survey", str(tiny_prism / "survey.jsonl"), "--utterances",
                     str(tiny_prism / "utterances.jsonl"), "--output", str(tmp_path / "out.jsonl")]) == 0
    assert not [f for f in [*stale, nested] if f.exists()]
    assert not list(tmp_path.glob("*.lock"))
