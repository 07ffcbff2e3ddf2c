"""Intervals over what was drawn: models of one panel draw share its effect, seeds nest in draws (dlm.stats.pooling).

Simulated designs R draws × S seeds with arms `hard`, `contrast` (drawn) and `soft`, `soft_leximin`
(no draw), each model carrying its draw's effect, its own seed effect and an effect shared by every
model of its seed index (tests/varcomp_sim.py). Coverage is of each contrast's own estimand: over
draws and seeds, or conditional on what the design cannot vary (one model, one draw).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from dlm.alignment import heldout as alignment
from dlm.arms import replicates
from dlm.stats import pooling
from varcomp_sim import CONTRASTS, SETTINGS, cell_seed, contrast_pairs, difference_table, win_table


def coverage(a, b, draws, seeds, G, setting, reps, seed, answer_sd=0.0):
    table, design, truth = win_table(contrast_pairs(a, b, draws, seeds), G, reps, *SETTINGS[setting], seed=seed,
                                     answer_sd=answer_sd)
    est = pooling.pooled_estimates(table, design)
    return float(np.mean((est["ci_low"] <= truth) & (truth <= est["ci_high"]))), design


def test_the_seeds_of_one_draw_are_one_unit_and_the_labels_say_what_was_averaged_over():
    matched = pooling.contrast_design(*zip(*contrast_pairs("hard", "contrast", 3, 2), strict=True))
    assert matched.units == 3 and matched.scope == "over draws and seeds"  # not 6 pairs: draws are shared
    star = pooling.contrast_design(*zip(*contrast_pairs("soft", "hard", 3, 2), strict=True))
    assert star.rows == (0, 0, 1, 1, 2, 2) and star.units == 2 and star.estimand == "marginal"
    one_draw = pooling.contrast_design(*zip(*contrast_pairs("soft", "hard", 1, 3), strict=True), drawn={"hard"})
    assert one_draw.units == 3 and one_draw.scope == "over seeds, conditional on hard's one panel draw"
    one_soft = pooling.contrast_design(*zip(*contrast_pairs("soft", "hard", 5, 1), strict=True))
    assert one_soft.units == 5 and one_soft.conditional_on == ("soft",)
    assert pooling.contrast_design(["soft"], ["soft_leximin"]).scope == "conditional on the trained models"


def test_real_design_soft_vs_hard_covers_where_models_as_units_did_not():
    """The `real` design's primary (3 draws × 2 seeds against 2 soft models), draw-dominated, 25 clauses."""
    cov, design = coverage("soft", "hard", 3, 2, 25, "draw-dominated", 2000, seed=1)
    assert design.rows is not None and 0.93 <= cov <= 0.97
    table, _, truth = win_table(contrast_pairs("soft", "hard", 3, 2), 25, 2000, *SETTINGS["draw-dominated"], seed=1)
    old = pooling.pooled_estimates(table, pooling.ContrastDesign(design.model_a, design.model_b, design.unit, (), "b"))
    assert np.mean((old["ci_low"] <= truth) & (truth <= old["ci_high"])) < 0.92  # the draws' effect ignored


DESIGNS = [(3, 2), (5, 1), (1, 3), (4, 3)]  # R draws × S seeds; 4 × 3 is `real`'s


@pytest.mark.slow
@pytest.mark.parametrize("draws,seeds", DESIGNS)
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("G", [12, 25])
def test_every_contrast_covers_93_to_97_percent(draws, seeds, setting, G):
    for i, (a, b) in enumerate(CONTRASTS):
        cov, design = coverage(a, b, draws, seeds, G, setting, 5000, seed=cell_seed(draws, seeds, G, i))
        assert 0.93 <= cov <= 0.97, (a, b, design.scope, cov)


CROSSED = [(3, 2), (4, 3)]  # soft's seeds crossed with hard's draws: the primary's layout in the grid and in `real`


