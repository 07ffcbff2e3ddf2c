"""Exact feasibility of the quotas over the actual pool, the pricing ILP, and the fixes suggested when infeasible."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from dlm.errors import DLMError
from dlm.sortition.config import parse_panel_config
from dlm.sortition.pool import Pool


@dataclass
class Types:
    """People grouped by identical category vectors: counts per type and type membership."""

    index: np.ndarray  # (n,) person -> type
    sizes: np.ndarray  # (T,)
    membership: np.ndarray  # (T, C) float


def pool_types(pool: Pool) -> Types:
    """Group interchangeable people (same category in every attribute)."""
    uniq, index, sizes = np.unique(pool.codes, axis=0, return_inverse=True, return_counts=True)
    member = np.zeros((len(uniq), pool.offsets[-1]))
    for j in range(uniq.shape[1]):
        member[np.arange(len(uniq)), pool.offsets[j] + uniq[:, j]] = 1.0
    return Types(index.ravel(), sizes, member)


@dataclass
class PricedPanel:
    """What the pricing ILP proved and found: a proven upper bound, and the best panel if it has one."""

    counts: np.ndarray | None  # type counts of the best panel found (None: the solver stopped before finding one)
    value: float  # Σ weights·counts of that panel (-inf without one)
    bound: float  # proven upper bound on the best panel's value, valid whether or not the solver finished
    optimal: bool  # solved to the requested gap


def best_panel(pool: Pool, types: Types, weights: np.ndarray, time_limit: float | None = None,
               lo: np.ndarray | None = None, hi: np.ndarray | None = None, k: int | None = None,
               var_lo: np.ndarray | None = None, var_hi: np.ndarray | None = None,
               gap: float = 1e-9) -> PricedPanel | None:
    """Pricing ILP: the quota-feasible panel (type counts) maximising Σ weights·counts; None if none exists.

    lo/hi replace the quotas, var_lo/var_hi the per-type count bounds (0 and the type's size), and
    gap is the relative optimality gap at which the solver may stop. A time limit that stops the
    solver gives a non-optimal result (possibly without a panel) whose bound is still proven.
    """
    qlo, qhi = pool.bounds
    lo = qlo if lo is None else lo
    hi = qhi if hi is None else hi
    k = pool.k if k is None else k
    T = len(types.sizes)
    options: dict[str, Any] = {"mip_rel_gap": gap, "presolve": True}
    if time_limit is not None:
        options["time_limit"] = max(float(time_limit), 0.0)  # exactly the time left: no floor past a deadline
    res = milp(
        c=-np.asarray(weights, dtype=float),
        integrality=np.ones(T),
        bounds=Bounds(np.zeros(T) if var_lo is None else var_lo, types.sizes.astype(float) if var_hi is None else var_hi),
        constraints=[LinearConstraint(np.ones((1, T)), k, k), LinearConstraint(types.membership.T, lo, hi)],
        options=options,
    )
    if res.status == 2:  # proven infeasible
        return None
    optimal = res.status == 0
    dual = getattr(res, "mip_dual_bound", None)
    if dual is not None and np.isfinite(dual):
        bound = float(-dual)
    elif optimal and res.x is not None:
        bound = float(-res.fun)
    else:
        bound = np.inf  # stopped before proving anything
    if res.x is None:
        if optimal:
            raise AssertionError(f"HiGHS reported an optimal pricing ILP without a solution: {res.message}")
        return PricedPanel(None, -np.inf, bound, False)
    counts = np.rint(res.x).astype(np.int64)
    return PricedPanel(counts, float(-res.fun), max(bound, float(-res.fun)), optimal)


def is_feasible(pool: Pool, types: Types | None = None, **bounds: Any) -> bool:
    """Whether any panel meets every quota (an exact integer program over the actual pool)."""
    types = types or pool_types(pool)
    return best_panel(pool, types, np.zeros(len(types.sizes)), **bounds) is not None


@dataclass
class FeasibilityReport:
    """Whether any panel meets the quotas; if not, the binding quotas and relaxations that would work."""

    feasible: bool
    binding: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)


def feasibility_report(pool: Pool) -> FeasibilityReport:
    """Feasibility, and when infeasible the binding quotas and the smallest relaxations that work."""
    types = pool_types(pool)
    if is_feasible(pool, types):
        return FeasibilityReport(True)
    lo, hi = pool.bounds
    binding = _binding_quotas(pool, types, lo, hi)
    suggestions = []
    tol = _smallest_feasible_tolerance(pool)
    if tol is not None:
        suggestions.append(f"tolerance {tol:.2f} ({pool.config.tolerance_mode}) with panel_size {pool.k}")
    k = _nearest_feasible_size(pool)
    if k is not None:
        suggestions.append(f"panel_size {k} with tolerance {pool.config.tolerance:g}")
    return FeasibilityReport(False, binding, suggestions)


def _binding_quotas(pool: Pool, types: Types, lo: np.ndarray, hi: np.ndarray) -> list[str]:
    """Quotas that must move in a minimal elastic relaxation (LP with slack on each bound)."""
    T, C = types.membership.shape
    # variables: counts (T), under (C), over (C); minimise total slack
    A = np.hstack([types.membership.T, np.eye(C), -np.eye(C)])
    res = milp(
        c=np.r_[np.zeros(T), np.ones(2 * C)],
        integrality=np.r_[np.ones(T), np.zeros(2 * C)],
        bounds=Bounds(np.zeros(T + 2 * C), np.r_[types.sizes, np.full(2 * C, pool.k)].astype(float)),
        constraints=[LinearConstraint(np.r_[np.ones(T), np.zeros(2 * C)][None, :], pool.k, pool.k),
                     LinearConstraint(A, lo, hi)],
        options={"time_limit": 30},
    )
    if res.x is None:
        return []
    under, over = res.x[T:T + C], res.x[T + C:]
    out = []
    for (attr, cat), u, o, a, b in zip(pool.category_labels, under, over, lo, hi, strict=True):
        if u > 1e-6:
            out.append(f"{attr}={cat} min {a} (pool can supply only {a - round(u)} alongside the other quotas)")
        if o > 1e-6:
            out.append(f"{attr}={cat} max {b} (needs {b + round(o)} alongside the other quotas)")
    return out


def _with(pool: Pool, **overrides: Any) -> Pool:
    """The same pool under a config with some top-level keys replaced."""
    return dataclasses.replace(pool, config=parse_panel_config({**pool.config.raw, **overrides}, pool.config.path))


def _smallest_feasible_tolerance(pool: Pool, step: float = 0.01, limit: float = 1.0) -> float | None:
    """The smallest tolerance on a 0.01 grid (all attributes together) that makes the quotas feasible."""
    tol = pool.config.tolerance
    raw_attrs = [{k: v for k, v in a.items() if k != "tolerance"} for a in pool.config.raw["attributes"]]
    while tol <= limit:
        tol = round(tol + step, 10)
        candidate = _with(pool, tolerance=tol, attributes=raw_attrs)
        if is_feasible(candidate):
            return tol
    return None


def _nearest_feasible_size(pool: Pool) -> int | None:
    """The panel size nearest to the configured one (smaller first) that is feasible."""
    for d in range(1, pool.n):
        for k in (pool.k - d, pool.k + d):
            if 1 <= k <= pool.n and is_feasible(_with(pool, panel_size=k)):
                return k
    return None


def require_feasible(pool: Pool) -> None:
    """Raise one clear error naming the binding quotas and the relaxations that would work."""
    rep = feasibility_report(pool)
    if not rep.feasible:
        binding = "; ".join(rep.binding[:4]) or "the quotas jointly"
        fix = " or ".join(rep.suggestions) or "loosen the quotas"
        raise DLMError(f"{pool.config.path}: no panel of {pool.k} from this pool of {pool.n} meets the quotas "
                       f"(binding: {binding}); smallest fix: {fix}")
