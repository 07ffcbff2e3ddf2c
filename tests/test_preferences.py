"""Preference data: pair semantics, history, modes, weights, split, determinism, atomic output."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from dlm.preferences import build as pr
from dlm.data.prism import load_prism
from dlm.errors import DLMError


def build(folder, **kw):
    data = load_prism(folder)
    return pr.build_dataset(data.survey, data.utterances, data.conversations, pr.PrepareOptions(**kw))


def test_pairs_follow_the_documented_semantics(tiny_prism):
    d = build(tiny_prism, mode="full")
    got = {(r["conversation_id"], r["turn"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in d.rows}
    assert got == {
        ("c0", 0, "Answer A", "Answer B"), ("c0", 0, "Answer A", "Answer C"),  # B/C tie dropped, EMPTY dropped
        ("c0", 2, "Good end", "Bad end"),  # turn 1: identical texts dropped
        ("c1", 0, "R2", "R1"), ("c1", 0, "R3", "R1"), ("c1", 0, "R3", "R2"),
    }
    assert d.counts["dropped"] == {"empty_responses": 1, "identical_text_pairs": 1, "score_gap_below_min": 1,
                                   "zero_weight_rows": 0}


def test_min_score_gap(tiny_prism):
    d = build(tiny_prism, mode="full", min_score_gap=10)
    assert {(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in d.rows if r["conversation_id"] == "c1"} \
        == {("R3", "R1"), ("R3", "R2")}


def test_multi_turn_prompt_carries_history_with_chosen_responses(tiny_prism):
    d = build(tiny_prism, mode="full", system_prompt="Be kind.")
    row = next(r for r in d.rows if r["turn"] == 2)
    assert row["prompt"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "Answer A"},
        {"role": "user", "content": "And then?"}, {"role": "assistant", "content": "Same text"},
        {"role": "user", "content": "Finally?"},
    ]


def test_raw_format_uses_the_plain_text_template(tiny_prism):
    d = build(tiny_prism, mode="full", dataset_format="raw")
    row = next(r for r in d.rows if r["turn"] == 2)
    assert row["prompt"] == "User: Hello?\nAssistant: Answer A\nUser: And then?\nAssistant: Same text\nUser: Finally?\nAssistant:"
    assert row["chosen"] == " Good end" and row["rejected"] == " Bad end"


def test_us_rep_mode_keeps_only_rep_raters(tiny_prism):
    d = build(tiny_prism, mode="us_rep")
    assert {r["user_id"] for r in d.rows} == {"user1"} and len(d.rows) == 3


def test_missing_history_is_a_clear_error(tiny_prism):
    data = load_prism(tiny_prism)
    convs = data.conversations[data.conversations["conversation_id"] != "c0"]
    with pytest.raises(DLMError, match="conversation c0 .turn 2. is missing from conversations.jsonl"):
        pr.build_dataset(data.survey, data.utterances, convs, pr.PrepareOptions(mode="full", min_score_gap=0))


def test_split_is_per_interaction_and_consistent_across_modes(demo_sample):
    data = load_prism(demo_sample)
    full = pr.build_dataset(data.survey, data.utterances, data.conversations,
                            pr.PrepareOptions(mode="full", eval_ratio=0.2, split_by="interaction"))
    rep = pr.build_dataset(data.survey, data.utterances, data.conversations,
                           pr.PrepareOptions(mode="us_rep", eval_ratio=0.2, split_by="interaction"))
    split_full = {r["interaction_id"]: r["split"] for r in full.rows}
    assert all(split_full[r["interaction_id"]] == r["split"] for r in rep.rows)
    frac = np.mean([s == "eval" for s in split_full.values()])
    assert 0.17 < frac < 0.23
    by_rater = pr.build_dataset(data.survey, data.utterances, data.conversations,
                                pr.PrepareOptions(mode="full", eval_ratio=0.2, split_by="rater"))
    per_rater = pd.DataFrame(by_rater.rows).groupby("user_id")["split"].nunique()
    assert (per_rater == 1).all()


def test_soft_weights_are_pi_rescaled_to_mean_one(demo_sample):
    data = load_prism(demo_sample)
    opts = pr.PrepareOptions(mode="soft", panel_config="configs/panels/small.yaml", num_panel_samples=400)
    d = pr.build_dataset(data.survey, data.utterances, data.conversations, opts)
    rows = pd.DataFrame(d.rows)
    assert rows["weight"].mean() == pytest.approx(1.0)
    pi = d.probabilities.set_index("user_id")["probability"]
    ratio = rows["weight"] / rows["user_id"].map(pi)
    assert np.allclose(ratio, ratio.iloc[0])  # weight ∝ π
    assert d.counts["effective_sample_size"] < len(rows)


def test_per_rater_normalisation_gives_each_person_total_weight_proportional_to_pi(demo_sample):
    data = load_prism(demo_sample)
    opts = pr.PrepareOptions(mode="soft", panel_config="configs/panels/small.yaml", num_panel_samples=400,
                             weight_normalization="per-rater")
    d = pr.build_dataset(data.survey, data.utterances, data.conversations, opts)
    rows = pd.DataFrame(d.rows)
    total = rows.groupby("user_id")["weight"].sum()
    pi = d.probabilities.set_index("user_id")["probability"].reindex(total.index)
    assert np.allclose(total / pi, (total / pi).iloc[0])


def test_zero_probability_raters_are_counted_not_lost(demo_sample):
    data = load_prism(demo_sample)
    opts = pr.PrepareOptions(mode="soft", panel_config="configs/panel_config.yaml", num_panel_samples=5)
    d = pr.build_dataset(data.survey, data.utterances, data.conversations, opts)
    assert d.counts["raters_zero_probability"] > 0
    assert d.counts["dropped"]["zero_weight_rows"] > 0
    assert all(r["weight"] > 0 for r in d.rows)


def test_hard_mode_is_the_drawn_panel(demo_sample):
    data = load_prism(demo_sample)
    opts = pr.PrepareOptions(mode="hard", panel_config="configs/panels/small.yaml", num_panel_samples=10)
    d = pr.build_dataset(data.survey, data.utterances, data.conversations, opts)
    assert {r["user_id"] for r in d.rows} <= set(d.panel) and len(d.panel) == 40
    assert all(r["weight"] == 1.0 for r in d.rows)


def test_cli_outputs_are_byte_identical_and_carry_a_manifest(demo_sample, tmp_path):
    args = ["prepare", "--mode", "soft", "--survey", demo_sample / "survey.jsonl", "--utterances",
            demo_sample / "utterances.jsonl", "--panel-config", "configs/panels/small.yaml",
            "--num-panel-samples", "200", "--panel-seed", "0", "--eval-ratio", "0.1"]
    a = run_cli(*args, "--output", tmp_path / "a.jsonl")
    b = run_cli(*args, "--output", tmp_path / "b.jsonl")
    assert a.returncode == 0 and b.returncode == 0, a.stderr
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    man = json.loads((tmp_path / "a.jsonl.manifest.json").read_text())
    assert man["config"]["mode"] == "soft" and man["seed"] == 0
    assert set(man["inputs"]) >= {str(demo_sample / "survey.jsonl"), str(demo_sample / "utterances.jsonl"),
                                  str(demo_sample / "conversations.jsonl")}
    assert man["counts"]["rows"] == len((tmp_path / "a.jsonl").read_text().splitlines())
    assert "CC-BY-NC-4.0" in man["licence"] and man["versions"]["dlm"]
    assert man["counts"]["effective_sample_size"] > 0
    row = json.loads((tmp_path / "a.jsonl").read_text().splitlines()[0])
    assert set(row) >= {"prompt", "chosen", "rejected", "user_id", "interaction_id", "conversation_id", "turn",
                        "weight", "split"}


def test_failed_run_leaves_earlier_output_untouched(tiny_prism, tmp_path):
    out = tmp_path / "full.jsonl"
    ok = run_cli("prepare", "--mode", "full", "--survey", tiny_prism / "survey.jsonl", "--utterances",
                 tiny_prism / "utterances.jsonl", "--output", out)
    assert ok.returncode == 0, ok.stderr
    before = out.read_bytes()
    (tiny_prism / "utterances.jsonl").write_text('{"broken": \n')
    bad = run_cli("prepare", "--mode", "full", "--survey", tiny_prism / "survey.jsonl", "--utterances",
                  tiny_prism / "utterances.jsonl", "--output", out)
    assert bad.returncode == 2 and "line 1 is not valid JSON" in bad.stderr and "Traceback" not in bad.stderr
    assert out.read_bytes() == before
    assert not list(tmp_path.glob(".full.jsonl.*"))  # no temporary file left behind


def test_unwritable_output_folder_is_a_clear_error(tiny_prism, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = run_cli("prepare", "--mode", "full", "--survey", tiny_prism / "survey.jsonl", "--utterances",
                  tiny_prism / "utterances.jsonl", "--output", blocker / "sub" / "out.jsonl")
    assert out.returncode == 2 and "cannot create output folder" in out.stderr


def test_kish_ess():
    assert pr.kish_ess(np.ones(10)) == pytest.approx(10)
    assert pr.kish_ess(np.array([1.0, 0.0, 0.0])) == pytest.approx(1)


def test_random_control_is_a_size_matched_uniform_panel(demo_sample):
    data = load_prism(demo_sample)
    opts = pr.PrepareOptions(mode="random", panel_config="configs/panels/small.yaml", panel_seed=3)
    d = pr.build_dataset(data.survey, data.utterances, data.conversations, opts)
    again = pr.build_dataset(data.survey, data.utterances, data.conversations, opts)
    assert len(d.panel) == 40 and d.panel == again.panel
    assert {r["user_id"] for r in d.rows} <= set(d.panel) and all(r["weight"] == 1.0 for r in d.rows)
