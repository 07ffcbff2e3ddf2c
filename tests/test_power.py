"""Power: the simulated MDE is where a design really reaches 80% power; the clause-level ceiling."""

from __future__ import annotations

import time

import numpy as np
import pytest

from dlm.stats import pooling
from dlm.stats.power import PowerDesign, contrast_mde, minimum_detectable_effect

MATCHED = tuple((f"hard-r{r}-s{s}", f"size_matched-r{r}-s{s}") for r in range(3) for s in range(2))
STARS = tuple((f"hard-r{r}-s{s}", f"soft-s{s}") for r in range(3) for s in range(2))


def test_mde_takes_seconds_and_clause_ceiling_counts_holm_tests():
    design = PowerDesign(MATCHED, clauses=25, questions_per_clause=10, clause_tests=25 * 21)
    start = time.perf_counter()
    result = minimum_detectable_effect(design, reps=2000)
    assert time.perf_counter() - start < 20
    assert 0 < result.mde < 0.25 and result.estimand == "marginal" and result.units == 3  # a draw's seeds: one unit
    assert result.smallest_clause_p == pytest.approx(2 * 0.5**10)
    assert result.holm_threshold == pytest.approx(0.05 / 525)
    assert 2 * 0.5**result.questions_needed <= 0.05 / 525 < 2 * 0.5 ** (result.questions_needed - 1)
    assert "no clause-level finding is possible" in result.lines()[1]


def test_two_models_of_the_shared_arm_leave_the_primary_untestable_and_more_seeds_fix_it():
    """With 2 soft models the primary's column term has 1 df: only effects near the largest possible reach 80%."""
    result = minimum_detectable_effect(PowerDesign(STARS, 25, 10, draw_sd=0.05, model_sd=0.03), reps=2000)
    assert result.units == 2 and result.mde > 0.2
    more = contrast_mde("soft", "hard", 3, 4, 25, 10, drawn=("hard",), draw_sd=0.05, seed_sd=0.03)
    assert more.units == 4 and more.mde < 0.17 and more.estimand == "marginal"
    one_draw = contrast_mde("soft", "hard", 1, 3, 25, 10, drawn=("hard",))
    assert one_draw.units == 3 and one_draw.estimand == "conditional"  # on hard's one panel draw


def independent_power(pairs, delta, reps, seed, G=25, Q=10, tie=0.1, inconsistency=0.35, sd=0.05, clause_sd=0.05):
    """Power of the pooled estimator on experiments simulated separately (multinomial counts per clause)."""
    rng = np.random.default_rng(seed)
    ia = np.unique([a for a, _ in pairs], return_inverse=True)[1]
    ib = np.unique([b for _, b in pairs], return_inverse=True)[1]
    ties = inconsistency + (1 - inconsistency) * tie
    effect = (rng.normal(0, sd, (reps, ia.max() + 1))[:, ia] - rng.normal(0, sd, (reps, ib.max() + 1))[:, ib])
    win = np.clip((1 - ties) / 2 + delta + effect[:, :, None] + rng.normal(0, clause_sd, (reps, 1, G)), 0, 1 - ties)
    probs = np.stack([win, np.full(win.shape, ties), 1 - ties - win], -1)
    counts = rng.multinomial(Q, probs)  # (reps, J, G, 3): wins, ties, losses
    table = (counts[..., 0] + 0.5 * counts[..., 1]) / Q
    design = pooling.contrast_design([a for a, _ in pairs], [b for _, b in pairs])
    return float(np.mean(pooling.pooled_estimates(table, design)["p_value"] < 0.05))


@pytest.mark.slow
def test_mde_is_within_20_percent_of_where_an_independent_simulation_reaches_80_percent_power():
    mde = minimum_detectable_effect(PowerDesign(MATCHED, 25, 10), reps=2000, seed=0).mde
    grid = np.linspace(0.6, 1.4, 9) * mde
    powers = [independent_power(MATCHED, d, 2000, seed=i + 100) for i, d in enumerate(grid)]
    crossing = np.interp(0.8, powers, grid)  # power rises with the effect
    assert abs(mde - crossing) <= 0.2 * crossing