@pytest.mark.slow
@pytest.mark.parametrize("draws,seeds", CROSSED)
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("G", [12, 25])
def test_the_primary_covers_when_each_model_answers_once_for_all_its_pairs(draws, seeds, setting, G):
    """06's `soft:hard` when a soft model's answers are shared by its R pairs (answer SD 0.1), as real judge tables are."""
    seed = cell_seed(draws, seeds, G, CONTRASTS.index(("soft", "hard")))
    cov, design = coverage("soft", "hard", draws, seeds, G, setting, 5000, seed=seed, answer_sd=0.1)
    assert design.rows is not None and 0.93 <= cov <= 0.97, cov


def test_summarize_replicates_is_finite_and_at_least_as_wide_as_draws_as_units(tmp_path):
    """`dlm summarize --replicates` on soft vs 3 hard draws × 2 seeds, the draws differing, a draw's seeds identical."""
    rows, rng = [], np.random.default_rng(0)
    shift = (-0.25, 0.0, 0.25)
    for clause in range(12):
        for q in range(6):
            u = rng.random()
            for r in range(3):
                for s in range(2):
                    hard = "hard" + (f"-r{r}" if r else "") + (f"-s{s}" if s else "")
                    soft = "soft" + (f"-s{s}" if s else "")
                    winner = hard if u < 0.5 + shift[r] else soft  # the same for both seeds of a draw
                    rows += [{"question_id": f"c{clause}-q{q}", "clause_id": f"c{clause}", "model_a": soft,
                              "model_b": hard, "order": order, "judge_model": "j", "winner": winner, "len_a": 10,
                              "len_b": 10} for order in ("ab", "ba")]
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = run_cli("summarize", "--records", records, "--replicates", "--primary", "soft:hard",
                  "--output", tmp_path / "s.json")
    assert out.returncode == 0, out.stderr
    arm = json.loads((tmp_path / "s.json").read_text())["arms"]["soft vs hard"]
    assert arm["crossed_draws"] and arm["scope"] == "over draws and seeds"
    assert arm["ci_low"] is not None and arm["ci_high"] is not None
    # the same scores with each draw (its two identical seeds averaged) as one unit
    frame = pd.DataFrame(rows).drop_duplicates(["question_id", "model_b"])
    frame["score"] = (frame["winner"] == frame["model_a"]).astype(float)
    frame["draw"] = [replicates.parse_run(m).draw for m in frame["model_b"]]
    by_draw = pooling.pooled_contrast(frame.groupby(["draw", "clause_id"])["score"].mean().unstack().to_numpy())
    assert np.isfinite(by_draw["ci_high"] - by_draw["ci_low"])
    assert arm["ci_high"] - arm["ci_low"] >= by_draw["ci_high"] - by_draw["ci_low"] - 1e-12


def difference_coverage(a, b, draws, seeds, raters, setting, reps, seed):
    table, design, truth = difference_table(contrast_pairs(a, b, draws, seeds), raters, reps, *SETTINGS[setting],
                                            seed=seed)
    est = pooling.pooled_estimates(table, design, null=0.0, bounds=(-1.0, 1.0))
    return float(np.mean((est["ci_low"] <= truth) & (truth <= est["ci_high"])))


def test_group_difference_over_draws_covers_in_the_real_design():
    """07's per-group paired difference (hard − contrast, 3 draws × 2 seeds, 25 raters in the group)."""
    assert 0.93 <= difference_coverage("hard", "contrast", 3, 2, 25, "draw-dominated", 2000, seed=3) <= 0.97


# Conservative by decision (docs/design.md, "The crossed layout beyond the grid"): soft − hard, where draws cross
# soft's seeds, covers more than 97% with 12 raters: 97.8% in 3 × 2 when draws dominate, and in `real`'s 4 × 3
# 98.2% (draw-dominated), 97.0% (seed-dominated) and 97.8% (mixed). The column mean square (S − 1 df) mostly holds
# each soft model's agreement noise, shared by its R pairs; benchmarks/crossed_rules.py shows that the rules which
# bring these cells under 97% under-cover elsewhere. These cells must stay valid (≥ 95%) and within 98.5%.
CONSERVATIVE = {(3, 2, "draw-dominated", 12), (4, 3, "draw-dominated", 12), (4, 3, "seed-dominated", 12),
                (4, 3, "mixed", 12)}


