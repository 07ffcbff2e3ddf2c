"""The LP relaxation of the quota polytope: LEXIMIN upper bounds, and its decomposition into panels."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from scipy.optimize import linprog

from dlm.sortition.feasibility import Types, best_panel
from dlm.sortition.highs import quiet_highs
from dlm.sortition.pool import Pool


def relaxation_bound(pool: Pool, types: Types, fixed: np.ndarray, relax: float = 0.0,
                     time_limit: float | None = None) -> tuple[float, np.ndarray]:
    """Upper bound on a level from the LP relaxation of the quota polytope, and its duals per type.

    max z  s.t.  lo <= M'x <= hi, Σx = k, 0 <= x <= n, x_t >= z·n_t (unfixed), x_t >= p_t·n_t (fixed),
    where x are expected type counts. conv(feasible panels) lies inside this polytope, so z is an
    upper bound on the level's value.
    Types fixed at 0 (in no feasible panel) are held at 0. When the LP is infeasible, the fixed
    p_t sit a hair above what it can give (earlier levels hold only to the solver's tolerance):
    they are lowered by `relax`, from 1e-10 up to 1e-8; still infeasible, or stopped by
    `time_limit` before optimality, gives an infinite bound (no proof).
    """
    T = len(types.sizes)
    n = types.sizes.astype(float)
    lo, hi = pool.bounds
    is_fixed = ~np.isnan(fixed)
    member = types.membership.T  # (C, T)
    quota_rows = np.vstack([np.hstack([member, np.zeros((len(lo), 1))]), np.hstack([-member, np.zeros((len(lo), 1))])])
    level_rows = np.hstack([-np.eye(T), np.where(is_fixed, 0.0, n)[:, None]])
    res = linprog(np.r_[np.zeros(T), -1.0], A_ub=np.vstack([quota_rows, level_rows]),
                  b_ub=np.r_[hi, -lo, np.where(is_fixed, -np.maximum(np.nan_to_num(fixed) - relax, 0.0) * n, 0.0)],
                  A_eq=np.r_[np.ones(T), 0.0][None, :], b_eq=[pool.k],
                  bounds=[(0, s) for s in type_caps(types, fixed)] + [(0, None)],
                  method="highs", options={} if time_limit is None else {"time_limit": max(time_limit, 0.0)})
    if res.status == 2 and relax < 1e-8:
        return relaxation_bound(pool, types, fixed, max(10 * relax, 1e-10), time_limit)
    if res.status != 0:
        return np.inf, np.zeros(T)
    duals = -res.ineqlin.marginals[-T:]
    return float(-res.fun), np.where(is_fixed, 0.0, np.clip(duals, 0, None))


def type_caps(types: Types, fixed: np.ndarray) -> np.ndarray:
    """Upper bound on each type's expected count: its size, or 0 for types that fit no feasible panel."""
    return np.where(fixed == 0, 0.0, types.sizes.astype(float))


def _central_point(pool: Pool, types: Types, floor: np.ndarray, cap: np.ndarray, deadline: float) -> np.ndarray | None:
    """Expected type counts x in the relaxation with floor_t <= x_t <= cap_t, as central as an interior point gives."""
    T = len(types.sizes)
    lo, hi = pool.bounds
    h = quiet_highs()
    h.setOptionValue("solver", "ipm")
    h.setOptionValue("run_crossover", "off")  # a vertex would sit on as many bounds as it can
    h.setOptionValue("time_limit", max(deadline - time.monotonic(), 0.0))
    h.addVars(T, np.minimum(floor, cap), cap)
    h.addRow(pool.k, pool.k, T, np.arange(T, dtype=np.int32), np.ones(T))
    for c, row in enumerate(types.membership.T):
        idx = np.flatnonzero(row).astype(np.int32)
        h.addRow(float(lo[c]), float(hi[c]), len(idx), idx, np.ones(len(idx)))
    h.run()
    if h.modelStatusToString(h.getModelStatus()) != "Optimal":
        return None
    return np.clip(np.array(h.getSolution().col_value), 0, cap)


def decompose_relaxation(pool: Pool, types: Types, fixed: np.ndarray, z: float, deadline: float,
                          tol: float = 1e-7, seed: int = 0, bar: Any = None) -> list[np.ndarray]:
    """Panels whose mixture gives every unfixed type at least z (fixed ones their value), if one is found.

    Carathéodory-style: from a central point x of {relaxation, x_t >= p_t·n_t}, repeatedly find an
    integer panel on the smallest face of the relaxation holding x (types at 0 or n_t, quotas at
    their bound stay so), subtract the largest multiple of it that keeps the rest in the
    relaxation, and rescale. Each step makes one more constraint tight. When the point lies in the
    integer hull this ends with the whole mass decomposed; otherwise a step finds no panel and the
    panels so far are still useful columns.
    """
    n = types.sizes.astype(float)
    if deadline <= time.monotonic():
        return []
    x = _central_point(pool, types, np.where(np.isnan(fixed), z, fixed) * n, type_caps(types, fixed), deadline)
    if x is None:
        return []
    lo, hi = pool.bounds
    member = types.membership.T
    rng = np.random.default_rng(seed)
    panels, mass = [], 1.0
    while mass > 1e-12 and time.monotonic() < deadline:
        X = member @ x
        at0, atn = x <= tol, x >= n - tol
        qlo, qhi = np.where(X >= hi - tol, hi, lo), np.where(X <= lo + tol, lo, hi)
        # Prefer types with most expected count left, so that no type runs dry early.
        # Any panel found will do here (it is a column, not a proof), so an early stop is fine.
        got = best_panel(pool, types, x / n + 0.01 * rng.random(len(n)), time_limit=deadline - time.monotonic(),
                         lo=qlo, hi=qhi, var_lo=np.where(atn, n, 0.0), var_hi=np.where(at0, 0.0, n), gap=0.5)
        if got is None or got.counts is None:
            break
        c = got.counts.astype(float)
        C = member @ c
        steps = [1.0]
        steps += list(x[c > 0] / c[c > 0])
        steps += list((n - x)[c < n] / (n - c)[c < n])
        steps += list((hi - X)[C < hi] / (hi - C)[C < hi])
        steps += list((X - lo)[C > lo] / (C - lo)[C > lo])
        lam = max(min(steps), 0.0)
        panels.append(got.counts)
        if bar is not None:
            bar.update(1)
        if lam >= 1 - 1e-12:
            break
        x = np.clip((x - lam * c) / (1 - lam), 0, n)
        mass *= 1 - lam
    return panels

