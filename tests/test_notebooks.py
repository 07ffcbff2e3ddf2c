"""Notebooks: committed clean, executed end to end by run_all.py on the fast `ci` profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from dlm import paths

from dlm.pipeline import last_run, runner
from dlm.pipeline.report import accuracy_text
from dlm.errors import DLMError
from dlm.io import URL_SECRETS_ENV

ROOT = Path(__file__).resolve().parent.parent


def ci_artifacts(relative: str = "") -> Path:
    """Where the ci profile writes (`artifacts/ci/…` under the suite's temporary artifacts root)."""
    return paths.artifacts_root() / "ci" / relative
NOTEBOOKS = runner.notebooks()
CI_LOG: list[str] = []  # what the ci run printed, line by line
CANARIES = {"OPENAI_API_KEY": "sk-CANARY-openai-5f1e2d", "HF_TOKEN": "hf_CANARYtokenA1B2C3"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs_and_a_parameters_cell_first(path):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert nb.metadata["kernelspec"]["language"] == "python"
    assert set(nb.metadata) <= {"kernelspec", "language_info"}  # no noisy metadata


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory) -> Path:
    """Every notebook executed once under the `ci` profile, with canary secrets in the environment."""
    saved = {k: os.environ.get(k) for k in CANARIES}
    os.environ.update(CANARIES)
    try:
        return runner.run_profile("ci", run_id="pytest-ci", runs_dir=tmp_path_factory.mktemp("runs"),
                                  log=lambda m, **k: CI_LOG.append(m), force=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_no_secret_reaches_any_file_the_run_writes(ci_run):
    scanned = 0
    for folder in (ci_run, ci_artifacts(), paths.artifacts_root() / "stages"):
        for path in folder.rglob("*"):
            if path.is_file():
                scanned += 1
                data = path.read_bytes()
                assert not any(v.encode() in data for v in CANARIES.values()), path
    assert scanned > 30


def outputs(nb_path: Path) -> tuple[int, str]:
    """(number of PNG images, all text output) of an executed notebook."""
    nb = nbformat.read(nb_path, as_version=4)
    images, text = 0, []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", out
            data = out.get("data", {})
            images += "image/png" in data
            text.append(out.get("text", "") + data.get("text/plain", "") + data.get("text/markdown", ""))
    return images, "\n".join(text)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_with_inline_plots(ci_run, path):
    images, _ = outputs(ci_run / path.name)
    # 03: the overview and one composition per arm the ci profile prepares (hard, soft, full)
    assert images >= {"01": 2, "02": 3, "03": 4, "04": 1, "05": 1, "06": 4, "07": 1}[path.stem[:2]]


def test_explore_notebook_reports_synthetic_sample(ci_run):
    _, text = outputs(ci_run / "01_explore_prism.ipynb")
    assert "SYNTHETIC sample, not PRISM" in text and "1,500 participants" in text
    assert "US-REP: 230 of 386" in text


def test_sortition_notebook_reports_leximin_above_legacy(ci_run):
    _, text = outputs(ci_run / "02_sortition.ipynb")
    assert "Feasible" in text and "certified levels" in text
    probs = {a: __import__("pandas").read_csv(ci_artifacts("sortition") / f"{a}_probs.csv") for a in ("legacy", "leximin")}
    assert probs["leximin"]["probability"].min() > probs["legacy"]["probability"].min()
    assert probs["leximin"]["probability"].sum() == pytest.approx(40)


def test_prepare_notebook_writes_every_arm_with_manifest(ci_run):
    from dlm.experiment import designs as experiment

    arms = runner.load_profile("ci")["notebooks"]["03_prepare"]["arms"].split(",")
    assert set(arms) <= set(experiment.load_arms())
    for dataset in ("hard", "hard-r1", "soft", "full"):  # the ci profile's 03: 2 draws of hard, soft, full
        path = ci_artifacts("data") / f"{dataset}.jsonl"
        man = json.loads(Path(f"{path}.manifest.json").read_text())
        assert man["counts"]["rows"] == len(path.read_text().splitlines()) > 0


def test_training_and_evaluation_notebooks_leave_checkpoints_and_summaries(ci_run):
    for run in ("hard", "hard-r1", "soft"):  # the ci profile asks for 2 panel draws × 1 seed
        summary = json.loads((ci_artifacts("checkpoints") / run / "training_summary.json").read_text())
        assert summary["train_rows"] > 0 and summary["metrics"]["train_loss"] > 0
        assert summary["steps"] == 5 and summary["train_weight_mean"] == pytest.approx(1.0)  # matched budget
    ev = json.loads((ci_artifacts("evaluations") / "compare.summary.json").read_text())
    # base against every run; matched replicates of the two arms; primary soft:hard as declared
    assert set(ev["pairs"]) == {"base vs hard", "base vs hard-r1", "base vs soft", "soft vs hard", "soft vs hard-r1"}
    assert ev["pairs"]["soft vs hard"]["primary"] and "bradley_terry" in ev
    assert set(ev["arms"]) == {"base vs hard", "base vs soft", "soft vs hard"}
    assert ev["arms"]["soft vs hard"]["primary"] and ev["arms"]["soft vs hard"]["runs"] == 2
    assert ev["arms"]["base vs soft"]["runs"] == 1 and "p_holm_secondary" in ev["arms"]["base vs hard"]
    _, text = outputs(ci_run / "05_questions.ipynb")
    assert "4 clauses" in text and "template (no LLM)" in text


def test_run_manifest_records_profile_commit_times_and_outputs(ci_run):
    man = json.loads((ci_run / "manifest.json").read_text())
    assert man["profile"] == "ci" and man["status"] == "ok"
    assert set(man["notebooks"]) == {p.stem for p in NOTEBOOKS}
    assert all(v["status"] in ("ok", "reused") for v in man["notebooks"].values())
    assert "artifacts/ci/data" in man["notebooks"]["03_prepare"]["outputs"]
    report = (ci_run / "report.html").read_text()
    assert report.count("data:image/png") >= 15 and "06_evaluate" in report


def test_report_opens_with_a_summary_read_from_the_runs_own_outputs(ci_run):
    """The first screen: the design, 07's and 06's headline plots, the primary contrast with its interval, the
    planted verdict and the provenance, with the numbers of compare.summary.json; no raw trainer log dicts."""
    from html.parser import HTMLParser

    page = (ci_run / "report.html").read_text()
    assert "{'loss'" not in page and "FutureWarning" not in page and "widget-view" not in page
    summary = page[page.index('<section id="summary">'):page.index("</section>")]
    assert page.index('<section id="summary">') < page.index('<section id="01_explore_prism">')
    # 07's accuracy by group, 06's forest plot and its listwise Plackett–Luce worths (the ci profile judges both ways)
    assert summary.count("data:image/png") == 3

    class Text(HTMLParser):
        def __init__(self):
            super().__init__()
            self.parts = []

        def handle_data(self, data):
            self.parts.append(data)

    parser = Text()
    parser.feed(summary)
    text = " ".join(parser.parts)
    ev = json.loads((ci_artifacts("evaluations") / "compare.summary.json").read_text())
    primary = ev["arms"]["soft vs hard"]
    assert primary["primary"] and "soft vs hard" in text
    estimable = primary["ci_low"] is not None  # null when uninformative (all ties in a tiny run)
    interval = f" [{primary['ci_low']:.3f}, {primary['ci_high']:.3f}]" if estimable else ""
    assert f"soft vs hard: win rate {primary['win_rate']:.3f}{interval}" in text
    aligned = json.loads(ci_artifacts("evaluations/aligned_to_whom.json").read_text())
    assert aligned["synthetic"] and set(aligned["accuracy"]) == {"base", "hard", "soft"}
    for arm, acc in aligned["accuracy"].items():
        assert f"{arm} {acc['estimate']:.3f}" in text
    assert "Planted effect" in text and "profile ci" in text.replace("  ", " ")
    assert "2 arms (hard, soft) × 2 panel draw(s) × 1 training seed(s) = 3 trained models, 5 DPO steps" in text


def test_training_reports_progress_lines_not_log_dicts(ci_run):
    nb = nbformat.read(ci_run / "04_train_dpo.ipynb", as_version=4)
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for c in nb.cells
                   for o in c.get("outputs", []))
    assert "{'loss'" not in text
    assert all(f"{run}: step 5/5" in text for run in ("hard", "hard-r1", "soft"))


def test_the_terminal_shows_training_progress_and_ends_with_a_results_table(ci_run):
    assert any(line.strip().startswith("hard-r1: step 5/5") for line in CI_LOG)  # relayed from the kernel
    table = CI_LOG[-1]
    ev = json.loads((ci_artifacts("evaluations") / "compare.summary.json").read_text())
    assert table.startswith("results of run pytest-ci (ci, ok)")
    assert f"soft vs hard: win rate {ev['arms']['soft vs hard']['win_rate']:.3f}" in table
    aligned = json.loads(ci_artifacts("evaluations/aligned_to_whom.json").read_text())["accuracy"]
    assert "held-out accuracy  (log-likelihood rule, 95% intervals clustered by rater" in table
    assert all(f"    {arm:<16} {accuracy_text(v)}" in table for arm, v in aligned.items()) and "planted effect" in table
    assert f"report             {ci_run / 'report.html'}" in table


def write_profile(tmp_path: Path, body: dict) -> str:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(body))
    return str(path)