@pytest.mark.slow
@pytest.mark.parametrize("draws,seeds", DESIGNS)
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("raters", [pytest.param(12, id="12"), pytest.param(25, id="25")])
def test_every_group_difference_covers_93_to_97_percent(draws, seeds, setting, raters):
    known = (draws, seeds, setting, raters) in CONSERVATIVE
    for i, (a, b) in enumerate(CONTRASTS):
        cov = difference_coverage(a, b, draws, seeds, raters, setting, 5000, seed=cell_seed(draws, seeds, raters, i))
        low, high = (0.95, 0.985) if known and (a, b) == ("soft", "hard") else (0.93, 0.97)
        assert low <= cov <= high, (a, b, cov)


def test_paired_by_group_pools_runs_by_draw_labels_the_estimand_and_holm_adjusts(tmp_path):

    rng = np.random.default_rng(0)
    raters = np.repeat([f"r{i}" for i in range(40)], 6)
    pairs = pd.DataFrame({"user_id": raters})
    groups = pd.DataFrame({"age": np.where(np.arange(40) < 20, "old", "young"),
                           "region": np.where(np.arange(40) % 2, "north", "south")},
                          index=[f"r{i}" for i in range(40)])
    names = [r.name for r in replicates.runs(["hard", "contrast"], 3, 2, drawn=("hard", "contrast"))]
    margins = {m: rng.normal(0.1 if m.startswith("hard") else 0.0, 1, len(raters)) for m in names}
    table = alignment.paired_by_group(pairs, margins, groups, [("hard", "contrast")], min_raters=5)
    overall = table[table["attribute"] == "overall"].iloc[0]
    assert overall["units"] == 3 and overall["estimand"] == "over draws and seeds" and overall["runs"] == 6
    rows = table[table["attribute"] != "overall"]
    assert len(rows) == 4 and (rows["p_holm"] >= rows["p_value"]).all()
    assert rows["p_holm"].max() <= 1 and overall["p_holm"] == overall["p_value"]


# A 07 table (scores in eighths) of soft − hard, 3 draws × 2 seeds, 12 raters, whose draws' mean square
# equals its draws × columns mean square: the draws' term is exactly 0.
TIED = [[0, -1, -2, -1, -2, -2, -2, -1, -2, -3, 0, -1], [-3, 1, -2, 0, -1, 0, 0, -1, -3, -3, -1, 1],
        [-2, -1, -1, -2, 1, -3, -3, 2, -5, -1, -1, 0], [-2, 4, -1, 1, -2, 0, 0, 0, -4, -1, 1, -1],
        [4, -2, -3, 4, -1, -2, -1, -1, -4, -2, -6, 1], [1, 1, -4, -1, 0, -2, -2, -2, -3, 1, 0, 1]]


def test_rounding_does_not_decide_whether_the_draws_term_enters():
    """Equal mean squares (discrete scores) give the interval of a draws' term just below 0, not a jump."""
    design = pooling.contrast_design(*zip(*contrast_pairs("soft", "hard", 3, 2), strict=True))
    y = np.array(TIED) / 8
    rows = np.asarray(design.rows)
    draw_means = np.array([y[rows == r].mean() for r in range(3)])
    nudged = y - 1e-9 * (draw_means[rows] - y.mean())[:, None]  # the draws' mean square a hair smaller
    tied, below = (pooling.pooled_contrast(t, design, null=0.0, bounds=(-1.0, 1.0)) for t in (y, nudged))
    assert tied["ci_high"] == pytest.approx(below["ci_high"], abs=1e-6)
    assert tied["ci_low"] == pytest.approx(below["ci_low"], abs=1e-6)
