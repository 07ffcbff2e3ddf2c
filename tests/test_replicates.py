"""Replicates: run naming and pairing, variance components by simulation, arm-level pooling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlm.arms import replicates

from dlm.stats import winrates as stats
from dlm.errors import DLMError


def test_one_by_one_keeps_plain_names_and_panel_arms_get_draws():
    assert [r.name for r in replicates.runs(["hard", "soft"])] == ["hard", "soft"]
    runs = replicates.runs(["hard", "full"], panel_draws=2, train_seeds=2)
    assert [r.name for r in runs] == ["hard", "hard-s1", "hard-r1", "hard-r1-s1", "full", "full-s1"]
    assert [d.dataset for d in replicates.datasets(["contrast", "us_rep"], 3)] == [
        "contrast", "contrast-r1", "contrast-r2", "us_rep"]
    assert all(replicates.parse_run(r.name) == r for r in runs)
    assert replicates.arm_of("random-r2-s1") == "random" and replicates.arm_of("base") == "base"
    with pytest.raises(DLMError, match="at least 1"):
        replicates.runs(["hard"], panel_draws=0)


def test_matched_pairs_pair_replicate_with_replicate_and_base_with_every_run():
    runs = replicates.runs(["hard", "soft"], panel_draws=2, train_seeds=2)
    pairs = replicates.matched_pairs(["hard", "soft"], runs)
    assert [p for p in pairs if p[0] == "base"] == [("base", r.name) for r in runs]
    # soft has no panel draw: its draw 0 stands in for every hard draw, seed for seed
    assert [p for p in pairs if p[0] != "base"] == [("hard", "soft"), ("hard-s1", "soft-s1"),
                                                      ("hard-r1", "soft"), ("hard-r1-s1", "soft-s1")]


def simulate_table(rng, J, G, sd_run, sd_cluster, sd_resid, mu=0.5):
    return mu + rng.normal(0, sd_run, (J, 1)) + rng.normal(0, sd_cluster, (1, G)) + rng.normal(0, sd_resid, (J, G))


@pytest.mark.parametrize("J,G", [(4, 12), (6, 25)])
def test_replicate_anova_recovers_components_and_covers_the_mean(J, G):
    rng = np.random.default_rng(J * 100 + G)
    sds = (0.06, 0.08, 0.1)
    fits = [stats.replicate_anova(simulate_table(rng, J, G, *sds)) for _ in range(3000)]
    # The mean-square estimators are unbiased for the variances (before truncation at 0, rare here)
    assert np.mean([f["between_model_sd"] ** 2 for f in fits]) == pytest.approx(sds[0] ** 2, rel=0.12)
    assert np.mean([f["cluster_sd"] ** 2 for f in fits]) == pytest.approx(sds[1] ** 2, rel=0.12)
    assert np.mean([f["residual_sd"] ** 2 for f in fits]) == pytest.approx(sds[2] ** 2, rel=0.05)
    covered = np.mean([f["ci_low"] <= 0.5 <= f["ci_high"] for f in fits])
    assert 0.93 <= covered <= 0.975


def test_ignoring_runs_under_covers_when_runs_differ():
    """Why replicates matter: one run's cluster interval misses the arm's mean far too often."""
    rng = np.random.default_rng(3)
    tables = [simulate_table(rng, 4, 12, 0.08, 0.05, 0.05) for _ in range(2000)]
    single = np.mean([(lambda f: f["ci_low"] <= 0.5 <= f["ci_high"])(stats.replicate_anova(t[:1])) for t in tables])
    pooled = np.mean([(lambda f: f["ci_low"] <= 0.5 <= f["ci_high"])(stats.replicate_anova(t)) for t in tables])
    assert single < 0.75 and pooled > 0.93


def test_one_run_has_no_between_run_variance_and_matches_the_cluster_interval():
    y = np.array([[0.2, 0.9, 0.6, 0.4, 0.7]])
    f = stats.replicate_anova(y)
    ref = stats.cluster_t_interval(y[0], np.arange(5))
    assert np.isnan(f["between_model_sd"]) and f["runs"] == 1
    assert (f["estimate"], f["ci_low"], f["ci_high"]) == pytest.approx((ref["estimate"], ref["ci_low"], ref["ci_high"]))


def judged(model_a, model_b, winner, clause, q):
    return [{"question_id": q, "clause_id": clause, "model_a": model_a, "model_b": model_b, "order": order,
             "judge_model": "j", "winner": winner, "len_a": 10, "len_b": 10} for order in ("ab", "ba")]


def test_arm_contrast_pools_replicates_in_one_orientation():
    rows = []
    for clause in ("c1", "c2", "c3"):
        for q in range(2):
            qid = f"{clause}-{q}"
            rows += judged("hard", "soft", "hard", clause, qid)  # hard wins everything...
            rows += judged("soft", "hard-r1", "soft" if q == 0 else "hard-r1", clause, qid)  # ...hard-r1 half
    runs = replicates.runs(["hard", "soft"], panel_draws=2)
    summary = stats.summarise(pd.DataFrame(rows), primary=("soft", "hard"),
                              arms=replicates.arms_of([r.name for r in runs]))
    contrast = summary["arms"]["soft vs hard"]
    assert contrast["primary"] and contrast["runs"] == 2
    assert contrast["win_rate"] == pytest.approx((0.0 + 0.5) / 2)  # soft's rate, replicate by replicate
    assert contrast["estimand"] == "conditional" and contrast["conditional_on"] == ["soft"]  # one soft model
    assert contrast["model_sd_b"] > 0


def test_identical_scores_are_uninformative_not_a_zero_width_interval():
    f = stats.replicate_anova(np.full((3, 4), 0.5))
    assert f["estimate"] == 0.5 and f["uninformative"] and np.isnan(f["ci_low"]) and f["between_model_sd"] == 0.0


def test_contributions_add_up_to_the_variance_of_the_mean():
    rng = np.random.default_rng(7)
    for sd_run in (0.0, 0.05):  # with 0 the run component is usually truncated
        f = stats.replicate_anova(simulate_table(rng, 3, 10, sd_run, 0.05, 0.1))
        total = f["var_from_models"] + f["var_from_clusters"] + f["var_from_residual"]
        assert f["se"] ** 2 == pytest.approx(total)
    assert np.isnan(stats.replicate_anova(np.ones((3, 1)))["se"])  # one clause: no interval
