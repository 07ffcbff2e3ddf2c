"""The experiment design: the arm registry drives datasets, runs, budgets, judge pairs, CLI and preflight."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from dlm import cli, paths, sortition

from dlm.experiment import designs as experiment

from dlm.preferences import build as preferences
from dlm.data.prism import load_prism
from dlm.errors import DLMError
from dlm.data.split import training_survey
from dlm.experiment.preflight import estimated_api_cost

ROOT = Path(__file__).resolve().parent.parent
ALL_ARMS = "hard,soft,us_rep,full,size_matched,contrast,soft_resampled,soft_leximin,hard_leximin"
SMALL = str(ROOT / "configs/panels/small.yaml")


class Result:
    """What a command run in-process returned and printed."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def run_cli(capsys):
    """`python -m dlm ARGS` in this process (the same `main`, without a fresh interpreter per call)."""
    def run(*args) -> Result:
        capsys.readouterr()
        code = cli.main([str(a) for a in args])
        out = capsys.readouterr()
        return Result(code, out.out, out.err)
    return run


def write_yaml(path: Path, body: dict) -> Path:
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def test_registry_declares_the_nine_arms_with_their_modes_and_algorithms():
    arms = experiment.load_arms()
    assert ",".join(arms) == ALL_ARMS
    assert (arms["soft_leximin"].mode, arms["soft_leximin"].panel_algorithm, arms["soft_leximin"].drawn) == (
        "soft", "leximin", False)
    assert (arms["hard_leximin"].mode, arms["hard_leximin"].panel_algorithm, arms["hard_leximin"].drawn) == (
        "hard", "leximin", True)
    assert arms["contrast"].panel_config == "configs/panels/crowdworkers.yaml" and arms["contrast"].drawn
    assert {a for a, arm in arms.items() if arm.drawn} == {"hard", "size_matched", "contrast", "soft_resampled",
                                                           "hard_leximin"}


@pytest.mark.parametrize("entry,message", [
    ({"mode": "hardish"}, "arm 'x': mode 'hardish' is not one of"),
    ({"mode": "hard", "panel_algoritm": "leximin"}, "arm 'x': unknown field.*panel_algoritm"),
    ({"mode": "soft", "panel_algorithm": "maximin"}, "panel_algorithm 'maximin'"),
    ({"mode": "hard", "drawn": "yes"}, "drawn must be true or false"),
])
def test_a_bad_arm_entry_is_one_clear_error_naming_file_and_arm(tmp_path, entry, message):
    path = write_yaml(tmp_path / "arms.yaml", {"arms": {"x": entry}})
    with pytest.raises(DLMError, match=f"{tmp_path}.*{message}"):
        experiment.load_arms(path)


def test_unknown_arm_or_contrast_names_what_to_do():
    with pytest.raises(DLMError, match="arms hadr are not in .*declare them there"):
        experiment.design("hard,hadr")
    with pytest.raises(DLMError, match="contrast hard:contrast names arm 'contrast'.*add it to `arms`"):
        experiment.design("hard,soft", contrasts="hard:contrast").pairs()


