"""LEXIMIN (Flanigan et al., Nature 2021) on HiGHS, certified level by level with proven bounds.

First route: the LEXIMIN of the quota polytope's LP relaxation (one cheap LP per level; an upper
bound on every level) decomposed into panels; when the decomposition reaches every level, each is
certified by its relaxation bound. Otherwise column generation level by level: a dual LP over
known panels and a pricing ILP for the panel with the largest dual weight. A level is certified
only by a proven bound: the relaxation's, or the pricing ILP's proven dual bound (valid whether
or not the ILP finished), never by a panel the ILP merely found. People with identical quota
values are interchangeable, so the problem is solved over *types*.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import linprog

from dlm.errors import DLMError
from dlm.io import Progress, progress_bar
from dlm.sortition.feasibility import Types, best_panel, pool_types
from dlm.sortition.legacy import legacy_panels
from dlm.sortition.pool import Pool
from dlm.sortition.relaxation import (DecompositionStats, FacePanels, decompose_relaxation, relaxation_bound,
                                      rounded_panel, type_categories)
from dlm.sortition.results import LeximinLevel, LeximinNotConverged


@dataclass
class Leximin:
    """The LEXIMIN distribution over panels (as type counts) and its certificate."""

    panels: np.ndarray  # (m, T) type counts
    weights: np.ndarray  # (m,) probability of each panel
    types: Types
    levels: list[LeximinLevel]
    primal_slack: float
    method: str = "column_generation"  # or "relaxation" (see _leximin_by_relaxation)
    seconds: dict[str, float] = field(default_factory=dict)  # where the time went
    decomposition: DecompositionStats | None = None  # the relaxation route's panel sources

    def probabilities(self) -> np.ndarray:
        """Exact selection probability of each person."""
        per_type = (self.weights @ self.panels) / self.types.sizes
        return per_type[self.types.index]

    def draw(self, seed: int) -> np.ndarray:
        """One panel (person indices): a panel from the distribution, then uniform members per type."""
        rng = np.random.default_rng(seed)
        j = rng.choice(len(self.weights), p=self.weights / self.weights.sum())
        chosen = []
        for t in np.flatnonzero(self.panels[j]):
            members = np.flatnonzero(self.types.index == t)
            chosen += list(rng.choice(members, self.panels[j, t], replace=False))
        return np.sort(np.array(chosen, dtype=np.int64))


def leximin(pool: Pool, time_limit: float = 600.0, gap_tol: float = 1e-6, fix_tol: float = 1e-7,
            levels_limit: int | None = None, warm_start_panels: int = 0, smoothing: float = 0.8,
            seed: int = 0, progress: Progress = False, method: str = "auto", reuse: Leximin | None = None) -> Leximin:
    """Certified LEXIMIN selection probabilities over types: the relaxation route, else column generation.

    Args:
        pool: the pool and its quotas.
        time_limit: seconds for the whole computation; every solver call gets only the time left,
            and a level still open then raises LeximinNotConverged (with its value and bound).
        gap_tol: a level is certified when a proven upper bound exceeds its value by at most this.
        fix_tol: dual weight above which a type is fixed at the level's value.
        levels_limit: stop after this many levels (level 1 is the maximin optimum); unfixed types
            then get what the final distribution gives them, and `levels` says how many were done.
        warm_start_panels: LEGACY panels used as initial columns (cheap and diverse).
        smoothing: Wentges dual smoothing weight (0 = plain column generation); pricing at a
            point between the best-bound duals and the master's duals damps dual oscillation.
        seed: seed of the warm-start panels (the result does not depend on it beyond 1e-6).
        method: "auto" first tries the relaxation route (the relaxation's LEXIMIN decomposed into
            panels, certified when the decomposition reaches every level) and falls back to column
            generation level by level; "column_generation" goes straight there. With
            levels_limit, column generation is used.
        reuse: an earlier result on the same people (e.g. before a quota change): its panels that
            meet these quotas are starting columns and are tried before the ILP in the
            decomposition. They only save work; the levels are certified as without them.

    Without `reuse`, the last 8 certified results are kept by content (types, quotas, settings):
    asking again for the same pool (`dlm design`, once per arm) returns the earlier result.
    """
    if method not in ("auto", "column_generation"):
        raise DLMError(f"unknown LEXIMIN method '{method}'; use auto or column_generation")
    start = time.monotonic()
    deadline = start + time_limit
    types = pool_types(pool)
    # A certified result depends only on the types, the quotas and these settings: `dlm design` asks for
    # the same pool once per arm, and the tuner returns to earlier quotas.
    key = (types.sizes.tobytes(), types.membership.tobytes(), pool.bounds[0].tobytes(), pool.bounds[1].tobytes(),
           pool.k, gap_tol, fix_tol, levels_limit, warm_start_panels, smoothing, seed, method)
    if reuse is None and key in _CERTIFIED:
        return replace(_CERTIFIED[key], types=types)  # same types in the same order; this pool's people
    result = _leximin(pool, types, start, deadline, time_limit, gap_tol, fix_tol, levels_limit, warm_start_panels,
                      smoothing, seed, progress, method, reuse)
    if reuse is None:
        _CERTIFIED[key] = result
    while len(_CERTIFIED) > 8:
        _CERTIFIED.pop(next(iter(_CERTIFIED)))
    return result


_CERTIFIED: dict[tuple, Leximin] = {}  # the last few certified results, by content (see leximin)


def _leximin(pool: Pool, types: Types, start: float, deadline: float, time_limit: float, gap_tol: float,
             fix_tol: float, levels_limit: int | None, warm_start_panels: int, smoothing: float, seed: int,
             progress: Progress, method: str, reuse: Leximin | None) -> Leximin:
    """`leximin` without the memo."""
    T = len(types.sizes)
    panels = _initial_panels(pool, types, deadline, warm_start_panels, seed)
    if reuse is not None:
        _add_new_panels(panels, reusable_panels(reuse, pool, types))
    fixed = np.full(T, np.nan)
    fixed[~_selectable(panels, T)] = 0.0  # types in no feasible panel have probability 0
    levels: list[LeximinLevel] = []
    bar = progress_bar(T, "LEXIMIN types fixed", progress)
    bar.update(int((fixed == 0).sum()))
    if method == "auto" and levels_limit is None:
        fast = _leximin_by_relaxation(pool, types, panels, fixed, gap_tol, fix_tol, deadline, progress,
                                      reused=reuse is not None)
        if fast is not None:
            bar.update(int(np.isnan(fixed).sum()))
            bar.close()
            return fast
    while np.isnan(fixed).any() and (levels_limit is None or len(levels) < levels_limit):
        try:
            level, duals = _solve_level(pool, types, panels, fixed, gap_tol, smoothing, deadline, time_limit,
                                        len(levels) + 1)
        except LeximinNotConverged as exc:
            exc.levels = levels  # the certified levels so far, for reports
            raise
        newly = _level_members(fixed, duals, level.value, fix_tol, gap_tol)
        fixed[newly] = max(level.value, 0.0)
        level.types_fixed, level.people_fixed = int(newly.sum()), int(types.sizes[newly].sum())
        level.panels_known = len(panels)
        levels.append(level)
        bar.update(int(newly.sum()))
    bar.close()
    weights, slack = _final_primal(panels, types, fixed, deadline)
    return Leximin(np.array(panels), weights, types, levels, slack, seconds={"total": time.monotonic() - start})


def _leximin_by_relaxation(pool: Pool, types: Types, panels: list[np.ndarray], fixed: np.ndarray, gap_tol: float,
                           fix_tol: float, deadline: float, progress: Progress = False,
                           reused: bool = False) -> Leximin | None:
    """LEXIMIN in one decomposition when the relaxation's LEXIMIN point is a mixture of panels; else None.

    The LP relaxation of the quota polytope contains every mixture of panels, so its LEXIMIN
    (a sequence of cheap LPs) bounds every level from above. If a Carathéodory decomposition of
    its final point into panels succeeds, the panels' mixture reaches every level's bound within
    `gap_tol` and each level is certified by its relaxation bound. Otherwise the caller falls
    back to column generation, with the panels found here appended to `panels` as columns.
    """
    start, fixed = time.monotonic(), fixed.copy()
    found = _relaxation_levels(pool, types, fixed, fix_tol, deadline)
    if found is None:
        return None
    lp_seconds = time.monotonic() - start
    stats = DecompositionStats()
    if reused:
        # Reused panels may reach every level already (same quotas, or a change that leaves LEXIMIN as it
        # was): one LP then certifies everything, and no panel needs to be found.
        weights, slack, levels = _certify_by_relaxation(panels, types, fixed, found, deadline)
        if max(level.gap for level in levels) <= gap_tol:
            stats.mass_left = 0.0
            return Leximin(np.array(panels), weights, types, levels, slack, method="relaxation",
                           decomposition=stats, seconds={"relaxation_levels": lp_seconds, "decomposition": 0.0,
                                                         "total": time.monotonic() - start})
    # The floors sit a hair below the levels: the LP's solution meets them only to its tolerance.
    floors = np.where(fixed > 0, fixed - 1e-9, fixed)
    bar = progress_bar(None, "LEXIMIN panels decomposed", progress)  # the long step on large pools
    # Mass below gap_tol / 10 left undecomposed lowers no type's probability by more than that: the
    # levels are still certified within gap_tol (checked below against the final LP's mixture).
    _add_new_panels(panels, decompose_relaxation(pool, types, floors, 0.0, deadline, bar=bar,
                                                 stop_mass=gap_tol / 10, known=panels, stats=stats))
    weights, slack, levels = _certify_by_relaxation(panels, types, fixed, found, deadline)
    if max(level.gap for level in levels) > gap_tol and time.monotonic() < deadline:
        # The walk is greedy: panels taken from the known ones or the heuristics can lead it off the
        # integer hull. Once more with ILP-led steps from another start, before column generation.
        retry = DecompositionStats()
        _add_new_panels(panels, decompose_relaxation(pool, types, floors, 0.0, deadline, bar=bar, seed=1,
                                                     stop_mass=gap_tol / 10, rounding_tries=0, stats=retry))
        stats = DecompositionStats(stats.panels + retry.panels, stats.from_known + retry.from_known,
                                   stats.repaired + retry.repaired, stats.ilps + retry.ilps, retry.mass_left)
        weights, slack, levels = _certify_by_relaxation(panels, types, fixed, found, deadline)
    bar.close()
    if max(level.gap for level in levels) > gap_tol:
        return None
    return Leximin(np.array(panels), weights, types, levels, slack, method="relaxation", decomposition=stats,
                   seconds={"relaxation_levels": lp_seconds, "decomposition": time.monotonic() - start - lp_seconds,
                            "total": time.monotonic() - start})


def reusable_panels(earlier: Leximin, pool: Pool, types: Types) -> list[np.ndarray]:
    """The panels of an earlier result that are panels here too: same people types, these quotas and size."""
    same = (np.array_equal(earlier.types.sizes, types.sizes) and
            np.array_equal(earlier.types.membership, types.membership))
    if not same or not len(earlier.panels):
        return []
    lo, hi = pool.bounds
    counts = earlier.panels @ types.membership
    ok = (earlier.panels.sum(1) == pool.k) & ((counts >= lo) & (counts <= hi)).all(1)
    order = np.argsort(-earlier.weights[ok], kind="stable")  # the heaviest panels first
    return list(earlier.panels[ok][order])


def _certify_by_relaxation(panels: list[np.ndarray], types: Types, fixed: np.ndarray,
                           found: list[tuple[float, np.ndarray, float]],
                           deadline: float | None = None) -> tuple[np.ndarray, float, list[LeximinLevel]]:
    """The panels' best mixture (final LP) and each relaxation level's value under it against its bound."""
    weights, slack = _final_primal(panels, types, fixed, deadline)
    per_type = (weights @ np.array(panels, dtype=float)) / types.sizes
    levels = []
    for number, (bound, members, seconds) in enumerate(found, start=1):
        value = float(per_type[members].min())
        levels.append(LeximinLevel(number, value, bound, max(bound - value, 0.0), "lp_relaxation", 1, seconds,
                                   int(members.sum()), int(types.sizes[members].sum()), len(panels)))
    return weights, slack, levels


def _level_members(fixed: np.ndarray, duals: np.ndarray, value: float, fix_tol: float, tol: float) -> np.ndarray:
    """Unfixed types that cannot rise above the level's value, so are fixed at it.

    Types with positive dual weight cannot, in any optimum (complementary slackness). At a value
    of 1 none can: every unfixed type is then in every panel (one level, not one per type).
    """
    unfixed = np.isnan(fixed)
    return unfixed if value >= 1 - tol else unfixed & (duals > fix_tol)


def _relaxation_levels(pool: Pool, types: Types, fixed: np.ndarray, fix_tol: float,
                       deadline: float) -> list[tuple[float, np.ndarray, float]] | None:
    """The LEXIMIN of the LP relaxation as (bound, types fixed, seconds) per level, fixing `fixed` in place.

    None when it stalls or runs out of time (the caller then falls back to column generation).
    """
    levels: list[tuple[float, np.ndarray, float]] = []
    while np.isnan(fixed).any():
        t = time.monotonic()
        if t >= deadline:
            return None
        z, duals = relaxation_bound(pool, types, fixed, time_limit=deadline - t)
        members = _level_members(fixed, duals, z, fix_tol, 1e-9)
        if not np.isfinite(z) or not members.any():
            return None
        fixed[members] = min(z, 1.0)
        levels.append((min(z, 1.0), members, round(time.monotonic() - t, 3)))
    return levels


def _solve_level(pool: Pool, types: Types, panels: list[np.ndarray], fixed: np.ndarray, gap_tol: float,
                 smoothing: float, deadline: float, time_limit: float,
                 number: int) -> tuple[LeximinLevel, np.ndarray]:
    """Column generation for one level until a proven bound certifies it; appends the panels it generates.

    Returns the level and the duals that fix its types: the relaxation LP's, or the duals of the
    optimal restricted master at which the pricing ILP proved the bound. The deadline is checked
    after every solver call; running out raises LeximinNotConverged with the best value and bound.
    """
    level_start, iters, alpha = time.monotonic(), 0, smoothing
    center, best_ub, value = None, np.inf, -np.inf
    is_fixed = ~np.isnan(fixed)

    def out_of_time(what: str) -> LeximinNotConverged:
        bound = min(best_ub, lp_bound)
        return LeximinNotConverged(f"LEXIMIN level {number} not certified within {time_limit:g}s ({what}; value "
                                   f"{value:.6f}, bound {bound:.6f}); raise --leximin-time-limit", value, bound)

    def master() -> tuple[np.ndarray, float, float]:
        try:
            return level_dual(panels, types, fixed, time_limit=_left(deadline))
        except LeximinNotConverged:
            raise out_of_time("restricted master") from None

    lp_bound = np.inf
    lp_bound, lp_weights = relaxation_bound(pool, types, fixed, time_limit=_left(deadline))
    decomposed = False
    while True:
        iters += 1
        if _left(deadline) <= 0:
            raise out_of_time("restricted master")
        w, cap, value = master()
        if value < lp_bound - gap_tol and not decomposed and _left(deadline) > 0:
            # Columns that reach the LP bound when the integer hull does: a decomposition of a central
            # point of the relaxation's optimal face (minutes of pricing saved on large pools).
            decomposed = True
            _add_new_panels(panels, decompose_relaxation(pool, types, fixed, lp_bound - gap_tol / 10, deadline))
            if _left(deadline) <= 0:
                raise out_of_time("decomposition")
            w, cap, value = master()
        if value >= lp_bound - gap_tol:
            # The known panels reach the LP relaxation's bound, so the level is optimal; the
            # relaxation's duals are then optimal for the true problem too and safe for fixing.
            return LeximinLevel(number, value, lp_bound, max(lp_bound - value, 0.0), "lp_relaxation", iters,
                                round(time.monotonic() - level_start, 3)), lp_weights
        if _left(deadline) <= 0:
            raise out_of_time("restricted master")
        smoothed = center is not None and alpha > 0 and best_ub - value > gap_tol
        w_price = alpha * center + (1 - alpha) * w if smoothed else w
        priced = best_panel(pool, types, w_price / types.sizes, time_limit=_left(deadline))
        if priced is None:
            raise AssertionError("pricing infeasible although the pool is feasible")
        # Any convex combination of dual-feasible weights is dual feasible, and the ILP's dual
        # bound is proven even when it stopped early: `ub` bounds the level's value.
        ub = priced.bound - float(np.nan_to_num(fixed[is_fixed]) @ w_price[is_fixed])
        if ub < best_ub:
            best_ub, center = ub, w_price
        if not smoothed and ub - value <= gap_tol:
            # Certified at the optimal master's own duals, which are then optimal for the level: safe for fixing.
            return LeximinLevel(number, value, value + max(ub - value, 0.0), max(ub - value, 0.0), "pricing_ilp",
                                iters, round(time.monotonic() - level_start, 3)), w
        if _left(deadline) <= 0:
            raise out_of_time("pricing ILP")
        if priced.counts is None:
            raise LeximinNotConverged(f"LEXIMIN level {number}: the pricing ILP stopped without a panel or a proof "
                                      f"(value {value:.6f}, bound {min(best_ub, lp_bound):.6f})",
                                      value, min(best_ub, lp_bound))
        improves = float(w @ (priced.counts / types.sizes)) - cap > gap_tol / 10
        if improves and not any(np.array_equal(priced.counts, p) for p in panels[-100:]):
            panels.append(priced.counts)
        elif smoothed:
            alpha /= 2  # mispricing: move the pricing point towards the master's dual
        else:
            # No new column and no proof: the ILP's bound is loose (it stopped early) or numerics stall.
            # Its incumbent not beating the master proves nothing, so the level stays open.
            why = "stalled" if priced.optimal else "stalled: the pricing ILP stopped early without a proof"
            raise LeximinNotConverged(f"LEXIMIN level {number}: column generation {why} (value {value:.6f}, "
                                      f"proven bound {min(best_ub, lp_bound):.6f})", value, min(best_ub, lp_bound))


def _left(deadline: float) -> float:
    """Seconds left before the deadline (negative once past it)."""
    return deadline - time.monotonic()


def _add_new_panels(panels: list[np.ndarray], new: list[np.ndarray]) -> None:
    """Append the panels of `new` that `panels` does not hold yet."""
    known = {p.tobytes() for p in panels}
    panels += [p for p in new if p.tobytes() not in known]


def _selectable(panels: list[np.ndarray], T: int) -> np.ndarray:
    return np.array(panels).sum(0) > 0 if panels else np.zeros(T, dtype=bool)


def _initial_panels(pool: Pool, types: Types, deadline: float, n_legacy: int = 0, seed: int = 0) -> list[np.ndarray]:
    """Warm-start columns: LEGACY panels, plus panels that together include every selectable type."""
    T = len(types.sizes)
    panels: list[np.ndarray] = []
    if n_legacy:
        try:
            drawn = legacy_panels(pool, n_legacy, seed, max_attempts_factor=20)
            panels = [np.bincount(types.index[p], minlength=T) for p in
                      np.unique(np.sort(drawn.panels, axis=1), axis=0)]
        except DLMError:
            panels = []  # LEGACY cannot meet these quotas often enough: start from coverage panels alone
    covered = _selectable(panels, T)
    # Rounded LP vertices cover most types at a fraction of an ILP's cost; the ILP then covers the
    # rest or proves that no panel holds them.
    vertex, member = FacePanels(pool, types, integer=False), types.membership.T
    cats, rng = type_categories(member), np.random.default_rng(seed)
    while not covered.all() and _left(deadline) > 0:
        cheap = rounded_panel(vertex, pool, member, cats, (~covered).astype(float) / types.sizes, rng)
        if cheap is None or not (cheap[~covered] > 0).any():
            break
        panels.append(cheap)
        covered |= cheap > 0
    while not covered.all():
        got = best_panel(pool, types, (~covered).astype(float) / types.sizes, time_limit=max(_left(deadline), 0.0))
        if got is None:
            raise DLMError(f"{pool.config.path}: the quotas are infeasible for this pool; run the feasibility check")
        counts = got.counts
        new = counts is not None and (counts[~covered] > 0).any()
        if not new and got.optimal:
            break  # proven: the remaining types appear in no feasible panel
        if not new or _left(deadline) <= 0:
            raise LeximinNotConverged("LEXIMIN not certified within the time limit (it ran out while finding "
                                      "panels for every type); raise --leximin-time-limit")
        panels.append(counts)
        covered |= counts > 0
    unique = {p.tobytes(): p for p in panels}
    return list(unique.values())


def level_dual(panels: list[np.ndarray], types: Types, fixed: np.ndarray, relax: float = 0.0,
               time_limit: float | None = None) -> tuple[np.ndarray, float, float]:
    """Restricted dual LP of one LEXIMIN level: weights w (T), cap ŷ and the level value.

    min ŷ - Σ_fixed p_t w_t  s.t.  Σ_t w_t c_{C,t}/n_t <= ŷ for known panels C,  Σ_unfixed w = 1,  w >= 0.
    When it is unbounded, the fixed p_t sit a hair above what the panels give (an earlier level's
    value is exact only to the solver's feasibility tolerance): they are lowered by `relax`,
    from 1e-9 up to 1e-7, which stays within the certified tolerance. Only an optimal solve
    returns: its duals are the ones types may be fixed with.
    """
    T = len(types.sizes)
    is_fixed = ~np.isnan(fixed)
    P = np.array(panels, dtype=float) / types.sizes
    c = np.r_[np.where(is_fixed, -np.maximum(np.nan_to_num(fixed) - relax, 0.0), 0.0), 1.0]
    A_ub = np.hstack([P, -np.ones((len(panels), 1))])
    A_eq = np.r_[(~is_fixed).astype(float), 0.0][None, :]
    res = linprog(c, A_ub=A_ub, b_ub=np.zeros(len(panels)), A_eq=A_eq, b_eq=[1.0],
                  bounds=[(0, None)] * T + [(None, None)], method="highs",
                  options={} if time_limit is None else {"time_limit": max(time_limit, 0.0)})
    if res.status == 1:
        raise LeximinNotConverged("LEXIMIN: the restricted master LP ran out of the time limit; "
                                  "raise --leximin-time-limit")
    if res.status == 3 and relax < 1e-7:
        return level_dual(panels, types, fixed, max(10 * relax, 1e-9), time_limit)
    if res.status != 0:
        raise AssertionError(f"LEXIMIN dual LP failed: {res.message}")
    return res.x[:T], float(res.x[T]), float(res.fun)



# The final LP certifies the panels found so far: it may run this long past the deadline, no longer
# (on a pool of 6,000 with k = 50 it took minutes after the decomposition had used up the time).
FINAL_LP_GRACE_S = 10.0


def _final_primal(panels: list[np.ndarray], types: Types, fixed: np.ndarray,
                  deadline: float | None = None) -> tuple[np.ndarray, float]:
    """Panel probabilities giving every type at least its fixed probability (minimal slack ε)."""
    P = np.array(panels, dtype=float) / types.sizes  # (m, T)
    m = len(panels)
    target = np.nan_to_num(fixed, nan=0.0)
    c = np.r_[np.zeros(m), 1.0]
    A_ub = np.hstack([-P.T, -np.ones((P.shape[1], 1))])
    limit = None if deadline is None else max(_left(deadline), 0.0) + FINAL_LP_GRACE_S
    res = linprog(c, A_ub=A_ub, b_ub=-target, A_eq=np.r_[np.ones(m), 0.0][None, :], b_eq=[1.0],
                  bounds=[(0, None)] * (m + 1), method="highs", options={} if limit is None else {"time_limit": limit})
    if res.status == 1:
        raise LeximinNotConverged(f"LEXIMIN not certified within the time limit: the final LP over the {m} panels "
                                  "found ran out of it; raise --leximin-time-limit")
    if res.status != 0:
        raise AssertionError(f"LEXIMIN final LP failed: {res.message}")
    weights = np.clip(res.x[:m], 0, None)
    return weights / weights.sum(), float(res.x[m])
