"""The LP relaxation of the quota polytope: LEXIMIN upper bounds, and its decomposition into panels."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import highspy
import numpy as np
from scipy.optimize import linprog

from dlm.sortition.feasibility import Types
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


@dataclass
class DecompositionStats:
    """Where a decomposition's panels came from, and the probability mass it left undecomposed."""

    panels: int = 0
    from_known: int = 0  # a panel already found that lies on the face
    repaired: int = 0  # a local-move repair of the last panel
    ilps: int = 0  # the panel ILP
    mass_left: float = 1.0


class FacePanels:
    """One HiGHS panel model reused for every step of a decomposition: new bounds and weights, same model.

    It stops at the first panel that meets the bounds (any panel on the face is a valid step, so
    proving optimality is wasted work) and runs without presolve (the model is small and
    re-solved hundreds of times; presolve cost more than it saved on the benchmark).
    """

    def __init__(self, pool: Pool, types: Types, integer: bool = True) -> None:
        T = len(types.sizes)
        self.T, self.n = T, types.sizes.astype(float)
        self.idx = np.arange(T, dtype=np.int32)
        h = quiet_highs()
        h.setOptionValue("presolve", "off")
        h.addVars(T, np.zeros(T), self.n)
        if integer:
            h.setOptionValue("mip_max_improving_sols", 1)
            h.changeColsIntegrality(T, self.idx, np.full(T, highspy.HighsVarType.kInteger))
        h.addRow(pool.k, pool.k, T, self.idx, np.ones(T))
        for row in types.membership.T:
            cols = np.flatnonzero(row).astype(np.int32)
            h.addRow(0.0, float(pool.k), len(cols), cols, np.ones(len(cols)))
        h.changeObjectiveSense(highspy.ObjSense.kMaximize)
        self.h, self.rows = h, np.arange(1, 1 + types.membership.shape[1], dtype=np.int32)

    def find(self, weights: np.ndarray, lo: np.ndarray, hi: np.ndarray, var_lo: np.ndarray, var_hi: np.ndarray,
             time_limit: float) -> np.ndarray | None:
        """A panel (type counts) within the bounds, favouring large weights; None when none is found in time."""
        got = self.solve(weights, lo, hi, var_lo, var_hi, time_limit)
        return None if got is None else np.rint(got).astype(np.int64)

    def solve(self, weights: np.ndarray, lo: np.ndarray, hi: np.ndarray, var_lo: np.ndarray, var_hi: np.ndarray,
              time_limit: float) -> np.ndarray | None:
        """The model's solution (type counts; fractional for the LP model) within the bounds; None if none in time."""
        h = self.h
        h.setOptionValue("time_limit", max(float(time_limit), 0.0))
        h.changeColsCost(self.T, self.idx, np.asarray(weights, dtype=float))
        h.changeColsBounds(self.T, self.idx, np.asarray(var_lo, dtype=float), np.asarray(var_hi, dtype=float))
        h.changeRowsBounds(len(self.rows), self.rows, np.asarray(lo, dtype=float), np.asarray(hi, dtype=float))
        h.run()
        if h.getInfo().primal_solution_status != 2:  # kSolutionStatusFeasible
            return None
        return np.array(h.getSolution().col_value)