def test_unknown_parameter_is_an_error(tmp_path):
    with pytest.raises(DLMError, match="unknown parameter.*no_such_knob"):
        runner.resolve_parameters(runner.load_profile(write_profile(tmp_path, {"parameters": {"no_such_knob": 1}})),
                                  NOTEBOOKS)


def test_wrong_type_is_an_error(tmp_path):
    with pytest.raises(DLMError, match="sample_seed='zero'.*should be int"):
        runner.resolve_parameters(runner.load_profile(write_profile(tmp_path, {"parameters": {"sample_seed": "zero"}})),
                                  NOTEBOOKS)


def test_secrets_are_refused_as_parameters(tmp_path):
    with pytest.raises(DLMError, match="looks like a secret"):
        runner.resolve_parameters(runner.load_profile(write_profile(tmp_path, {"parameters": {"OPENAI_API_KEY": "x"}})),
                                  NOTEBOOKS)


def test_a_shared_max_new_tokens_is_a_setting_not_a_secret(tmp_path):
    params = runner.resolve_parameters(runner.load_profile(write_profile(tmp_path, {"parameters": {"max_new_tokens": 8}})),
                                       NOTEBOOKS)
    assert params["06_evaluate"]["max_new_tokens"] == 8


def test_only_and_from_select_notebooks():
    assert [p.stem[:2] for p in runner.select_notebooks(NOTEBOOKS, ["02"], None)] == ["02"]
    assert [p.stem[:2] for p in runner.select_notebooks(NOTEBOOKS, None, "02")][0] == "02"
    with pytest.raises(DLMError, match="no such notebook"):
        runner.select_notebooks(NOTEBOOKS, ["99"], None)