def parameters_cell(notebook: str) -> dict:
    """Name → default of a notebook's parameters cell (plain literal assignments)."""
    nb = json.loads((ROOT / "notebooks" / f"{notebook}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body}


def test_design_defaults_are_the_notebooks_defaults():
    """A design built from a profile and the notebooks' own cells agree on every value left unset."""
    fields = {f.name: f.default for f in experiment.dataclasses.fields(experiment.Design) if f.name != "arms"}
    checked = set()
    for nb, mapping in experiment.STAGE_FIELDS.items():
        declared = parameters_cell(nb)
        for name, field in mapping.items():
            assert declared[name] == fields[field], (nb, name)
            checked.add(field)
        if "arms" in declared:
            assert declared["arms"] == "hard,soft,us_rep,full" and declared["arms_file"] == ""
    assert checked == set(fields)


def test_runs_and_judge_pairs_follow_the_design():
    d = experiment.design("hard,soft,soft_leximin", panel_draws=2, train_seeds=2, primary="soft:hard",
                          contrasts="soft_leximin:soft")
    assert [r.name for r in d.runs()] == ["hard", "hard-s1", "hard-r1", "hard-r1-s1", "soft", "soft-s1",
                                          "soft_leximin", "soft_leximin-s1"]
    art = paths.artifacts_root()  # relative paths are the project's: artifacts/ under the artifacts root
    assert d.model_specs()[:2] == [f"base={art / 'models/tiny'}", f"hard={art / 'checkpoints/hard'}"]
    pairs = d.pairs()
    assert pairs[:8] == [("base", r.name) for r in d.runs()]
    # declared contrasts only, primary first, replicate (r, s) against replicate (r, s)
    assert pairs[8:] == [("soft", "hard"), ("soft-s1", "hard-s1"), ("soft", "hard-r1"), ("soft-s1", "hard-r1-s1"),
                         ("soft_leximin", "soft"), ("soft_leximin-s1", "soft-s1")]
    every = experiment.design("hard,soft,soft_leximin", judge_pairs="all").arm_contrasts()
    assert every == [("soft", "hard"), ("hard", "soft_leximin"), ("soft", "soft_leximin")]
    assert d.find("hard-r1-s1").dataset == "hard-r1"
    with pytest.raises(DLMError, match="no run or dataset 'hard-r9'.*dlm design"):
        d.find("hard-r9")


@pytest.fixture(scope="module")
def demo_design(demo_sample):
    return experiment.design(ALL_ARMS, prism_source=str(demo_sample), panel_config=SMALL, max_steps=40,
                             num_panel_samples=300)


def test_every_arm_gets_the_same_steps_batch_and_mean_weight(demo_design):
    summaries = experiment.summarise(demo_design)
    assert [s.dataset for s in summaries] == ALL_ARMS.split(",")
    assert {s.steps for s in summaries} == {40}
    assert {demo_design.train_settings(r)["max_steps"] for r in demo_design.runs()} == {40}
    assert all(s.weight_mean == pytest.approx(1.0) for s in summaries)
    by = {s.dataset: s for s in summaries}
    # epochs are what differs: the same 40 x 8 rows over each arm's training rows
    assert by["hard"].epochs == pytest.approx(320 / by["hard"].train_rows)
    assert by["soft"].epochs < by["hard"].epochs
    # soft_resampled has the hard panel's training-row count (same draw), soft's weighting as frequencies
    assert by["soft_resampled"].train_rows == by["hard"].train_rows
    assert by["soft_resampled"].weight_sum == by["hard"].weight_sum
    assert by["size_matched"].raters <= 40 and by["hard_leximin"].raters <= 40


def test_soft_resampled_draws_soft_rows_in_proportion_to_weight(demo_sample):
    data = load_prism(demo_sample)
    d = experiment.design("soft,soft_resampled", prism_source=str(demo_sample), panel_config=SMALL)
    soft, res = (preferences.build_dataset(data.survey, data.utterances, data.conversations,
                                           d.prepare_options(d.find(n))) for n in ("soft", "soft_resampled"))
    again = preferences.build_dataset(data.survey, data.utterances, data.conversations,
                                      d.prepare_options(d.find("soft_resampled")))
    assert res.rows == again.rows  # seeded
    train = [r for r in res.rows if r["split"] == "train"]
    assert all(r["weight"] == 1.0 for r in res.rows)
    soft_train = pd.DataFrame([r for r in soft.rows if r["split"] == "train"])
    key = soft_train["interaction_id"] + "|" + soft_train["chosen"].map(str) + "|" + soft_train["rejected"].map(str)
    drawn = pd.Series([f"{r['interaction_id']}|{r['chosen']}|{r['rejected']}" for r in train])
    assert drawn.isin(set(key)).all() and drawn.duplicated().any()  # with replacement, from soft's rows
    # drawn ∝ weight: a drawn row's soft weight averages Σw²/Σw (size-biased), not the plain mean 1
    w = soft_train.groupby("user_id")["weight"].first()
    drawn_w = pd.Series([r["user_id"] for r in train]).map(w)
    size_biased = (soft_train["weight"] ** 2).sum() / soft_train["weight"].sum()
    assert size_biased > 1.2 and drawn_w.mean() == pytest.approx(size_biased, rel=0.08)
    assert [r for r in res.rows if r["split"] == "eval"] == [{**r, "weight": 1.0} for r in soft.rows
                                                             if r["split"] == "eval"]


def test_hard_leximin_panel_is_one_quota_feasible_panel_drawn_from_the_leximin_distribution(demo_sample):
    data = load_prism(demo_sample)
    d = experiment.design("hard_leximin", prism_source=str(demo_sample), panel_config=SMALL)
    # the pool excludes the held-out raters, as prepare's does
    pool = sortition.build_pool(training_survey(data.survey, d.eval_ratio, d.split_by)[0],
                                sortition.load_panel_config(SMALL))
    lex = sortition.leximin(pool)
    panels = {tuple(pool.user_ids[lex.draw(s)]) for s in range(4)}
    lo, hi = pool.bounds
    for panel in panels:
        counts = pool.membership[np.isin(pool.user_ids, panel)].sum(axis=0)
        assert len(panel) == pool.k and ((counts >= lo) & (counts <= hi)).all()
    assert len(panels) > 1  # a draw, not a fixed panel
    built = preferences.build_dataset(data.survey, data.utterances, data.conversations,
                                      d.prepare_options(d.find("hard_leximin")))
    assert built.panel == [str(u) for u in pool.user_ids[lex.draw(0)]]  # what select(..., draw_panel=True) draws
    assert built.selection["algorithm"] == "leximin"


def test_soft_leximin_weights_are_proportional_to_the_leximin_pi_of_dlm_sortition(demo_sample, tmp_path, run_cli):
    """With --eval-ratio 0, so the test does not depend on how held-out raters are set aside."""
    probs = tmp_path / "pi.csv"
    out = run_cli("sortition", "--survey", demo_sample / "survey.jsonl", "--panel-config", SMALL,
                  "--panel-algorithm", "leximin", "--output", probs)
    assert out.returncode == 0, out.stderr
    profile = write_yaml(tmp_path / "p.yaml", {"parameters": {
        "prism_source": str(demo_sample), "panel_config": SMALL, "arms": "soft_leximin"},
        "notebooks": {"03_prepare": {"eval_ratio": 0.0, "output_dir": str(tmp_path / "data")}}})
    out = run_cli("prepare", "--profile", profile, "--run", "soft_leximin")
    assert out.returncode == 0, out.stderr
    rows = pd.read_json(tmp_path / "data/soft_leximin.jsonl", lines=True)
    pi = pd.read_csv(probs, dtype={"user_id": str}).set_index("user_id")["probability"]
    ratio = rows["weight"] / rows["user_id"].astype(str).map(pi)
    assert ratio.std() / ratio.mean() < 1e-9 and rows["weight"].mean() == pytest.approx(1.0)
    assert (rows["user_id"].astype(str).map(pi) > 0).all() and rows["user_id"].nunique() > 300


def test_prepare_by_run_name_equals_the_seed_flags(demo_sample, tmp_path, run_cli):
    profile = write_yaml(tmp_path / "p.yaml", {"parameters": {
        "prism_source": str(demo_sample), "panel_config": SMALL, "arms": "hard", "panel_draws": 2},
        "notebooks": {"03_prepare": {"output_dir": str(tmp_path / "data"), "num_panel_samples": 200}}})
    assert run_cli("prepare", "--profile", profile, "--run", "hard-r1").returncode == 0
    flags = run_cli("prepare", "--mode", "hard", "--survey", demo_sample / "survey.jsonl", "--utterances",
                    demo_sample / "utterances.jsonl", "--panel-config", SMALL, "--panel-seed", "1", "--num-panel-samples", "200",
                    "--eval-ratio", "0.1", "--output", tmp_path / "flags.jsonl")
    assert flags.returncode == 0, flags.stderr
    assert (tmp_path / "data/hard-r1.jsonl").read_bytes() == (tmp_path / "flags.jsonl").read_bytes()
    bad = run_cli("prepare", "--profile", profile, "--run", "soft")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no run or dataset 'soft'" in bad.stderr


def test_old_spellings_still_work_with_a_warning(demo_sample, tmp_path, run_cli):
    common = ["--survey", demo_sample / "survey.jsonl", "--utterances", demo_sample / "utterances.jsonl",
              "--panel-config", SMALL, "--panel-seed", "3"]
    old = run_cli("prepare", "--mode", "random", *common, "--output", tmp_path / "old.jsonl")
    new = run_cli("prepare", "--mode", "size_matched", *common, "--output", tmp_path / "new.jsonl")
    assert old.returncode == new.returncode == 0 and "--mode random is deprecated" in old.stderr
    assert (tmp_path / "old.jsonl").read_bytes() == (tmp_path / "new.jsonl").read_bytes()
    out = run_cli("sortition", "--survey", demo_sample / "survey.jsonl", "--panel-config", SMALL, "--algorithm",
                  "legacy", "--num-panel-samples", "20", "--output", tmp_path / "p.csv")
    assert out.returncode == 0 and "--algorithm is deprecated; use --panel-algorithm" in out.stderr


def test_dlm_design_prints_every_dataset_run_and_judge_pair(demo_sample, tmp_path, run_cli):
    profile = write_yaml(tmp_path / "p.yaml", {"parameters": {
        "prism_source": str(demo_sample), "panel_config": SMALL, "arms": "hard,soft_leximin", "panel_draws": 2,
        "max_steps": 30}, "max_mde": float("inf"), "notebooks": {"06_evaluate": {"primary": "soft_leximin:hard"}}})
    out = run_cli("design", "--profile", profile)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "3 runs; budget: steps, every run 30 steps x effective batch 8" in lines[0]
    rows = lines[4:lines.index("", 4)]  # between the table's header and the judge pairs
    table = {f[0]: f for f in map(str.split, rows)}
    assert set(table) == {"hard", "hard-r1", "soft_leximin"} and table["soft_leximin"][2] == "leximin"
    assert "judge pairs (contrasts): 5" in out.stdout and "soft_leximin vs hard-r1" in out.stdout


def test_preflight_counts_the_designs_judge_pairs_and_rejects_a_bad_design():
    profile = {"parameters": {"arms": "hard,soft,soft_leximin"}, "notebooks": {
        "05_questions": {"question_backend": "openai", "n_questions": 10},
        "06_evaluate": {"judge_backend": "openai", "contrasts": "soft_leximin:soft"}}}
    _, what = estimated_api_cost(profile)
    assert "2500 judgments" in what  # (3 base pairs + soft:hard + soft_leximin:soft) x 250 questions x 2 orders
    profile["notebooks"]["06_evaluate"]["contrasts"] = "hard_leximin:hard"
    with pytest.raises(DLMError, match="hard_leximin"):
        estimated_api_cost(profile)


@pytest.mark.slow
def test_training_runs_of_two_arms_take_the_same_steps_and_mean_weight(demo_design, tmp_path):
    from dlm.training import tiny_model
    from dlm.training import train_dpo as training

    base = tmp_path / "tiny"
    tiny_model.make_tiny_model(base, seed=0, warmup_steps=0)
    d = experiment.dataclasses.replace(demo_design, arms=tuple(experiment.load_arms()[a] for a in ("hard", "soft")),
                                       model_id=str(base), max_steps=2, eval_ratio=0.0, data_dir=str(tmp_path),
                                       checkpoint_dir=str(tmp_path / "ck"))
    source = Path(d.prism_source)
    summaries = []
    for run in d.runs():
        preferences.prepare(source / "survey.jsonl", source / "utterances.jsonl", d.dataset_path(run),
                            d.prepare_options(run))
        settings = {**d.train_settings(run), "max_length": 64, "logging_steps": 1}
        summaries.append(training.train(d.dataset_path(run), d.checkpoint(run), settings))
    saved = [json.loads((d.checkpoint(r) / "training_summary.json").read_text()) for r in d.runs()]
    assert [s["steps"] for s in saved] == [2, 2] and [s["effective_batch_size"] for s in saved] == [8, 8]
    assert [s["train_weight_mean"] for s in saved] == pytest.approx([1.0, 1.0])
    assert saved[0]["epochs"] > saved[1]["epochs"] > 0 and saved[1]["train_effective_sample_size"] < saved[1]["train_rows"]


def _under(value, old: str, new: str):
    """`value` with every string path starting with `old` moved under `new` (nested profiles)."""
    if isinstance(value, dict):
        return {k: _under(v, old, new) for k, v in value.items()}
    if isinstance(value, str) and value.startswith(old):
        return new + value[len(old):]
    return value


@pytest.mark.slow
def test_an_arm_added_in_an_arms_file_runs_through_03_to_07_and_appears_in_every_table(tmp_path, monkeypatch):
    """Adding an arm is one entry in an arms file: notebooks 03 → 07 of the ci profile prepare, train, judge, score it."""
    import nbformat

    from dlm.pipeline import runner

    from dlm.data import synth

    registry = yaml.safe_load(experiment.ARMS_FILE.read_text())
    registry["arms"]["soft_per_rater"] = {"mode": "soft", "weight_normalization": "per-rater",
                                          "description": "one person, one voice: π shared by a rater's rows"}
    arms_file = write_yaml(tmp_path / "arms.yaml", registry)
    profile = _under(yaml.safe_load((ROOT / "configs/profiles/ci.yaml").read_text()), "artifacts/ci", str(tmp_path))
    profile["parameters"].update(arms="hard,soft_per_rater", arms_file=str(arms_file))
    profile["notebooks"]["03_prepare"]["arms"] = "hard,full,soft_per_rater"  # 07 scores full's held-out pairs
    profile["notebooks"]["06_evaluate"]["primary"] = "soft_per_rater:hard"
    if "modes" in parameters_cell("07_aligned_to_whom"):  # 07's own name for its arm list, until it takes `arms`
        profile["notebooks"]["07_aligned_to_whom"]["modes"] = "hard,soft_per_rater"
    path = write_yaml(tmp_path / "profile.yaml", profile)
    synth.generate_sample(tmp_path / "sample", "demo", 0)  # what 01 writes
    run_dir = runner.run_profile(str(path), start="03", runs_dir=tmp_path / "runs", log=lambda *a, **k: None,
                                 force=True)
    for nb in ("03_prepare", "04_train_dpo", "06_evaluate", "07_aligned_to_whom"):
        cells = nbformat.read(run_dir / f"{nb}.ipynb", as_version=4).cells
        text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") + o.get("data", {}).get(
            "text/html", "") for c in cells if c.cell_type == "code" for o in c.get("outputs", []))
        assert "soft_per_rater" in text, nb
    man = json.loads((tmp_path / "data/soft_per_rater.jsonl.manifest.json").read_text())
    assert man["config"]["weight_normalization"] == "per-rater"
    ev = json.loads((tmp_path / "evaluations/compare.summary.json").read_text())
    assert {"base vs soft_per_rater", "soft_per_rater vs hard", "soft_per_rater vs hard-r1"} <= set(ev["pairs"])
    assert ev["arms"]["soft_per_rater vs hard"]["primary"]
    summary = json.loads((tmp_path / "checkpoints/soft_per_rater/training_summary.json").read_text())
    assert summary["steps"] == 5 and summary["train_weight_mean"] == pytest.approx(1.0)