class _Found:
    """The panels known to a decomposition, with their category counts computed once."""

    def __init__(self, member: np.ndarray) -> None:
        self.member = member
        self.panels: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []
        self._stack: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, panel: np.ndarray) -> None:
        self.panels.append(panel)
        self.counts.append(self.member @ panel)
        self._stack = None

    def on_face(self, share: np.ndarray, at0: np.ndarray, atn: np.ndarray, n: np.ndarray, qlo: np.ndarray,
                qhi: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
        """The known panel on the face (every bound tight at the point tight for it too) richest where `share` is."""
        if not self.panels:
            return None
        if self._stack is None:
            self._stack = (np.array(self.panels), np.array(self.counts))
        known, C = self._stack
        ok = (known[:, at0] == 0).all(1) & (known[:, atn] == n[atn]).all(1)
        fits = np.flatnonzero(ok & ((C >= qlo) & (C <= qhi)).all(1) & ((C >= lo) & (C <= hi)).all(1))
        return known[fits[np.argmax(known[fits] @ share)]] if len(fits) else None


def type_categories(member: np.ndarray) -> np.ndarray:
    """(T, attributes): the categories each type belongs to (one per attribute), from the (C, T) membership."""
    return np.array([np.flatnonzero(col) for col in member.T])


def round_point(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Randomised rounding: each count rounded up with probability its fractional part (the mean stays v)."""
    return np.floor(v + rng.random(len(v))).astype(np.int64)


def rounded_panel(vertex: "FacePanels", pool: Pool, member: np.ndarray, cats: np.ndarray, weights: np.ndarray,
                  rng: np.random.Generator, tries: int = 4) -> np.ndarray | None:
    """A panel near the LP optimum for `weights` (its vertex rounded at random, then repaired); None if none results.

    A heuristic: cheap next to the ILP, and every panel it returns meets the quotas (repair_panel checks).
    """
    lo, hi = pool.bounds
    n = vertex.n
    v = vertex.solve(weights, lo, hi, np.zeros_like(n), n, np.inf)
    if v is None:
        return None
    for _ in range(tries):
        got = repair_panel(round_point(v, rng), member, n, pool.k, lo, hi, np.zeros_like(n), n, weights, cats=cats)
        if got is not None:
            return got
    return None


def repair_panel(c: np.ndarray, member: np.ndarray, n: np.ndarray, k: int, qlo: np.ndarray, qhi: np.ndarray,
                 var_lo: np.ndarray, var_hi: np.ndarray, prefer: np.ndarray, max_moves: int = 12,
                 cats: np.ndarray | None = None) -> np.ndarray | None:
    """A panel within the bounds made from `c` by greedy local moves on type counts; None if they get stuck.

    Types outside their bounds are set to them first; then one person at a time is added, removed
    or swapped (removed from one type, added to another), whichever leaves the quota rows least
    violated, ties going to types with larger `prefer`. A cheap heuristic before the ILP: a panel
    it returns meets every bound (checked before returning). `cats` (each type's categories, from
    `type_categories`) saves recomputing them on every call.
    """
    c = np.clip(c, var_lo, var_hi).astype(np.int64)
    cats = type_categories(member) if cats is None else cats

    def cost(C: np.ndarray) -> np.ndarray:
        return (np.maximum(qlo - C, 0) + np.maximum(C - qhi, 0)).astype(float)

    for _ in range(max_moves):
        C = member @ c
        total = int(c.sum())
        base = cost(C)
        if total == k and base.sum() == 0:
            return c
        can_add, can_drop = c < var_hi, c > var_lo
        if total != k:
            sign = 1 if total < k else -1
            delta = (cost(C + sign) - base)[cats].sum(1) - 1e-6 * sign * prefer
            delta[~(can_add if sign > 0 else can_drop)] = np.inf
            u = int(np.argmin(delta))
            if not np.isfinite(delta[u]):
                return None
            c[u] += sign
            continue
        drop = np.flatnonzero(can_drop)
        if not len(drop) or not can_add.any():
            return None
        after = C[None, :] - member[:, drop].T  # (drop, C)
        gain = cost(after + 1) - cost(after)  # (drop, C): what adding one person to each category costs
        viol = cost(after).sum(1)[:, None] + gain[:, cats].sum(2) - 1e-6 * prefer[None, :]
        viol[:, ~can_add] = np.inf
        viol[np.arange(len(drop)), drop] = np.inf
        i, j = np.unravel_index(int(np.argmin(viol)), viol.shape)
        if viol[i, j] >= base.sum():
            return None  # no swap improves: stuck
        c[drop[i]] -= 1
        c[j] += 1
    C = member @ c
    return c if int(c.sum()) == k and (C >= qlo).all() and (C <= qhi).all() else None


def _step(x: np.ndarray, X: np.ndarray, c: np.ndarray, C: np.ndarray, n: np.ndarray, lo: np.ndarray,
          hi: np.ndarray) -> float:
    """The largest λ with (x - λc)/(1 - λ) still in the relaxation (X, C: the category counts of x and c)."""
    steps = [1.0]
    steps += list(x[c > 0] / c[c > 0])
    steps += list((n - x)[c < n] / (n - c)[c < n])
    steps += list((hi - X)[C < hi] / (hi - C)[C < hi])
    steps += list((X - lo)[C > lo] / (C - lo)[C > lo])
    return max(min(steps), 0.0)


def decompose_relaxation(pool: Pool, types: Types, fixed: np.ndarray, z: float, deadline: float,
                          tol: float = 1e-7, seed: int = 0, bar: Any = None, stop_mass: float = 1e-12,
                          known: list[np.ndarray] | None = None, min_step: float = 0.005,
                          repair_from: int = 1, stats: DecompositionStats | None = None,
                          rounding_tries: int = 3) -> list[np.ndarray]:
    """Panels whose mixture gives every unfixed type at least z (fixed ones their value), if one is found.

    Carathéodory-style: from a central point x of {relaxation, x_t >= p_t·n_t}, repeatedly find an
    integer panel on the smallest face of the relaxation holding x (types at 0 or n_t, quotas at
    their bound stay so), subtract the largest multiple of it that keeps the rest in the
    relaxation, and rescale. Each step makes one more constraint tight. When the point lies in the
    integer hull this ends with the whole mass decomposed; otherwise a step finds no panel and the
    panels so far are still useful columns. It stops once the mass left is below `stop_mass`:
    dropping it lowers no type's probability by more than that mass. Panels in `known` (and
    those found earlier in this call) are tried first, then repairs by local moves of the last
    panel and of `rounding_tries` random roundings of the face LP's vertex (the best kept when it
    takes out at least `min_step` of the mass); the ILP runs only when these fail. `stats`, when
    given, is filled in.
    """
    n = types.sizes.astype(float)
    if deadline <= time.monotonic():
        return []
    x = _central_point(pool, types, np.where(np.isnan(fixed), z, fixed) * n, type_caps(types, fixed), deadline)
    if x is None:
        return []
    lo, hi = pool.bounds
    member = types.membership.T
    cats = type_categories(member)
    rng = np.random.default_rng(seed)
    finder, vertex = FacePanels(pool, types), FacePanels(pool, types, integer=False)
    found = _Found(member)
    for p in known or []:
        found.add(np.asarray(p, dtype=np.int64))
    stats = DecompositionStats() if stats is None else stats
    panels, mass = [], 1.0
    while mass > stop_mass and time.monotonic() < deadline:
        X = member @ x
        at0, atn = x <= tol, x >= n - tol
        qlo, qhi = np.where(X >= hi - tol, hi, lo), np.where(X <= lo + tol, lo, hi)
        var_lo, var_hi = np.where(atn, n, 0.0), np.where(at0, 0.0, n)
        c = found.on_face(x / n, at0, atn, n, qlo, qhi, lo, hi)
        if c is not None:
            stats.from_known += 1
        # Prefer types with most expected count left, so that no type runs dry early.
        weights = x / n + 0.01 * rng.random(len(n))
        if c is None:
            # Cheap panels first: the last panel moved back onto the new face (it usually misses it by
            # one bound), and the face LP's vertex rounded at random (few counts are fractional) and
            # repaired; the best is kept when it takes out at least `min_step` of the mass left.
            starts = list(found.panels[-repair_from:])
            v = vertex.solve(weights, qlo, qhi, var_lo, var_hi, deadline - time.monotonic())
            if v is not None:
                starts += [round_point(v, rng) for _ in range(rounding_tries)]
            best = 0.0
            for start in starts:
                fixed_up = repair_panel(start, member, n, pool.k, qlo, qhi, var_lo, var_hi, x / n, cats=cats)
                step = 0.0 if fixed_up is None else _step(x, X, fixed_up.astype(float), member @ fixed_up, n, lo, hi)
                if step > best:
                    c, best = fixed_up, step
            if best < min_step:
                c = None  # a panel that takes out almost nothing only adds a step: ask the ILP instead
            if c is not None:
                found.add(c)
                stats.repaired += 1
        if c is None:
            c = finder.find(weights, qlo, qhi, var_lo, var_hi, deadline - time.monotonic())
            stats.ilps += 1
            if c is None:
                break
            found.add(c)
        cf = c.astype(float)
        lam = _step(x, X, cf, member @ cf, n, lo, hi)
        if lam <= 0:
            break  # numerically off the face: no progress possible from here
        panels.append(c)
        if bar is not None:
            bar.update(1)
        if lam >= 1 - 1e-12:
            mass = 0.0
            break
        x = np.clip((x - lam * cf) / (1 - lam), 0, n)
        mass *= 1 - lam
    stats.panels, stats.mass_left = len(panels), mass
    return panels

