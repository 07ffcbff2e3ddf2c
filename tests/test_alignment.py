"""Aligned to whom: held-out preference accuracy by group, with rater-clustered intervals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dlm.alignment import heldout as alignment
from dlm.stats.poststrat import paired_difference

pytestmark = pytest.mark.filterwarnings("ignore")


def test_accuracy_by_group_counts_ties_as_half_and_clusters_by_rater():
    pairs = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2", "u3", "u3"]})
    groups = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "age": ["old", "young", "young"]}).set_index("user_id")
    margins = {"m": np.array([1.0, -1.0, 0.0, 2.0, 3.0, 4.0])}
    table = alignment.accuracy_by_group(pairs, margins, groups, min_raters=1)
    overall = table[table["attribute"] == "overall"].iloc[0]
    assert overall["accuracy"] == pytest.approx((1 + 0 + 0.5 + 1 + 1 + 1) / 6)
    assert overall["raters"] == 3 and overall["ci_low"] < overall["accuracy"] < overall["ci_high"]
    young = table[(table["attribute"] == "age") & (table["group"] == "young")].iloc[0]
    assert young["accuracy"] == pytest.approx(3.5 / 4) and young["pairs"] == 4


def test_style_preference_reads_the_planted_marker():
    pairs = pd.DataFrame({"chosen": [" Certainly. a", " Sure thing! b", " Certainly. c"],
                          "rejected": [" Sure thing! x", " Certainly. y", " Certainly. z"]})
    # pair 3 has the same style on both sides and does not count
    assert alignment.style_preference(pairs, np.array([1.0, 1.0, 5.0])) == pytest.approx(0.5)
    assert alignment.style_preference(pairs, np.array([1.0, -1.0, 5.0])) == pytest.approx(1.0)


def test_the_base_model_is_scored_by_the_same_rule_as_trained_models(tmp_path):
    from dlm.data.prism import load_survey
    from dlm.training.tiny_model import make_tiny_model
    from prism_tiny import write_tiny_prism

    from dlm.preferences.build import PrepareOptions, prepare

    prism = write_tiny_prism(tmp_path / "prism")
    # two raters only: hold out interactions so that there is something to score
    prepare(prism / "survey.jsonl", prism / "utterances.jsonl", tmp_path / "full.jsonl",
            PrepareOptions(mode="full", eval_ratio=0.99, split_by="interaction"))
    model = str(make_tiny_model(tmp_path / "m", warmup_steps=5))
    survey = load_survey(prism / "survey.jsonl")
    scores = alignment.score_models(tmp_path / "full.jsonl", model, {"same": model})
    assert len(scores.pairs) == sum(json.loads(x)["split"] == "eval"
                                    for x in (tmp_path / "full.jsonl").read_text().splitlines())
    # the base checkpoint scored as a "trained" model gets exactly the base row's log-likelihood margins
    assert np.array_equal(scores.loglik["same"], scores.loglik["base"])
    assert not np.allclose(scores.loglik["base"], 0)
    assert np.allclose(scores.reward["same"], 0, atol=1e-4) and "base" not in scores.reward
    table = alignment.accuracy_table(scores, alignment.group_columns(survey, [("gender", "gender")]), min_raters=1)
    ll = table[(table["rule"] == alignment.LOGLIK) & (table["attribute"] == "overall")].set_index("model")
    assert ll.loc["base", "accuracy"] == ll.loc["same", "accuracy"]
    assert set(table.loc[table["rule"] == alignment.REWARD, "model"]) == {"same"}


def _config(raw_attrs: list[dict], locale: str | None = "us"):
    from dlm.sortition import parse_panel_config

    return parse_panel_config({"panel_size": 2, "tolerance": 1.0, "locale_filter": locale, "attributes": raw_attrs},
                              "test config")


def test_poststratification_reweights_to_the_target_population():
    # 4 held-out women who always agree and 1 man who never does, plus a UK rater outside the locale
    survey = pd.DataFrame({"user_id": [f"u{i}" for i in range(6)], "study_locale": ["us"] * 5 + ["uk"],
                           "gender": ["Female"] * 4 + ["Male", "Female"],
                           "included_in_US_REP": [False] * 6})
    pairs = pd.DataFrame({"user_id": np.repeat(survey["user_id"], 2).to_numpy()})
    margin = np.where(pairs["user_id"].isin(["u4"]), -1.0, 1.0)
    scores = alignment.HeldOutScores(pairs, {"base": margin}, {})
    config = _config([{"name": "gender", "population_proportions": {"Female": 0.5, "Male": 0.5}}])
    result = alignment.population_accuracy(scores, survey, config, min_raters=1)
    by = result.table.set_index("population")["accuracy"]
    assert by["held-out raters"] == pytest.approx(10 / 12)
    assert by["target population (test config)"] == pytest.approx(0.5)  # ½·1 (women) + ½·0 (men)
    assert result.weights.outside_population == 1 and "u5" not in result.weights.weights.index
    assert result.weights.weights["u4"] == pytest.approx(4 * result.weights.weights["u0"])
    # with a minimum of 2 held-out raters per category, the lone man's category is merged, and said so
    merged = alignment.population_accuracy(scores, survey, config, min_raters=2)
    assert merged.weights.merged == {"gender": ["Male"]} and "Male" in merged.notes()


def test_raking_matches_every_margin_of_two_attributes():
    from dlm.stats.poststrat import rake

    labels = pd.DataFrame({"a": ["x", "x", "x", "y", "y", "x"], "b": ["p", "q", "q", "p", "q", "q"]})
    targets = {"a": {"x": 0.4, "y": 0.6}, "b": {"p": 0.7, "q": 0.3}}
    w = rake(labels, targets)
    for col, t in targets.items():
        share = w.groupby(labels[col]).sum() / w.sum()
        assert share.to_dict() == pytest.approx(t, abs=1e-8)
    assert w.mean() == pytest.approx(1.0)


def test_paired_difference_is_a_rater_clustered_t_test():
    from scipy import stats as sps

    raters = np.repeat(["r1", "r2", "r3", "r4"], 2)
    a = np.array([1, 1, 1, 0, 0, 0, 1, 0], float)
    b = np.array([0, 0, 0, 0, 0, 0, 0, 1], float)
    d = paired_difference(a, b, raters)
    # differences per rater: r1 (1, 1), r2 (1, 0), r3 (0, 0), r4 (1, -1); mean 3/8
    sums = np.array([2, 1, 0, 0]) - 2 * 3 / 8
    se = np.sqrt(4 / 3 * (sums**2).sum()) / 8
    assert d.estimate == pytest.approx(3 / 8) and d.se == pytest.approx(se)
    assert d.ci_low == pytest.approx(3 / 8 - sps.t.ppf(0.975, 3) * se)
    assert d.p_value == pytest.approx(2 * sps.t.sf(3 / 8 / se, 3))
    # per group, with replicate runs of one arm averaged pair by pair before the difference
    pairs = pd.DataFrame({"user_id": raters})
    groups = pd.DataFrame({"user_id": ["r1", "r2", "r3", "r4"], "age": ["old", "old", "young", "young"]})
    margins = {"hard": 2 * a - 1, "hard-r1": 2 * a - 1, "soft": 2 * b - 1}
    table = alignment.paired_by_group(pairs, margins, groups.set_index("user_id"), [("hard", "soft")], min_raters=2)
    row = table.set_index(["attribute", "group"])
    assert row.loc[("overall", "all"), "difference"] == pytest.approx(3 / 8)
    assert row.loc[("age", "old"), "difference"] == pytest.approx(3 / 4) and row.loc[("age", "old"), "raters"] == 2


def test_poststratified_interval_covers_the_population_value():
    """Seeded simulation: a sample skewed on two attributes, raked back; the 95% interval covers ~95%."""
    from dlm.stats.poststrat import rake, weighted_cluster_interval

    rng = np.random.default_rng(0)
    targets = {"a": {"0": 0.5, "1": 0.5}, "b": {"0": 0.3, "1": 0.7}}
    truth = 0.5 + 0.2 * 0.5 + 0.1 * 0.7  # population mean of μ(a, b) = 0.5 + 0.2a + 0.1b
    covered, reps = 0, 400
    for _ in range(reps):
        G = 120
        a, b = rng.random(G) < 0.2, rng.random(G) < 0.5  # the sample under-represents a=1 and b=1
        mu = 0.5 + 0.2 * a + 0.1 * b
        p = rng.beta(mu * 8, (1 - mu) * 8)  # raters differ within a cell
        n = 1 + rng.poisson(4, G)
        raters = np.repeat(np.arange(G).astype(str), n)
        scores = (rng.random(n.sum()) < np.repeat(p, n)).astype(float)
        labels = pd.DataFrame({"a": a.astype(int).astype(str), "b": b.astype(int).astype(str)},
                              index=np.arange(G).astype(str))
        ci = weighted_cluster_interval(scores, raters, rake(labels, targets))
        covered += ci.ci_low <= truth <= ci.ci_high
    assert 0.92 <= covered / reps <= 0.98  # 0.9575 here; unweighted, the sample's skew would put it near 0


def planted_scores(shift, raters=60, per_rater=6, seed=0, runs=("hard", "contrast", "us_rep")):
    """Held-out pairs half of which have the formal answer chosen, and margins preferring it with a per-arm shift."""
    rng = np.random.default_rng(seed)
    n = raters * per_rater
    formal_chosen = rng.random(n) < 0.5
    formal, casual = " Certainly. Here it is.", " sure, here it is"
    pairs = pd.DataFrame({"user_id": np.repeat([f"u{i}" for i in range(raters)], per_rater),
                          "chosen": np.where(formal_chosen, formal, casual),
                          "rejected": np.where(formal_chosen, casual, formal)})
    margins = {}
    for run in runs:
        prefers_formal = rng.random(n) < 0.5 + shift.get(run.split("-")[0], 0.0)
        margins[run] = np.where(prefers_formal == formal_chosen, 1.0, -1.0)
    return pairs, margins


def test_planted_verdict_reads_targets_from_the_configs_and_needs_its_interval_above_zero():
    from dlm.sortition import load_panel_config

    configs = {"hard": load_panel_config("configs/panel_config.yaml"),
               "contrast": load_panel_config("configs/panels/crowdworkers.yaml")}
    pairs, margins = planted_scores({"hard": 0.3, "contrast": -0.1})
    style = alignment.style_by_arm(pairs, margins, "Certainly.")
    verdict = alignment.planted_verdict(style, configs)
    assert verdict.older_arm == "hard" and verdict.older_share == pytest.approx(0.38)
    assert verdict.younger_arm == "contrast" and verdict.younger_share == pytest.approx(0.11)
    assert verdict.difference == pytest.approx(verdict.older_prefers - verdict.younger_prefers)
    assert 0 < verdict.ci_low < verdict.difference < verdict.ci_high and verdict.raters == 60
    assert verdict.recovered and "recovered" in verdict.sentence() and "95% interval" in verdict.sentence()
    assert verdict.estimand == "conditional on the trained models"  # one run per arm
    # a point difference in the planted direction whose interval includes 0 is not "recovered"
    pairs, margins = planted_scores({"hard": 0.03}, raters=20, seed=1)
    weak = alignment.planted_verdict(alignment.style_by_arm(pairs, margins, "Certainly."), configs)
    assert weak.ci_low < 0 < weak.ci_high and not weak.recovered
    # without per-pair scores there is no interval, and no claim
    bare = alignment.planted_verdict(pd.DataFrame({"prefers_formal": [0.4, 0.1]}, index=["hard", "contrast"]), configs)
    assert bare.older_prefers > bare.younger_prefers and not bare.recovered and "no interval" in bare.sentence()
    assert alignment.planted_verdict(style.drop(index="contrast"), configs) is None


def test_planted_interval_pools_replicate_runs_over_draws():
    from dlm.sortition import load_panel_config

    configs = {"hard": load_panel_config("configs/panel_config.yaml"),
               "contrast": load_panel_config("configs/panels/crowdworkers.yaml")}
    runs = ("hard", "hard-r1", "hard-r2", "contrast", "contrast-r1", "contrast-r2")
    pairs, margins = planted_scores({"hard": 0.3}, runs=runs)
    verdict = alignment.planted_verdict(alignment.style_by_arm(pairs, margins, "Certainly."), configs)
    assert verdict.estimand == "over draws and seeds" and verdict.recovered