def test_failing_notebook_is_named_with_its_cell_and_exit_is_nonzero(tmp_path):
    profile = write_profile(tmp_path, {"parameters": {"prism_source": str(tmp_path / "missing"), "sample_scale": ""}})
    # from another folder, under the suite's temporary artifacts root (never the checkout's artifacts/)
    out = subprocess.run([sys.executable, str(ROOT / "run_all.py"), "--profile", profile, "--only", "01",
                          "--run-id", "fail"], cwd=tmp_path, capture_output=True, text=True, env={**os.environ})
    assert out.returncode == 2
    assert "01_explore_prism.ipynb failed in cell" in out.stderr and "DLMError" in out.stderr
    assert "[1/1] 01_explore_prism" in out.stdout
    assert (paths.artifacts_root() / "runs" / "fail" / "01_explore_prism.ipynb").is_file()


def test_unchanged_stages_are_reused_and_a_changed_setting_reruns_from_there(ci_run, tmp_path):
    logs: list[str] = []
    runner.run_profile("ci", run_id="again", runs_dir=tmp_path, log=lambda m, **k: logs.append(m))
    assert sum("reused" in m for m in logs) == len(NOTEBOOKS)
    profile = yaml.safe_load((ROOT / "configs/profiles/ci.yaml").read_text())
    profile["notebooks"]["05_questions"]["n_questions"] = 1
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(profile))
    logs.clear()
    with pytest.MonkeyPatch.context() as mp:  # the same profile with one setting edited: ci's stage records
        mp.setattr(runner, "profile_key", lambda profile: "ci")
        runner.run_profile(str(path), run_id="changed", runs_dir=tmp_path, log=lambda m, **k: logs.append(m),
                           only=["05", "06"])
    assert not any("reused" in m for m in logs)  # 05 changed, so 06 (downstream) reruns too
    runner.run_profile("ci", run_id="restore", runs_dir=tmp_path, log=lambda *a, **k: None, only=["05", "06"])


