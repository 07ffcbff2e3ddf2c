"""Interval rules for the crossed layout, scored on every design that has one: none covers 93–97% everywhere.

    python benchmarks/crossed_rules.py [--reps 20000]

The crossed layout is an undrawn arm's S models (the columns: `soft`'s seeds) crossed with a drawn
arm's R panel draws (`hard`), over G clauses or raters: `soft:hard` in `real` (R × S = 4 × 3) and in
the test grid's 3 × 2. For R × S in 3 × 2 (tests/test_varcomp.py's seeds), 4 × 3, 2 × 2, 2 × 3,
3 × 3, 3 × 4 and 5 × 2, the cells are 06's win rates and 07's per-group differences (draw-,
seed-dominated and mixed; 12 and 25 clauses or raters; tests/varcomp_sim.py) and independent model
effects without draw effects (tests/test_pooling.py's simulator; 12 and 25 clauses). 07's tables
share each soft model's agreement with a rater across its R pairs, as real 06 tables share its
answers; the win-rate cells here draw every pair's outcomes apart (benchmarks/varcomp_coverage.py's
`shared_answers` scores the shipped rule when they are shared).

Every rule is a function of the seven mean squares of the rows × columns × clauses table (the
shipped one is checked against dlm.stats.pooling on every table) and is scored twice: on the
simulated tables, and in normal theory (mean squares drawn as independent scaled χ² at each cell's
expected mean squares, the mean as a normal), so that a spread seen in both belongs to the rule and
the design, not to binomial outcomes. `robustness`: normal theory when the soft arm's seed variance
is 1, 4 or 9 times the hard arm's (the grid gives both one seed SD). Writes
benchmarks/results/crossed_rules.json; docs/design.md quotes it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.special import stdtrit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from test_pooling import simulate, star_pairs  # noqa: E402
from varcomp_sim import CONTRASTS, SETTINGS, cell_seed, contrast_pairs, difference_table, win_table  # noqa: E402

from dlm.io import write_json_atomic  # noqa: E402
from dlm.stats import pooling  # noqa: E402

# The seven mean squares (per observation) of a rows × columns × clauses table, with coefficients that
# make their sum an unbiased estimate of n·Var(mean), n = R·S·G (crossed random effects).
SIGNS = {"r": 1, "c": 1, "g": 1, "rc": -1, "rg": -1, "cg": -1, "rcg": 1}
Q975 = 0.975


def degrees_of_freedom(R: int, S: int, G: int) -> dict[str, int]:
    """The df of each of the seven mean squares."""
    return {"r": R - 1, "c": S - 1, "g": G - 1, "rc": (R - 1) * (S - 1), "rg": (R - 1) * (G - 1),
            "cg": (S - 1) * (G - 1), "rcg": (R - 1) * (S - 1) * (G - 1)}


def mean_squares(Y: np.ndarray, rows: tuple[int, ...], cols: tuple[int, ...]) -> dict:
    """The mean squares of a stack (N, J, G) of pair × clause tables laid out as rows × columns × clauses."""
    N, J, G = Y.shape
    R, S = max(rows) + 1, max(cols) + 1
    Z = np.empty((N, R, S, G))
    Z[:, list(rows), list(cols), :] = Y
    m = Z.mean((1, 2, 3), keepdims=True)
    r, c, g = Z.mean((2, 3), keepdims=True), Z.mean((1, 3), keepdims=True), Z.mean((1, 2), keepdims=True)
    rc, rg, cg = Z.mean(3, keepdims=True), Z.mean(2, keepdims=True), Z.mean(1, keepdims=True)

    def ss(a):
        return (np.broadcast_to(a, Z.shape) ** 2).reshape(N, -1).sum(1)

    df = degrees_of_freedom(R, S, G)
    dev = {"r": r - m, "c": c - m, "g": g - m, "rc": rc - r - c + m, "rg": rg - r - g + m, "cg": cg - c - g + m,
           "rcg": Z - rc - rg - cg + r + c + g - m}
    return {"ms": {k: ss(dev[k]) / df[k] for k in SIGNS}, "df": df, "R": R, "S": S, "G": G, "mean": m[:, 0, 0, 0]}


def _piece(t: dict, coef: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """A linear combination of mean squares and its Satterthwaite df."""
    ms, df = t["ms"], t["df"]
    value = sum(c * ms[k] for k, c in coef.items())
    with np.errstate(divide="ignore", invalid="ignore"):
        return value, value**2 / sum((c * ms[k]) ** 2 / df[k] for k, c in coef.items())


def _welch(pieces: list[tuple[np.ndarray, np.ndarray]], fallback: float) -> tuple[np.ndarray, np.ndarray]:
    """Quantile and variance of a sum of pieces (each truncated at 0), with Welch–Satterthwaite's df."""
    total = sum(np.maximum(v, 0) for v, _ in pieces)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = total**2 / sum(np.where(v > 0, v**2 / d, 0) for v, d in pieces)
    return stdtrit(np.where(np.isfinite(nu) & (nu > 0), nu, fallback), Q975), total


