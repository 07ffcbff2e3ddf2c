"""Win rates pooled over replicate runs, with panel draws and training seeds as the random factors they are.

An arm contrast (arm A against arm B) is judged on J model pairs, each over the same G clauses;
y_jg is pair j's mean score in clause g. The model is crossed random effects,

    y_jg = μ + α_a(j) − β_b(j) + v_g + e_jg,

α for A's trained models, β for B's, v the clause (which questions were asked), e the rest
(judge noise, model × question). A model's effect is its dataset's draw effect, shared by every
seed trained on that dataset, plus its own seed's; an arm without panel draws has seed variation
only. `replicates.matched_pairs` lets an arm without draws stand in with its draw 0, so in `real`
(3 draws × 2 seeds) the 6 `soft:hard` pairs contain 2 soft models and 3 hard datasets.

The independent units are the connected components of the graph whose nodes are trained models
and whose edges are the judged pairs and "trained on the same dataset" (arms with several draws).
Method of moments (see docs/design.md, "Statistics", for why not REML or a bootstrap):

- two or more units: Var = (MS_units + MS_clauses − MS_residual)/(J·G), MS_units from the unit
  means (K − 1 df), each term with its own df's quantile in the half-width;
- one arm with one model in every pair: conditional on that model, the other arm's models (joined
  by draw) the units;
- a drawn arm's draws crossed with an undrawn arm's seeds (one component, a complete grid): the
  columns (one undrawn model with its drawn partners) are the units, and the draws' shared part
  (MS_draws − MS_interaction)/(R·S) is a term of its own; a Welch–Satterthwaite t on the sum;
- otherwise conditional on every model (clauses and residual only).

`ContrastDesign.scope` names the estimand (over draws and seeds, over seeds, conditional on …) and
`factors` the random factors it averages over. Coverage is checked by simulation in
tests/test_varcomp.py (R × S = 3 × 2, 5 × 1, 1 × 3; draw-, seed-dominated and mixed; 12 and 25 clauses).

A result is `uninformative` when no interval can be computed (fewer than 2 clauses) or its
standard error is 0 (every outcome a tie, or all one way): its interval and p-value are NaN,
never a zero-width interval or p = 1 shown as a finding.

`pooled_estimates` works on a stack of tables at once (numpy, no pandas) so that the power
simulation (`dlm.stats.power`) runs this very estimator.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.special import stdtr, stdtrit  # t CDF and quantile as ufuncs: fast on scalars and stacks

from dlm.arms.replicates import parse_run


@dataclass(frozen=True)
class ContrastDesign:
    """Which trained models each judged pair compares, the independent units they form, and the estimand."""

    model_a: tuple[str, ...]
    model_b: tuple[str, ...]
    unit: tuple[int, ...] | None  # unit index per pair; None: no between-model term (conditional on all)
    conditional_on: tuple[str, ...]  # models (or one-draw datasets) the estimand is conditional on
    shared: str | None  # "a" / "b": the arm whose single model per unit is shared by that unit's pairs
    rows: tuple[int, ...] | None = None  # crossed layout: the drawn arm's panel draw per pair (units are columns)
    factors: tuple[str, ...] = ()  # random factors the interval averages over: "draws", "seeds"

    @property
    def estimand(self) -> str:
        """'marginal' (over both arms' trained models) or 'conditional' (on `conditional_on`)."""
        return "conditional" if self.conditional_on else "marginal"

    @property
    def scope(self) -> str:
        """The estimand in words: over draws and seeds / over draws / over seeds / conditional, and on what."""
        over = " and ".join(self.factors)
        if not over:
            return "conditional on the trained models"
        return f"over {over}" + (f", conditional on {', '.join(self.conditional_on)}" if self.conditional_on else "")

    @property
    def units(self) -> int:
        """Number of independent units of between-model variation (0 when there is no such term)."""
        return 0 if self.unit is None else len(set(self.unit))


def _components(nodes: list, edges: list[tuple]) -> dict:
    """Node → component index (in order of first appearance) of an undirected graph."""
    parent = {n: n for n in nodes}

    def find(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for x, y in edges:
        parent[find(x)] = find(y)
    index: dict = {}
    return {n: index.setdefault(find(n), len(index)) for n in nodes}


def _draw_links(models: list) -> tuple[list[tuple], dict[str, int]]:
    """Edges joining models trained on one dataset of an arm with several panel draws; draws seen per arm."""
    runs = {m: parse_run(m[1]) for m in models}
    draws: dict[str, set[int]] = {}
    for run in runs.values():
        draws.setdefault(run.arm, set()).add(run.draw)
    by_dataset: dict[tuple, list] = {}
    for m, run in runs.items():
        if len(draws[run.arm]) >= 2:  # one draw seen: not a random factor here (conditional on it)
            by_dataset.setdefault((run.arm, run.draw), []).append(m)
    edges = [(group[0], m) for group in by_dataset.values() for m in group[1:]]
    return edges, {arm: len(d) for arm, d in draws.items()}


def _factors(models: list, draws: dict[str, int]) -> tuple[str, ...]:
    """Random factors a units term averages over: draws where an arm has several, and always seeds."""
    # every unit is made of trained models, each with its own seed: their seed effects vary across units
    return ("draws", "seeds") if any(draws[parse_run(m[1]).arm] >= 2 for m in models) else ("seeds",)


def _shared_side(model_a: list[str], model_b: list[str], unit: tuple[int, ...]) -> str | None:
    """'b' when every unit is one B model with distinct A models (a star), 'a' likewise, else None."""
    for side, centre, leaves in (("b", model_b, model_a), ("a", model_a, model_b)):
        by_unit: dict[int, tuple[set, list]] = {}
        for u, c, leaf in zip(unit, centre, leaves, strict=True):
            centres, members = by_unit.setdefault(u, (set(), []))
            centres.add(c)
            members.append(leaf)
        if all(len(c) == 1 and len(set(m)) == len(m) for c, m in by_unit.values()) and any(
                len(m) > 1 for _, m in by_unit.values()):
            return side
    return None


def contrast_design(model_a: list[str], model_b: list[str] | None = None,
                    drawn: Collection[str] | None = None) -> ContrastDesign:
    """The design of J judged pairs (model_a[j] of arm A against model_b[j] of arm B), or of one arm's runs.

    Model names encode arm, panel draw and seed (`dlm.replicates`): models of one dataset (an arm
    with several draws) share its draw effect. `drawn` names arms known to depend on a draw, so that
    an arm seen with one draw is reported as conditional on it.
    """
    model_a = list(model_a)
    single = model_b is None
    model_b = [""] * len(model_a) if single else list(model_b)
    a_nodes = [("a", m) for m in dict.fromkeys(model_a)]
    b_nodes = [] if single else [("b", m) for m in dict.fromkeys(model_b)]
    pair_edges = [] if single else [(("a", a), ("b", b)) for a, b in zip(model_a, model_b, strict=True)]
    links, draws = _draw_links(a_nodes + b_nodes)
    one_draw = tuple(f"{arm}'s one panel draw" for arm, n in draws.items()
                     if drawn is not None and arm in drawn and n == 1 and arm != "")
    design = dict(model_a=tuple(model_a), model_b=tuple(model_b))
    comp = _components(a_nodes + b_nodes, pair_edges + links)
    unit = tuple(comp[("a", a)] for a in model_a)
    factors = _factors(a_nodes + b_nodes, draws)
    if len(set(unit)) >= 2:
        return ContrastDesign(**design, unit=unit, conditional_on=one_draw, shared=_shared_side(model_a, model_b, unit)
                              if not single else None, factors=factors)
    for side, nodes, centre, leaves in (("b", b_nodes, model_b, model_a), ("a", a_nodes, model_a, model_b)):
        if single or len(nodes) != 1:
            continue
        # One model of this arm in every pair: the estimand is the comparison with that model, and the
        # other arm's models (joined by their draws) are the units.
        others = [n for n in (a_nodes if side == "b" else b_nodes)]
        tag = "a" if side == "b" else "b"
        sub = _components(others, [e for e in links if e[0][0] == tag])
        unit = tuple(sub[(tag, m)] for m in leaves)
        factors = _factors(others, draws)
        if len(set(unit)) >= 2:
            return ContrastDesign(**design, unit=unit, conditional_on=(centre[0],) + one_draw, shared=side,
                                  factors=factors)
    if not single:
        crossed = _crossed(model_a, model_b, pair_edges, a_nodes + b_nodes, links)
        if crossed is not None:
            columns, rows = crossed
            return ContrastDesign(**design, unit=columns, conditional_on=one_draw,
                                  shared=_shared_side(model_a, model_b, columns), rows=rows, factors=factors)
    everything = tuple(dict.fromkeys(model_a if single else model_a + model_b))
    return ContrastDesign(**design, unit=None, conditional_on=everything, shared=None)


def _crossed(model_a: list[str], model_b: list[str], pair_edges: list[tuple], nodes: list,
             links: list[tuple]) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Columns (models joined by pairs) × rows (one arm's panel draws), when they form a complete grid."""
    col = _components(nodes, pair_edges)
    row_of = _components(nodes, links)
    for side, models in (("a", model_a), ("b", model_b)):
        columns = [col[(side, m)] for m in models]
        rows = [row_of[(side, m)] for m in models]
        if len(set(columns)) < 2 or len(set(rows)) < 2:
            continue
        cells = list(zip(rows, columns, strict=True))
        if len(set(cells)) == len(cells) == len(set(rows)) * len(set(columns)):
            r_index = {r: i for i, r in enumerate(dict.fromkeys(rows))}
            c_index = {c: i for i, c in enumerate(dict.fromkeys(columns))}
            return tuple(c_index[c] for c in columns), tuple(r_index[r] for r in rows)
    return None


def pooled_estimates(Y: np.ndarray, design: ContrastDesign | None = None, null: float = 0.5,
                     level: float = 0.95, bounds: tuple[float, float] = (0.0, 1.0)) -> dict[str, np.ndarray]:
    """The pooled mean, its interval and variance components for each table of a stack.

    Args:
        Y: (N, J, G) clause mean scores, or one (J, G) table; pairs in `design` order.
        design: from `contrast_design`; default: every pair a distinct unit (runs of one arm).
        bounds: the range of the estimand (differences of shares: (−1, 1)); the interval is clipped to it.
    """
    Y = np.asarray(Y, float)
    Y = Y[None] if Y.ndim == 2 else Y
    N, J, G = Y.shape
    if design is None:
        design = ContrastDesign(tuple(map(str, range(J))), ("",) * J, tuple(range(J)) if J > 1 else None,
                                () if J > 1 else ("the one run",), None)
    nan = np.full(N, np.nan)
    out: dict[str, np.ndarray] = {"estimate": Y.mean((1, 2))}
    if G < 2:
        return {**out, **{k: nan for k in ("se", "ci_low", "ci_high", "df", "p_value", "var_from_models",
                                           "var_from_clusters", "var_from_residual", "cluster_sd", "residual_sd", "draw_sd",
                                           "model_sd_a", "model_sd_b", "model_pair_sd")},
                "uninformative": np.ones(N, bool)}
    grand = out["estimate"]
    row, col = Y.mean(2), Y.mean(1)
    ms_cl = J * ((col - grand[:, None]) ** 2).sum(1) / (G - 1)
    zero = np.zeros(N)
    if J < 2:
        var_mean, df = ms_cl / G, np.full(N, G - 1.0)
        comp = {"var_from_models": zero, "draw_sd": nan, "var_from_clusters": ms_cl / G, "var_from_residual": nan,
                "cluster_sd": nan, "residual_sd": nan, "model_sd_a": nan, "model_sd_b": nan, "model_pair_sd": nan}
    else:
        resid = Y - row[:, :, None] - col[:, None, :] + grand[:, None, None]
        ms_res = (resid**2).sum((1, 2)) / ((J - 1) * (G - 1))
        c_cl = (ms_cl > ms_res).astype(float)
        if design.unit is None:
            ms_top, c_top, df_top = zero, zero, 1.0  # no units' term
        else:
            unit = np.asarray(design.unit)
            K = int(unit.max()) + 1
            onehot = np.eye(K)[unit]  # (J, K)
            n = onehot.sum(0)
            z = row @ onehot / n  # unit means of pair means
            var_top = K / (K - 1) * (((n / J) ** 2) * (z - grand[:, None]) ** 2).sum(1)
            ms_top, df_top = var_top * J * G, float(K - 1)
            c_top = (ms_top > ms_res).astype(float)
        if design.unit is not None:
            # MS_units already contains the residual (E = G(n·var_β + var_α) + σ²_e): it is never
            # truncated; truncating it when it falls below MS_residual is what made intervals
            # under-cover (it swaps a (K−1)-df estimate for a many-df one exactly when it is small).
            c_top = np.ones(N)
        terms = [(c_top, ms_top, df_top), (c_cl, ms_cl, G - 1.0), (1 - c_top - c_cl, ms_res, (J - 1.0) * (G - 1))]
        var_mean = sum(c * m for c, m, _ in terms) / (J * G)
        v_draw, draw_df, draw_sd = zero, np.ones(N), nan
        if design.rows is not None:
            v_draw, draw_df, draw_sd = _crossed_draws(row, grand, design)
            var_mean = var_mean + v_draw
        denominator = sum((c * m) ** 2 / d for c, m, d in terms)
        with np.errstate(divide="ignore", invalid="ignore"):
            df = np.where(denominator > 0, (var_mean * J * G) ** 2 / denominator, G - 1.0)  # Satterthwaite
        if design.unit is not None:
            # With few units MS_units has K − 1 df (1 with two models of the shared arm) and the
            # Satterthwaite df grows exactly when MS_units happens to be small: capping at K − 1
            # keeps the coverage nominal (93–97% in the simulations of tests/test_pooling.py).
            df = np.full(N, df_top)
        comp = {"var_from_models": c_top * (ms_top - ms_res) / (J * G) + v_draw, "draw_sd": draw_sd,
                "var_from_clusters": c_cl * (ms_cl - ms_res) / (J * G), "var_from_residual": ms_res / (J * G),
                "cluster_sd": np.sqrt(np.maximum(0, (ms_cl - ms_res) / J)), "residual_sd": np.sqrt(ms_res),
                **_model_sds(design, row, ms_top, ms_res, G)}
    se = np.sqrt(np.maximum(var_mean, 0))
    se = np.where(se > 1e-12, se, 0.0)  # rounding noise of an exactly zero variance
    uninformative = ~(se > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = stdtrit(df, 0.5 + level / 2) * se
        p = 2 * stdtr(df, -np.abs(grand - null) / se)
        if J >= 2 and design.unit is not None:
            # Few units: MS_units has K − 1 df (1 with two models of the shared arm). Satterthwaite's
            # df grows exactly when MS_units happens to be small (it under-covers), and a t with
            # K − 1 df on the whole variance over-covers (~100%) once clauses add any variance. As
            # in the modified large-sample method for sums of variance components, each term gets
            # its own df's quantile: half-width² = t²(K−1)·MS_units/(JG) + t²(G−1)·(the clause term).
            clause_term = np.maximum(var_mean - ms_top / (J * G) - v_draw, 0)
            t_units, t_cl = stdtrit(df_top, 0.5 + level / 2), stdtrit(G - 1, 0.5 + level / 2)
            half2 = t_units**2 * ms_top / (J * G) + t_cl**2 * clause_term
            half = np.sqrt(half2)
            if design.rows is not None:
                # Crossed draws: three terms of comparable size, one of them with S − 1 df (1 with two
                # seeds of the undrawn arm). Summing quantile² × term over-covers (98–99%: a 1-df
                # quantile, 12.7, applied to a minor term); Welch–Satterthwaite's df on the sum covers
                # 93–97% in the simulations of tests/test_varcomp.py.
                with np.errstate(divide="ignore", invalid="ignore"):
                    df_cl = (ms_cl - ms_res) ** 2 / (ms_cl**2 / (G - 1) + ms_res**2 / ((J - 1) * (G - 1)))
                parts = ((ms_top / (J * G), df_top), (v_draw, draw_df), (clause_term, np.sqrt(np.where(c_cl > 0, df_cl, 1.0) * (G - 1))))
                total = sum(v for v, _ in parts)
                with np.errstate(divide="ignore", invalid="ignore"):
                    nu = total**2 / sum(v**2 / d for v, d in parts)
                half = stdtrit(np.where(np.isfinite(nu), nu, df_top), 0.5 + level / 2) * np.sqrt(total)
            df = _effective_df(half / np.where(se > 0, se, np.nan), level)
            p = 2 * stdtr(df, -np.abs(grand - null) / se)
    # Clause mean scores lie in `bounds`: clipping to that range never loses coverage.
    low, high = np.clip(grand - half, *bounds), np.clip(grand + half, *bounds)
    ci_low, ci_high = np.where(uninformative, np.nan, low), np.where(uninformative, np.nan, high)
    return {**out, "se": np.where(uninformative, np.nan, se), "ci_low": ci_low, "ci_high": ci_high, "df": df,
            "p_value": np.where(uninformative, np.nan, p), **comp, "uninformative": uninformative}


def _crossed_draws(row: np.ndarray, grand: np.ndarray, design: ContrastDesign) -> tuple[np.ndarray, ...]:
    """Variance of the mean from draws crossed with the units, its df, and the draw SD (pair-mean scale).

    Pair means y_rs of an R draws × S columns grid: E[MS_draws] = S·σ²_draw + σ²_rest and
    E[MS_interaction] = σ²_rest, so (MS_draws − MS_interaction)/(R·S) estimates σ²_draw/R, the part
    of the variance that the columns' means share (truncated at 0).
    """
    rows, cols = np.asarray(design.rows), np.asarray(design.unit)
    R, S = int(rows.max()) + 1, int(cols.max()) + 1
    grid = np.empty((row.shape[0], R, S))
    grid[:, rows, cols] = row
    r_mean, c_mean = grid.mean(2), grid.mean(1)
    ms_r = S * ((r_mean - grand[:, None]) ** 2).sum(1) / (R - 1)
    inter = grid - r_mean[:, :, None] - c_mean[:, None, :] + grand[:, None, None]
    ms_rs = (inter**2).sum((1, 2)) / ((R - 1) * (S - 1))
    # Discrete scores can make the two mean squares equal; rounding alone must not decide whether the
    # draws' term enters (with it comes its Satterthwaite df, which does not shrink with the term).
    excess = ms_r - ms_rs
    excess = np.where(excess > 1e-12 * ms_r, excess, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):  # Satterthwaite's df of a difference of mean squares
        df = excess**2 / (ms_r**2 / (R - 1) + ms_rs**2 / ((R - 1) * (S - 1)))
    return excess / (R * S), np.where(excess > 0, df, R - 1.0), np.sqrt(excess / S)


@lru_cache(maxsize=8)
def _t_quantile_grid(level: float) -> tuple[np.ndarray, np.ndarray]:
    """t quantiles on a log-spaced df grid (decreasing in df), for inverting quantile → df quickly."""
    df = np.geomspace(0.05, 1e6, 2000)
    return df, stdtrit(df, 0.5 + level / 2)


def _effective_df(ratio: np.ndarray, level: float) -> np.ndarray:
    """The df whose t quantile is `ratio` (half-width / se): p < 1 − level ⇔ the interval excludes the null."""
    df, q = _t_quantile_grid(level)
    ratio = np.asarray(ratio, float)
    # interpolate log df against the quantile (np.interp needs increasing x: reverse the grid)
    out = np.exp(np.interp(ratio, q[::-1], np.log(df)[::-1]))
    return np.where(np.isfinite(ratio), out, np.nan)


def _model_sds(design: ContrastDesign, row: np.ndarray, ms_top: np.ndarray, ms_res: np.ndarray,
               G: int) -> dict[str, np.ndarray]:
    """SD of the win rate across trained models of arm A and of arm B, where the design separates them.

    `model_pair_sd` is the SD of a pair's true win rate across independent pairs of trained models
    (sqrt(var_α + var_β)); each is NaN where the design cannot estimate it.
    """
    N, J = row.shape
    nan = np.full(N, np.nan)
    out = {"model_sd_a": nan, "model_sd_b": nan, "model_pair_sd": nan}
    leaf = "model_sd_a" if design.shared == "b" else "model_sd_b"
    centre = "model_sd_b" if design.shared == "b" else "model_sd_a"
    if design.unit is None:
        return out
    if design.conditional_on:  # one shared model: the pairs' spread is the other arm's models
        out[leaf] = np.sqrt(np.maximum(0, (ms_top - ms_res) / G))
        return out
    unit = np.asarray(design.unit)
    K = int(unit.max()) + 1
    if K == J:  # matched pairs: each model once, the two arms' variances are not separable
        out["model_pair_sd"] = np.sqrt(np.maximum(0, (ms_top - ms_res) / G))
        return out
    n = np.bincount(unit)
    if design.shared is None and len(set(n)) == 1 and set(design.model_b) == {""}:
        # one arm's runs grouped by draw: the SD of a unit's true value (a draw's mean over its seeds)
        out["model_pair_sd"] = np.sqrt(np.maximum(0, (ms_top - ms_res) / (G * n[0])))
        return out
    if design.shared is None or len(set(n)) != 1:
        return out
    onehot = np.eye(K)[unit]
    z = row @ onehot / n
    ms_within = G * ((row - z[:, unit]) ** 2).sum(1) / (J - K)
    var_leaf = np.maximum(0, (ms_within - ms_res) / G)
    var_centre = np.maximum(0, (ms_top - ms_within) / (G * n[0]))
    out[leaf], out[centre] = np.sqrt(var_leaf), np.sqrt(var_centre)
    out["model_pair_sd"] = np.sqrt(var_leaf + var_centre)
    return out


def pooled_contrast(Y: np.ndarray, design: ContrastDesign | None = None, null: float = 0.5,
                    level: float = 0.95, bounds: tuple[float, float] = (0.0, 1.0)) -> dict[str, object]:
    """`pooled_estimates` for one (J, G) table, as plain Python values plus the design's labels."""
    est = pooled_estimates(Y, design, null, level, bounds)
    out: dict[str, object] = {k: (bool(v[0]) if v.dtype == bool else float(v[0])) for k, v in est.items()}
    J, G = np.shape(Y)
    out.update({"runs": J, "clusters": G})
    if design is not None:
        out.update({"models_a": len(set(design.model_a)), "models_b": len(set(design.model_b)),
                    "units": design.units, "estimand": design.estimand, "conditional_on": list(design.conditional_on),
                    "scope": design.scope, "factors": list(design.factors), "crossed_draws": design.rows is not None})
    return out