def test_stage_records_are_kept_per_profile_under_the_artifacts_root(ci_run):
    """A ci run (the tests) records its stages apart from demo's, so `make demo` after `make test` reuses its own."""
    records = paths.artifacts_root() / "stages"
    assert {p.stem for p in (records / "ci").glob("*.json")} == {p.stem for p in NOTEBOOKS}
    assert not (records / "demo").exists() and not list(records.glob("*.json"))
    assert runner.stages_dir(runner.load_profile("demo")) == records / "demo"


def test_the_stage_key_changes_with_the_artifacts_root(tmp_path, monkeypatch):
    nb = next(p for p in NOTEBOOKS if p.stem == "05_questions")
    before = runner.stage_key(nb, {}, upstream="u")
    monkeypatch.setenv(paths.ARTIFACTS_ENV, str(tmp_path / "elsewhere"))
    assert runner.stage_key(nb, {}, upstream="u") != before


def test_papermill_runs_every_notebook_with_the_kernel_in_notebooks(tmp_path, monkeypatch):
    """As JupyterLab does: the kernel starts in notebooks/, and relative paths still reach the project's files."""
    import papermill

    seen = []
    monkeypatch.setattr(papermill, "execute_notebook", lambda src, dst, **kw: (seen.append(kw["cwd"]),
                                                                               Path(dst).write_text(Path(src).read_text())))
    monkeypatch.setattr(runner, "save_stage", lambda *a, **k: {})
    runner.run_profile("ci", only=["05"], runs_dir=tmp_path, log=lambda *a, **k: None, force=True)
    assert seen == [str(ROOT / "notebooks")]


