"""Arm contrasts pooled over trained models: designs, conditional labels, coverage by simulation."""

from __future__ import annotations

import numpy as np
import pytest

from dlm.stats import pooling


def star_pairs(draws, seeds):
    """The pairs `replicates.matched_pairs` judges for a drawn arm against an arm without draws."""
    return [(f"hard-r{r}-s{s}", f"soft-s{s}") for r in range(draws) for s in range(seeds)]


def test_designs_units_and_estimands():
    d = pooling.contrast_design(*zip(*star_pairs(3, 2), strict=True))
    assert (d.units, d.estimand, d.shared) == (2, "marginal", "b")  # two soft models: two units
    d = pooling.contrast_design(*zip(*star_pairs(2, 1), strict=True))
    assert (d.units, d.estimand, d.conditional_on) == (2, "conditional", ("soft-s0",))
    matched = [(f"hard-r{r}", f"size_matched-r{r}") for r in range(3)]
    assert pooling.contrast_design(*zip(*matched, strict=True)).units == 3
    one = pooling.contrast_design(["soft"], ["hard"])
    assert (one.units, one.conditional_on) == (0, ("soft", "hard"))


def test_a_single_model_interval_is_the_cluster_interval_labelled_conditional():
    y = np.array([[0.2, 0.9, 0.6, 0.4, 0.7]])
    out = pooling.pooled_contrast(y, pooling.contrast_design(["soft"], ["hard"]))
    se = y.std(ddof=1) / np.sqrt(5)
    assert out["se"] == pytest.approx(se) and out["estimand"] == "conditional"
    assert out["conditional_on"] == ["soft", "hard"] and np.isnan(out["model_sd_a"])


def test_the_shared_model_is_counted_once():
    """Six pairs with two soft models: the interval has one df, not five as if the pairs were independent."""
    rng = np.random.default_rng(0)
    pairs = star_pairs(3, 2)
    y = 0.5 + rng.normal(0, 0.1, (6, 25))
    y[[1, 3, 5]] += 0.05  # soft-s1's pairs
    pooled = pooling.pooled_contrast(y, pooling.contrast_design(*zip(*pairs, strict=True)))
    naive = pooling.pooled_contrast(y)  # every pair its own unit
    assert pooled["units"] == 2 and naive["ci_high"] - naive["ci_low"] < pooled["ci_high"] - pooled["ci_low"]


def simulate(pairs, G, reps, seed, sd=0.05, clause_sd=0.05, Q=10, ties=0.4):
    """Clause mean scores (reps, J, G) with every trained model's own effect, and the estimand per rep."""
    rng = np.random.default_rng(seed)
    a_names, ia = np.unique([a for a, _ in pairs], return_inverse=True)
    b_names, ib = np.unique([b for _, b in pairs], return_inverse=True)
    alpha, beta = rng.normal(0, sd, (reps, len(a_names))), rng.normal(0, sd, (reps, len(b_names)))
    win = (1 - ties) / 2 + (alpha[:, ia] - beta[:, ib])[:, :, None] + rng.normal(0, clause_sd, (reps, 1, G))
    u = rng.random((reps, len(pairs), G, Q))
    table = np.where(u < win[..., None], 1.0, np.where(u < win[..., None] + ties, 0.5, 0.0)).mean(-1)
    design = pooling.contrast_design([a for a, _ in pairs], [b for _, b in pairs])
    # marginal: ½; conditional on the one B model: ½ − its effect (A's models averaged over)
    truth = 0.5 - beta[:, 0] if design.conditional_on else np.full(reps, 0.5)
    return table, design, truth


@pytest.mark.slow
@pytest.mark.parametrize("draws,seeds", [(3, 2), (2, 1)])
@pytest.mark.parametrize("G", [12, 25])
def test_pooled_interval_covers_93_to_97_percent(draws, seeds, G):
    table, design, truth = simulate(star_pairs(draws, seeds), G, 3000, seed=draws * 100 + seeds * 10 + G)
    est = pooling.pooled_estimates(table, design)
    covered = (est["ci_low"] <= truth) & (truth <= est["ci_high"])
    assert 0.93 <= covered.mean() <= 0.97
    # p < 0.05 exactly when the interval excludes the truth's null (the p-value inverts the interval)
    at_null = pooling.pooled_estimates(table - (truth - 0.5)[:, None, None], design)
    assert np.array_equal(at_null["p_value"] < 0.05, ~covered & ~est["uninformative"])


@pytest.mark.slow
def test_pairs_as_independent_runs_under_cover():
    """Why models, not pairs, are the unit: treating the 6 pairs of 2 soft models as runs under-covers."""
    table, _, truth = simulate(star_pairs(3, 2), 25, 3000, seed=5)
    naive = pooling.pooled_estimates(table)
    assert np.mean((naive["ci_low"] <= truth) & (truth <= naive["ci_high"])) < 0.9