def _residual(t: dict) -> np.ndarray:
    """The within-pair residual mean square (pairs × clauses), as dlm.stats.pooling computes it."""
    ms, df, J, G = t["ms"], t["df"], t["R"] * t["S"], t["G"]
    return (df["rg"] * ms["rg"] + df["cg"] * ms["cg"] + df["rcg"] * ms["rcg"]) / ((J - 1) * (G - 1))


def _draws(t: dict) -> tuple[np.ndarray, np.ndarray]:
    """The draws' term (MS_draws − MS_draws×columns)/(JG), 0 within rounding, and its Satterthwaite df."""
    ms, df, R, G = t["ms"], t["df"], t["R"], t["G"]
    excess = ms["r"] - ms["rc"]
    excess = np.where(excess > 1e-12 * ms["r"], excess, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        satterthwaite = np.where(excess > 0, excess**2 / (ms["r"] ** 2 / df["r"] + ms["rc"] ** 2 / df["rc"]), R - 1.0)
    return excess / (R * t["S"] * G), satterthwaite


def _clause(t: dict, residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The clause term (MS_clauses − residual)/(JG) where positive, and its Satterthwaite df."""
    ms, J, G = t["ms"], t["R"] * t["S"], t["G"]
    with np.errstate(divide="ignore", invalid="ignore"):
        satterthwaite = (ms["g"] - residual) ** 2 / (ms["g"] ** 2 / (G - 1) + residual**2 / ((J - 1) * (G - 1)))
    has_clause = ms["g"] > residual
    return np.where(has_clause, ms["g"] - residual, 0) / (J * G), np.where(has_clause, satterthwaite, 1.0)


def shipped(t: dict) -> np.ndarray:
    """dlm.stats.pooling: the columns' mean square whole (S − 1 df), the draws' term, the clause term; Welch."""
    R, S, G = t["R"], t["S"], t["G"]
    draws, draws_df = _draws(t)
    clause, clause_df = _clause(t, _residual(t))
    parts = [(t["ms"]["c"] / (R * S * G), np.full_like(draws, S - 1.0)), (draws, draws_df),
             (clause, np.sqrt(clause_df * (G - 1)))]
    q, total = _welch(parts, S - 1.0)
    return q * np.sqrt(total)


def _excess_split(t: dict, draws_df: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    """The columns' excess over the within-pair residual with its own (S − 1)-df quantile; the rest Welch."""
    R, S, G = t["R"], t["S"], t["G"]
    J, residual = R * S, _residual(t)
    columns = np.maximum(t["ms"]["c"] - residual, 0) / (J * G)
    draws, satterthwaite = _draws(t)
    clause, _ = _clause(t, residual)
    parts = [(residual / (J * G), np.full_like(residual, (J - 1.0) * (G - 1))), (draws, draws_df(satterthwaite, R)),
             (clause, np.full_like(residual, G - 1.0))]
    q, total = _welch(parts, R - 1.0)
    return np.sqrt(stdtrit(S - 1.0, Q975) ** 2 * columns + q**2 * total)


def excess_split(t: dict) -> np.ndarray:
    """The excess split with Satterthwaite's df for the draws' term (tried in session 9)."""
    return _excess_split(t, lambda satterthwaite, R: satterthwaite)


def excess_split_geometric_draws(t: dict) -> np.ndarray:
    """The excess split, the draws' df the geometric mean of Satterthwaite's and R − 1 (fitted to the 3 × 2 grid)."""
    return _excess_split(t, lambda satterthwaite, R: np.sqrt(satterthwaite * (R - 1.0)))


def _three_way_pieces(t: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """n·Var(mean) as four pieces with non-negative expectations: columns, draws, clauses, the rest."""
    return [_piece(t, {"c": 1, "cg": -1}), _piece(t, {"r": 1, "rc": -1, "rg": -1, "rcg": 1}),
            _piece(t, {"g": 1, "rg": -1, "cg": -1, "rcg": 1}), _piece(t, {"rg": 1, "cg": 1, "rcg": -1})]


def three_way_welch(t: dict) -> np.ndarray:
    """Unbiased three-way decomposition (a column × clause term counted once), Welch on the pieces."""
    q, total = _welch(_three_way_pieces(t), t["S"] - 1.0)
    return q * np.sqrt(total / (t["R"] * t["S"] * t["G"]))


def three_way_columns_own_quantile(t: dict) -> np.ndarray:
    """The same pieces; the columns' piece with its own (S − 1)-df quantile, the rest Welch."""
    columns, *rest = _three_way_pieces(t)
    q, total = _welch(rest, t["R"] - 1.0)
    half2 = stdtrit(t["S"] - 1.0, Q975) ** 2 * np.maximum(columns[0], 0) + q**2 * total
    return np.sqrt(half2 / (t["R"] * t["S"] * t["G"]))


def pooled_seed_variance(t: dict) -> np.ndarray:
    """One seed variance for both arms: the drawn arm's seeds within draws lend their df to the columns' piece."""
    R, S = t["R"], t["S"]
    w1, w2 = S - 1.0, (R - 1.0) * (S - 1)
    # The columns' piece (C − CG) estimates (R + 1)·G·σ²_seed when both arms share σ²_seed, and so does
    # (R + 1)(RC − RCG): their df-weighted mean.
    w1, w2 = w1 / (w1 + w2), w2 / (w1 + w2) * (R + 1)
    seeds = _piece(t, {"c": w1, "cg": -w1, "rc": w2, "rcg": -w2})
    _, *rest = _three_way_pieces(t)
    q, total = _welch([seeds, *rest], S - 1.0)
    return q * np.sqrt(total / (R * S * t["G"]))


RULES: dict[str, Callable[[dict], np.ndarray]] = {
    "shipped": shipped, "excess_split": excess_split, "excess_split_geometric_draws": excess_split_geometric_draws,
    "three_way_welch": three_way_welch, "three_way_columns_own_quantile": three_way_columns_own_quantile,
    "pooled_seed_variance": pooled_seed_variance}
DESIGNS = ((3, 2), (4, 3), (2, 2), (2, 3), (3, 3), (3, 4), (5, 2))  # the test grid's, `real`'s, then others


def cells(R: int, S: int, reps: int) -> list[tuple[str, np.ndarray, pooling.ContrastDesign, np.ndarray]]:
    """(name, tables, design, truth) of every crossed cell of R draws × S seeds (3 × 2: the tests' seeds)."""
    out = []
    pairs = contrast_pairs("soft", "hard", R, S)
    for setting in SETTINGS:
        for size in (12, 25):
            seed = cell_seed(R, S, size, CONTRASTS.index(("soft", "hard")))  # tests/test_varcomp.py's seed
            out.append((f"win rate, {setting}, {size} clauses", *win_table(pairs, size, reps, *SETTINGS[setting], seed=seed)))
            out.append((f"group difference, {setting}, {size} raters",
                        *difference_table(pairs, size, reps, *SETTINGS[setting], seed=seed)))
    for G in (12, 25):
        out.append((f"independent models, no draw effect, {G} clauses",
                    *simulate(star_pairs(R, S), G, reps, seed=R * 100 + S * 10 + G)))
    return out


def normal_theory(expected: dict[str, float], R: int, S: int, G: int, reps: int, seed: int) -> dict:
    """Mean squares as independent scaled χ² at `expected`, and a normal mean with the variance they imply."""
    rng = np.random.default_rng(seed)
    df = degrees_of_freedom(R, S, G)
    variance = sum(SIGNS[k] * expected[k] for k in SIGNS) / (R * S * G)
    return {"ms": {k: expected[k] * rng.chisquare(df[k], reps) / df[k] for k in SIGNS}, "df": df, "R": R, "S": S,
            "G": G, "mean": rng.normal(0, np.sqrt(variance), reps)}


def expected_mean_squares(R: int, S: int, G: int, draw: float, soft_seed: float, hard_seed: float, clause: float,
                          soft_by_clause: float, noise: float) -> dict[str, float]:
    """E[MS] of the crossed random model (rows: draws; columns: soft models; a cell's own effect: hard's seed)."""
    return {"r": noise + G * hard_seed + S * G * draw, "c": noise + R * soft_by_clause + G * hard_seed + R * G * soft_seed,
            "g": noise + R * soft_by_clause + R * S * clause, "rc": noise + G * hard_seed, "rg": noise,
            "cg": noise + R * soft_by_clause, "rcg": noise}


def robustness(reps: int) -> list[dict]:
    """Coverage in normal theory when the soft arm's seed variance is 1, 4 or 9 times the hard arm's (SD 0.04)."""
    rows = []
    for G in (12, 25):
        for ratio in (1.0, 4.0, 9.0):
            for draw_sd in (0.0, 0.06):
                t = normal_theory(expected_mean_squares(3, 2, G, draw_sd**2, 0.0016 * ratio, 0.0016, 0.0025, 0.0,
                                                        0.015), 3, 2, G, reps, seed=G)
                rows.append({"clauses": G, "soft_to_hard_seed_variance": ratio, "draw_sd": draw_sd,
                             **{name: _covered(t, np.zeros(reps), rule) for name, rule in RULES.items()}})
    return rows


def _covered(t: dict, truth: np.ndarray, rule: Callable[[dict], np.ndarray]) -> float:
    """Share of the stack whose interval (mean ± the rule's half-width) contains the truth."""
    return round(float(np.mean(np.abs(t["mean"] - truth) <= rule(t))), 4)


def design_cells(R: int, S: int, reps: int) -> list[dict]:
    """Each cell's coverage under every rule, on the simulated tables and in normal theory."""
    rows = []
    for i, (name, table, design, truth) in enumerate(cells(R, S, reps)):
        t = mean_squares(table, design.rows, design.unit)
        est = pooling.pooled_estimates(table, design, bounds=(-np.inf, np.inf))
        finite = np.isfinite(est["ci_high"])
        # the shipped rule written on mean squares is the estimator dlm uses, to rounding
        assert np.allclose(shipped(t)[finite], (est["ci_high"] - est["ci_low"])[finite] / 2, rtol=1e-9), name
        expected = {k: float(v.mean()) for k, v in t["ms"].items()}
        normal = normal_theory(expected, R, S, t["G"], reps, seed=i)
        rows.append({"design": f"{R}x{S}", "cell": name,
                     **{rule: {"sim": _covered(t, truth, f), "normal": _covered(normal, np.zeros(reps), f)}
                        for rule, f in RULES.items()}})
    return rows


def summary(rows: list[dict]) -> dict:
    """Per rule: the range over all cells and per design, and how many cells fall outside 93–97%."""
    out = {}
    for rule in RULES:
        sim = [r[rule]["sim"] for r in rows]
        out[rule] = {"sim": [min(sim), max(sim)],
                     "normal": [min(r[rule]["normal"] for r in rows), max(r[rule]["normal"] for r in rows)],
                     "below_93": sum(c < 0.93 for c in sim), "above_97": sum(c > 0.97 for c in sim), "cells": len(sim),
                     "by_design": {d: [min(r[rule]["sim"] for r in rows if r["design"] == d),
                                       max(r[rule]["sim"] for r in rows if r["design"] == d)]
                                   for d in dict.fromkeys(r["design"] for r in rows)}}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=20000)
    p.add_argument("--output", default=str(ROOT / "benchmarks/results/crossed_rules.json"))
    args = p.parse_args()
    rows = [row for R, S in DESIGNS for row in design_cells(R, S, args.reps)]
    result = {"reps": args.reps, "summary": summary(rows), "cells": rows, "robustness": robustness(args.reps)}
    write_json_atomic(args.output, result)
    for rule, s in result["summary"].items():
        print(f"{rule:32s} {s['sim'][0]:.1%}–{s['sim'][1]:.1%}  outside 93–97%: {s['below_93']} below, "
              f"{s['above_97']} above of {s['cells']}  " + " ".join(f"{d} {lo:.1%}–{hi:.1%}" for d, (lo, hi) in s["by_design"].items()))


if __name__ == "__main__":
    main()