def test_editing_an_arm_panel_or_recipe_changes_the_stage_key(tmp_path, monkeypatch):
    """The stage cache keys on configuration files too: an edited arm or quota file is never reused."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "arms.yaml").write_text("hard: {mode: hard}\n")
    own = tmp_path / "my_quotas.yaml"
    own.write_text("panel_size: 10\n")
    monkeypatch.setattr(runner, "ROOT", tmp_path)
    before = runner._config_hash({"panel_config": str(own)})
    (tmp_path / "configs" / "arms.yaml").write_text("hard: {mode: soft}\n")
    after_arms = runner._config_hash({"panel_config": str(own)})
    own.write_text("panel_size: 12\n")
    after_panel = runner._config_hash({"panel_config": str(own)})
    assert len({before, after_arms, after_panel}) == 3


def test_a_stage_key_does_not_change_when_the_stage_writes_its_own_output(tmp_path):
    """06 names its output file as a parameter; its appearance after the first run must not rerun 06."""
    nb = next(p for p in NOTEBOOKS if p.stem == "06_evaluate")
    out = tmp_path / "compare.jsonl"
    params = {"evaluation_output": str(out)}
    before = runner.stage_key(nb, params, upstream="u")
    out.write_text('{"a": 1}\n')
    assert runner.stage_key(nb, params, upstream="u") == before


def test_a_url_with_credentials_is_injected_redacted_and_its_real_value_reaches_only_the_kernels_environment(
        tmp_path, monkeypatch):
    import papermill

    real = "http://alice:PW-CANARY-nb@127.0.0.1:9/v1?api-key=KEY-CANARY-nb"
    seen = []
    monkeypatch.setattr(papermill, "execute_notebook", lambda src, dst, **kw: (
        seen.append((kw["parameters"]["question_base_url"], os.environ.get(URL_SECRETS_ENV))),
        Path(dst).write_text(Path(src).read_text())))
    monkeypatch.setattr(runner, "save_stage", lambda *a, **k: {})
    profile = write_profile(tmp_path, {"notebooks": {"05_questions": {"question_base_url": real}}})
    run_dir = runner.run_profile(profile, only=["05"], runs_dir=tmp_path / "runs", log=lambda *a, **k: None, force=True)
    hidden = "http://***@127.0.0.1:9/v1?api-key=***"
    assert seen == [(hidden, json.dumps({hidden: real}))]
    assert URL_SECRETS_ENV not in os.environ  # only while the kernel runs
    for path in run_dir.rglob("*"):
        assert not path.is_file() or b"CANARY" not in path.read_bytes(), path


def test_06_opened_by_hand_after_a_run_shows_the_runs_numbers_and_never_overwrites_them(ci_run, tmp_path):
    """As in JupyterLab after `make demo`: 06 run with its own defaults, kernel in notebooks/, uses the run's
    arms and contrasts and leaves its outputs (and stage record) as they were; other settings write elsewhere."""
    import papermill

    nb = ROOT / "notebooks" / "06_evaluate.ipynb"
    summary = ci_artifacts("evaluations") / "compare.summary.json"
    before = summary.read_bytes()
    record = json.loads((paths.artifacts_root() / "stages" / "ci" / "06_evaluate.json").read_text())
    params = runner.resolve_parameters(runner.load_profile("ci"), [nb])["06_evaluate"]
    papermill.execute_notebook(str(nb), str(tmp_path / "by_hand.ipynb"), kernel_name="python3", language="python",
                               cwd=str(ROOT / "notebooks"), progress_bar=False)
    _, text = outputs(tmp_path / "by_hand.ipynb")
    last = json.loads(last_run.last_run_path().read_text())["06_evaluate"]["run_id"]  # pytest-ci, or a later ci run
    assert f"Parameters of run **{last}**" in text and "soft vs hard" in text and "us_rep" not in text
    assert summary.read_bytes() == before
    assert runner._outputs(nb, params) == record["outputs"]  # the next `run_all.py` still reuses 06
    papermill.execute_notebook(str(nb), str(tmp_path / "edited.ipynb"), parameters={"max_new_tokens": 8},
                               kernel_name="python3", language="python", cwd=str(ROOT / "notebooks"),
                               progress_bar=False)
    _, text = outputs(tmp_path / "edited.ipynb")
    assert "This run differs: `max_new_tokens` 8 (run: 16)" in text
    assert summary.read_bytes() == before and runner._outputs(nb, params) == record["outputs"]
    assert len(list(ci_artifacts("evaluations").glob("hand-*/compare.summary.json"))) == 1
