"""Sortition: quota-constrained panels from PRISM participants and each person's selection probability.

Algorithms:
- `legacy`: the Sortition Foundation's greedy (most urgent category first, a uniformly random
  remaining member of it, categories closed at their maximum). Failed draws are retried with fresh
  randomness, so probabilities are *conditional on success*; the failure rate is reported.
  Probabilities are Monte Carlo estimates over N panels, vectorised across panels.
- `leximin`: Flanigan et al. (Nature 2021) on HiGHS (scipy, highspy), certified level by level:
  each level's value is achieved by a mixture of known panels and lies within `gap_tol` of an
  upper bound, or the run fails. First route: the LEXIMIN of the quota polytope's LP relaxation
  (one cheap LP per level; an upper bound on every level) decomposed into panels; when the
  decomposition reaches every level, all are certified by their relaxation bounds. Otherwise,
  column generation level by level: a dual LP over known panels and a pricing ILP for the panel
  with the largest dual weight, certified by the relaxation bound or the pricing ILP's dual bound.
  People with identical quota values are interchangeable, so the problem is solved over *types*.
- `random`: uniform over quota-feasible panels by rejection sampling (for debugging).
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from dlm.errors import DLMError
from dlm.io import atomic_path, manifest, progress_bar, write_json_atomic

ALGORITHMS = ("legacy", "leximin", "random")
PROPORTION_SLACK = 0.01


# ----------------------------------------------------------------------------- configuration


@dataclass
class Attribute:
    """One quota attribute: its survey column and, per category, the allowed count range."""

    name: str
    column: str
    categories: list[str]
    lo: dict[str, int]
    hi: dict[str, int]
    proportions: dict[str, float] | None = None
    slack_categories: list[str] = field(default_factory=list)


@dataclass
class PanelConfig:
    """A panel's size, pool filter and quotas, as read from `panel_config.yaml`."""

    panel_size: int
    tolerance: float
    tolerance_mode: str
    locale_filter: list[str] | None
    include_survey_only: bool
    attributes: list[Attribute]
    raw: dict[str, Any]
    path: str = ""


def load_panel_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PanelConfig:
    """Read and validate a panel config YAML; `overrides` replace top-level keys (e.g. panel_size)."""
    path = Path(path)
    if not path.is_file():
        raise DLMError(f"panel config {path} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DLMError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise DLMError(f"{path}: expected a mapping with panel_size, tolerance and attributes")
    raw = {**raw, **(overrides or {})}
    return parse_panel_config(raw, str(path))


def parse_panel_config(raw: dict[str, Any], where: str = "panel config") -> PanelConfig:
    """Validate a panel config mapping and compute each category's [min, max] count."""
    for key in ("panel_size", "attributes"):
        if key not in raw:
            raise DLMError(f"{where}: missing '{key}'")
    k = raw["panel_size"]
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise DLMError(f"{where}: panel_size must be a positive integer, got {k!r}")
    tol = raw.get("tolerance", 0.05)
    mode = raw.get("tolerance_mode", "relative")
    if mode not in ("relative", "absolute"):
        raise DLMError(f"{where}: tolerance_mode must be 'relative' or 'absolute', got {mode!r}")
    locale = raw.get("locale_filter")
    locales = None if locale in (None, "", []) else ([locale] if isinstance(locale, str) else list(locale))
    attrs = [_parse_attribute(a, i, k, tol, mode, where) for i, a in enumerate(raw["attributes"] or [])]
    if not attrs:
        raise DLMError(f"{where}: 'attributes' is empty; give at least one quota attribute")
    _check_tolerance(tol, where)
    return PanelConfig(k, float(tol), mode, locales, bool(raw.get("include_survey_only", False)), attrs, raw, where)


def _check_tolerance(tol: Any, where: str) -> None:
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or tol < 0 or not math.isfinite(tol):
        raise DLMError(f"{where}: tolerance must be a number >= 0, got {tol!r}")


def _parse_attribute(a: dict, i: int, k: int, tol: float, mode: str, where: str) -> Attribute:
    """Validate one attribute entry and turn proportions or explicit quotas into count bounds."""
    if not isinstance(a, dict) or "name" not in a:
        raise DLMError(f"{where}: attributes[{i}] needs at least 'name'")
    name = a["name"]
    column = a.get("column", name) + (f".{a['nested_key']}" if a.get("nested_key") else "")
    atol = a.get("tolerance", tol)
    _check_tolerance(atol, f"{where}: attribute '{name}'")
    slack = list(a.get("slack_categories") or [])
    if a.get("quotas"):
        lo, hi = {}, {}
        for cat, bounds in a["quotas"].items():
            if not (isinstance(bounds, (list, tuple)) and len(bounds) == 2 and 0 <= bounds[0] <= bounds[1]):
                raise DLMError(f"{where}: attribute '{name}' quota for '{cat}' must be [min, max] with 0 <= min <= max")
            lo[str(cat)], hi[str(cat)] = int(bounds[0]), min(int(bounds[1]), k)
        cats = list(lo)
        props = None
    elif a.get("population_proportions"):
        props = {str(c): float(p) for c, p in a["population_proportions"].items()}
        total = sum(props.values())
        if abs(total - 1) > PROPORTION_SLACK:
            raise DLMError(f"{where}: attribute '{name}' population_proportions sum to {total:.3f}, not 1 (±0.01)")
        if any(p < 0 for p in props.values()):
            raise DLMError(f"{where}: attribute '{name}' has a negative proportion")
        cats = list(props)
        lo, hi = {}, {}
        for c, p in props.items():
            lo[c], hi[c] = quota_range(p, k, atol, mode)
    else:
        raise DLMError(f"{where}: attribute '{name}' needs population_proportions or quotas")
    for c in slack:
        if c not in cats:
            raise DLMError(f"{where}: attribute '{name}' slack category '{c}' is not one of its categories")
        lo[c], hi[c] = 0, k  # slack categories carry no quota: they absorb people whatever their share
    return Attribute(name, column, cats, lo, hi, props, slack)


def quota_range(p: float, k: int, tol: float, mode: str) -> tuple[int, int]:
    """[min, max] panel seats for a category of population share p, rounded outward."""
    if mode == "relative":
        lo, hi = p * k * (1 - tol), p * k * (1 + tol)
    else:
        lo, hi = (p - tol) * k, (p + tol) * k
    eps = 1e-9  # keeps e.g. 0.1*30 = 3.0000000000000004 from rounding up to 4
    return max(0, math.floor(lo + eps)), min(k, math.ceil(hi - eps))


# ----------------------------------------------------------------------------- the pool


@dataclass
class Pool:
    """The people who can be selected, with their categories encoded for the solvers."""

    user_ids: np.ndarray  # (n,) str
    codes: np.ndarray  # (n, A) int: category index within each attribute
    config: PanelConfig
    report: dict[str, Any]

    @property
    def n(self) -> int:
        return len(self.user_ids)

    @property
    def k(self) -> int:
        return self.config.panel_size

    @property
    def offsets(self) -> np.ndarray:
        """Start of each attribute's block in the flat list of categories."""
        return np.cumsum([0] + [len(a.categories) for a in self.config.attributes])

    @property
    def membership(self) -> np.ndarray:
        """(n, C) bool: person i belongs to flat category c."""
        m = np.zeros((self.n, self.offsets[-1]), dtype=bool)
        for j in range(self.codes.shape[1]):
            m[np.arange(self.n), self.offsets[j] + self.codes[:, j]] = True
        return m

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat (lo, hi) count bounds over all categories."""
        lo = [a.lo[c] for a in self.config.attributes for c in a.categories]
        hi = [a.hi[c] for a in self.config.attributes for c in a.categories]
        return np.array(lo), np.array(hi)

    @property
    def category_labels(self) -> list[tuple[str, str]]:
        return [(a.name, c) for a in self.config.attributes for c in a.categories]


def build_pool(survey: pd.DataFrame, config: PanelConfig) -> Pool:
    """Select the pool (locale, participants with preferences) and encode categories.

    Rule for values that are not a configured category: the person counts in the attribute's
    first slack category if it has one, and is otherwise excluded from the pool (counted).
    """
    df = survey
    report: dict[str, Any] = {"survey_rows": len(df)}
    if config.locale_filter:
        df = df[df["study_locale"].isin(config.locale_filter)]
        report["after_locale_filter"] = len(df)
    if not config.include_survey_only:
        df = df[~df["survey_only"].astype(bool) & (df["num_completed_conversations"] > 0)]
        report["after_dropping_survey_only"] = len(df)
    codes = np.zeros((len(df), len(config.attributes)), dtype=np.int64)
    keep = np.ones(len(df), dtype=bool)
    report["reassigned_to_slack"], report["excluded_unmatched"] = {}, {}
    for j, attr in enumerate(config.attributes):
        if attr.column not in df.columns:
            raise DLMError(f"{config.path}: attribute '{attr.name}' column '{attr.column}' is not in the survey")
        values = df[attr.column].astype(object).where(df[attr.column].notna(), "<missing>").astype(str).to_numpy()
        index = {c: i for i, c in enumerate(attr.categories)}
        col = np.array([index.get(v, -1) for v in values])
        unmatched = col < 0
        if unmatched.any():
            if attr.slack_categories:
                col[unmatched] = index[attr.slack_categories[0]]
                report["reassigned_to_slack"][attr.name] = int(unmatched.sum())
            else:
                keep &= ~unmatched
                report["excluded_unmatched"][attr.name] = int(unmatched.sum())
        codes[:, j] = col
    pool = Pool(df["user_id"].to_numpy()[keep].astype(str), codes[keep], config, report)
    report["pool_size"] = pool.n
    report["empty_categories"] = [f"{a}={c}" for (a, c), m in zip(pool.category_labels, pool.membership.sum(0),
                                                                   strict=True) if m == 0]
    for label in report["empty_categories"]:
        warnings.warn(f"configured category {label} has nobody in the pool", stacklevel=2)
    if config.panel_size > pool.n:
        raise DLMError(f"{config.path}: panel_size {config.panel_size} is larger than the pool ({pool.n} people)")
    return pool


# ----------------------------------------------------------------------------- feasibility


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


def best_panel(pool: Pool, types: Types, weights: np.ndarray, time_limit: float | None = None,
               lo: np.ndarray | None = None, hi: np.ndarray | None = None, k: int | None = None,
               var_lo: np.ndarray | None = None, var_hi: np.ndarray | None = None, gap: float = 1e-9):
    """Pricing ILP: type counts of the quota-feasible panel maximising Σ weights·counts (None if infeasible).

    lo/hi replace the quotas, var_lo/var_hi the per-type count bounds (0 and the type's size), and
    gap is the relative optimality gap at which the solver may stop.
    """
    qlo, qhi = pool.bounds
    lo = qlo if lo is None else lo
    hi = qhi if hi is None else hi
    k = pool.k if k is None else k
    T = len(types.sizes)
    options = {"mip_rel_gap": gap, "presolve": True}
    if time_limit is not None:
        options["time_limit"] = max(time_limit, 1.0)
    res = milp(
        c=-np.asarray(weights, dtype=float),
        integrality=np.ones(T),
        bounds=Bounds(np.zeros(T) if var_lo is None else var_lo, types.sizes.astype(float) if var_hi is None else var_hi),
        constraints=[LinearConstraint(np.ones((1, T)), k, k), LinearConstraint(types.membership.T, lo, hi)],
        options=options,
    )
    if res.status == 2 or res.x is None:  # infeasible
        return None
    counts = np.rint(res.x).astype(np.int64)
    dual_bound = -res.mip_dual_bound if getattr(res, "mip_dual_bound", None) is not None else -res.fun
    return counts, float(-res.fun), float(dual_bound), res.status


def is_feasible(pool: Pool, types: Types | None = None, **bounds: Any) -> bool:
    """Whether any panel meets every quota (an exact integer program over the actual pool)."""
    types = types or pool_types(pool)
    return best_panel(pool, types, np.zeros(len(types.sizes)), **bounds) is not None


def feasibility_report(pool: Pool) -> dict[str, Any]:
    """Feasibility, and when infeasible the binding quotas and the smallest relaxations that work."""
    types = pool_types(pool)
    if is_feasible(pool, types):
        return {"feasible": True, "binding": [], "suggestions": []}
    lo, hi = pool.bounds
    binding = _binding_quotas(pool, types, lo, hi)
    suggestions = []
    tol = _smallest_feasible_tolerance(pool)
    if tol is not None:
        suggestions.append(f"tolerance {tol:.2f} ({pool.config.tolerance_mode}) with panel_size {pool.k}")
    k = _nearest_feasible_size(pool)
    if k is not None:
        suggestions.append(f"panel_size {k} with tolerance {pool.config.tolerance:g}")
    return {"feasible": False, "binding": binding, "suggestions": suggestions}


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
    cfg = parse_panel_config({**pool.config.raw, **overrides}, pool.config.path)
    return Pool(pool.user_ids, pool.codes, cfg, pool.report)


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
    if not rep["feasible"]:
        binding = "; ".join(rep["binding"][:4]) or "the quotas jointly"
        fix = " or ".join(rep["suggestions"]) or "loosen the quotas"
        raise DLMError(f"{pool.config.path}: no panel of {pool.k} from this pool of {pool.n} meets the quotas "
                       f"(binding: {binding}); smallest fix: {fix}")


# ----------------------------------------------------------------------------- LEGACY


@dataclass
class MonteCarlo:
    """Panels drawn by a randomised algorithm and the selection probabilities they imply."""

    panels: np.ndarray  # (N, k) person indices
    attempts: int
    failures: int

    @property
    def failure_rate(self) -> float:
        return self.failures / max(self.attempts, 1)

    def probabilities(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-person selection frequency and its binomial standard error."""
        counts = np.bincount(self.panels.ravel(), minlength=n)
        p = counts / len(self.panels)
        return p, np.sqrt(p * (1 - p) / len(self.panels))


def legacy_panels(pool: Pool, n_panels: int, seed: int, batch: int = 1000, max_attempts_factor: int = 100,
                  progress: bool = False) -> MonteCarlo:
    """Draw `n_panels` successful LEGACY panels (failed draws are retried with fresh randomness)."""
    rng = np.random.default_rng(seed)
    M = pool.membership
    lo, hi = pool.bounds
    found: list[np.ndarray] = []
    attempts = failures = 0
    bar = progress_bar(n_panels, "LEGACY panels", progress)
    while sum(len(f) for f in found) < n_panels:
        if attempts > max_attempts_factor * n_panels:
            raise DLMError(f"{pool.config.path}: LEGACY failed {failures} of {attempts} draws; the quotas are too "
                           "tight for the greedy (try leximin, or loosen them)")
        size = min(batch, max(n_panels - sum(len(f) for f in found), 64))
        panels = _legacy_batch(M, lo, hi, pool.k, size, rng)
        attempts += size
        failures += size - len(panels)
        found.append(panels)
        bar.update(len(panels))
    bar.close()
    return MonteCarlo(np.concatenate(found)[:n_panels], attempts, failures)


def _legacy_batch(M: np.ndarray, lo: np.ndarray, hi: np.ndarray, k: int, P: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Run the greedy for P panels at once; return the (S, k) picks of the S runs that succeeded.

    Runs that fail are dropped from the working arrays as soon as they fail (their picks would
    be discarded anyway), so a batch gets cheaper as it goes.
    """
    n, C = M.shape
    block = 64  # people are searched in blocks: count per block, then within the chosen block
    n_pad = -(-n // block) * block
    small = np.int16 if n_pad < 32_000 else np.int32
    Mp = np.zeros((n_pad, C), dtype=bool)
    Mp[:n] = M
    Mi, Mf = Mp.astype(np.int32), Mp.astype(np.float32)
    MT = np.ascontiguousarray(Mp.T)
    alive = np.zeros((P, n_pad), dtype=bool)
    alive[:, :n] = True
    alive[:, (Mp & (hi == 0)).any(1)] = False  # a category with max 0 is closed from the start
    remaining = (alive.astype(np.float32) @ Mf).astype(np.int32)
    selected = np.zeros((P, C), dtype=np.int32)
    closed = np.tile(hi == 0, (P, 1))
    picks = np.zeros((P, k), dtype=np.int64)
    for step in range(k):
        need = lo - selected
        ok = ~((need > 0) & (remaining < need)).any(1)
        open_ = (remaining > 0) & ~closed
        ratio = np.where(open_, need / np.maximum(remaining, 1), -np.inf)
        ok &= open_.any(1) & ~(ratio > 1).any(1)
        if not ok.all():
            alive, remaining, selected, closed, picks = alive[ok], remaining[ok], selected[ok], closed[ok], picks[ok]
            ratio = ratio[ok]
        rows = np.arange(len(alive))
        cat = np.argmax(ratio, axis=1)  # first maximum: the category order of the config breaks ties
        cand = (alive & MT[cat]).reshape(len(alive), -1, block)
        r = np.floor(rng.random(len(alive)) * remaining[rows, cat]).astype(small)
        per_block = cand.sum(2, dtype=small)
        upto = np.cumsum(per_block, axis=1, dtype=small)
        b = np.argmax(upto > r[:, None], axis=1)
        r -= upto[rows, b] - per_block[rows, b]
        person = b * block + np.argmax(np.cumsum(cand[rows, b], axis=1, dtype=small) > r[:, None], axis=1)
        picks[:, step] = person
        alive[rows, person] = False
        remaining -= Mi[person]
        selected += Mi[person]
        full = (selected >= hi) & ~closed
        if full.any():  # close categories that reached their max: their remaining members leave the pool
            pair_row, pair_cat = np.nonzero(full)  # row-major: rows come sorted
            hit, starts = np.unique(pair_row, return_index=True)
            gone = np.logical_or.reduceat(alive[pair_row] & MT[pair_cat], starts, axis=0)
            remaining[hit] -= (gone.astype(np.float32) @ Mf).astype(np.int32)
            alive[hit] &= ~gone
            closed |= full
    ok = ((selected >= lo) & (selected <= hi)).all(1)
    return picks[ok]


# ----------------------------------------------------------------------------- random (rejection)


def random_panels(pool: Pool, n_panels: int, seed: int, max_draws: int = 5_000_000,
                  progress: bool = False) -> MonteCarlo:
    """Uniformly random quota-feasible panels by rejection sampling (slow when quotas bind)."""
    rng = np.random.default_rng(seed)
    Mi = pool.membership.astype(np.int32)
    lo, hi = pool.bounds
    found, attempts = [], 0
    bar = progress_bar(n_panels, "random panels", progress)
    while sum(len(f) for f in found) < n_panels:
        if attempts >= max_draws:
            raise DLMError(f"{pool.config.path}: random sampling accepted {sum(len(f) for f in found)} of "
                           f"{attempts} draws; the quotas bind too tightly for rejection sampling (use legacy or leximin)")
        size = 2000
        panels = np.argsort(rng.random((size, pool.n)), axis=1)[:, :pool.k]
        counts = Mi[panels].sum(1)
        ok = ((counts >= lo) & (counts <= hi)).all(1)
        attempts += size
        found.append(panels[ok])
        bar.update(int(ok.sum()))
    bar.close()
    return MonteCarlo(np.concatenate(found)[:n_panels], attempts, attempts - sum(len(f) for f in found))


# ----------------------------------------------------------------------------- LEXIMIN


class LeximinNotConverged(DLMError):
    """A LEXIMIN level did not reach the required optimality gap within the time limit."""

    levels: list[dict[str, Any]] = []  # the levels certified before it


@dataclass
class Leximin:
    """The LEXIMIN distribution over panels (as type counts) and its certificate."""

    panels: np.ndarray  # (m, T) type counts
    weights: np.ndarray  # (m,) probability of each panel
    types: Types
    levels: list[dict[str, Any]]
    primal_slack: float
    method: str = "column_generation"  # or "relaxation" (see _leximin_by_relaxation)
    seconds: dict[str, float] = field(default_factory=dict)  # where the time went

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
            seed: int = 0, progress: bool = False, method: str = "auto") -> Leximin:
    """Certified LEXIMIN selection probabilities over types: the relaxation route, else column generation.

    Args:
        pool: the pool and its quotas.
        time_limit: seconds for the whole computation; a level still open then raises.
        gap_tol: each level is certified when the pricing ILP's dual bound at the restricted
            master's dual exceeds the level's value by at most this.
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
    """
    if method not in ("auto", "column_generation"):
        raise DLMError(f"unknown LEXIMIN method '{method}'; use auto or column_generation")
    start = time.monotonic()
    types = pool_types(pool)
    T = len(types.sizes)
    panels = _initial_panels(pool, types, warm_start_panels, seed)
    fixed = np.full(T, np.nan)
    fixed[~_selectable(panels, T)] = 0.0  # types in no feasible panel have probability 0
    levels: list[dict[str, Any]] = []
    bar = progress_bar(T, "LEXIMIN types fixed", progress)
    bar.update(int((fixed == 0).sum()))
    if method == "auto" and levels_limit is None:
        fast = _leximin_by_relaxation(pool, types, panels, fixed, gap_tol, fix_tol, start + time_limit, progress)
        if fast is not None:
            bar.update(int(np.isnan(fixed).sum()))
            bar.close()
            return fast
    while np.isnan(fixed).any() and (levels_limit is None or len(levels) < levels_limit):
        try:
            level = _solve_level(pool, types, panels, fixed, gap_tol, smoothing, start, time_limit, len(levels) + 1)
        except LeximinNotConverged as exc:
            exc.levels = levels  # the certified levels so far, for reports
            raise
        newly = _level_members(fixed, level.pop("weights"), level["value"], fix_tol, gap_tol)
        fixed[newly] = max(level["value"], 0.0)
        level.update(types_fixed=int(newly.sum()), people_fixed=int(types.sizes[newly].sum()),
                     panels_known=len(panels))
        levels.append(level)
        bar.update(int(newly.sum()))
    bar.close()
    weights, slack = _final_primal(panels, types, fixed)
    return Leximin(np.array(panels), weights, types, levels, slack, seconds={"total": time.monotonic() - start})


def _leximin_by_relaxation(pool: Pool, types: Types, panels: list[np.ndarray], fixed: np.ndarray, gap_tol: float,
                           fix_tol: float, deadline: float, progress: bool = False) -> Leximin | None:
    """LEXIMIN in one decomposition when the relaxation's LEXIMIN point is a mixture of panels; else None.

    The LP relaxation of the quota polytope contains every mixture of panels, so its LEXIMIN
    (a sequence of cheap LPs) bounds every level from above. If a Carathéodory decomposition of
    its final point into panels succeeds, the panels' mixture reaches every level's bound within
    `gap_tol` and each level is certified by its relaxation bound. Otherwise the caller falls
    back to column generation, with the panels found here appended to `panels` as columns.
    """
    start, fixed = time.monotonic(), fixed.copy()
    levels = _relaxation_levels(pool, types, fixed, fix_tol, deadline)
    if levels is None:
        return None
    lp_seconds = time.monotonic() - start
    # The floors sit a hair below the levels: the LP's solution meets them only to its tolerance.
    floors = np.where(fixed > 0, fixed - 1e-9, fixed)
    bar = progress_bar(None, "LEXIMIN panels decomposed", progress)  # the long step on large pools
    _add_new_panels(panels, _decompose_relaxation(pool, types, floors, 0.0, deadline, bar=bar))
    bar.close()
    weights, slack = _final_primal(panels, types, fixed)
    per_type = (weights @ np.array(panels, dtype=float)) / types.sizes
    for level in levels:
        members = level.pop("types")
        value = float(per_type[members].min())
        level.update(value=value, gap=max(level["upper_bound"] - value, 0.0), types_fixed=int(members.sum()),
                     people_fixed=int(types.sizes[members].sum()), panels_known=len(panels))
    if max(level["gap"] for level in levels) > gap_tol:
        return None
    return Leximin(np.array(panels), weights, types, levels, slack, method="relaxation",
                   seconds={"relaxation_levels": lp_seconds, "decomposition": time.monotonic() - start - lp_seconds,
                            "total": time.monotonic() - start})


def _level_members(fixed: np.ndarray, duals: np.ndarray, value: float, fix_tol: float, tol: float) -> np.ndarray:
    """Unfixed types that cannot rise above the level's value, so are fixed at it.

    Types with positive dual weight cannot, in any optimum (complementary slackness). At a value
    of 1 none can: every unfixed type is then in every panel (one level, not one per type).
    """
    unfixed = np.isnan(fixed)
    return unfixed if value >= 1 - tol else unfixed & (duals > fix_tol)


def _relaxation_levels(pool: Pool, types: Types, fixed: np.ndarray, fix_tol: float,
                       deadline: float) -> list[dict[str, Any]] | None:
    """The LEXIMIN of the LP relaxation, level by level, fixing `fixed` in place; None if it stalls."""
    levels: list[dict[str, Any]] = []
    while np.isnan(fixed).any():
        if time.monotonic() > deadline:
            return None
        t = time.monotonic()
        z, duals = _relaxation_bound(pool, types, fixed)
        members = _level_members(fixed, duals, z, fix_tol, 1e-9)
        if not np.isfinite(z) or not members.any():
            return None
        fixed[members] = min(z, 1.0)
        levels.append({"level": len(levels) + 1, "upper_bound": min(z, 1.0), "iterations": 1,
                       "seconds": round(time.monotonic() - t, 3), "bound": "lp_relaxation", "types": members})
    return levels


def _solve_level(pool: Pool, types: Types, panels: list[np.ndarray], fixed: np.ndarray, gap_tol: float,
                 smoothing: float, start: float, time_limit: float, number: int) -> dict[str, Any]:
    """Column generation for one level until certified; appends the panels it generates."""
    level_start, iters, alpha = time.monotonic(), 0, smoothing
    center, best_ub = None, np.inf
    is_fixed = ~np.isnan(fixed)
    lp_bound, lp_weights = _relaxation_bound(pool, types, fixed)
    decomposed = False
    while True:
        iters += 1
        w, cap, value = _level_dual(panels, types, fixed, time_limit=time_limit - (time.monotonic() - start))
        if value < lp_bound - gap_tol and not decomposed:
            # Columns that reach the LP bound when the integer hull does: a decomposition of a central
            # point of the relaxation's optimal face (minutes of pricing saved on large pools).
            decomposed = True
            _add_new_panels(panels, _decompose_relaxation(pool, types, fixed, lp_bound - gap_tol / 10,
                                                          start + time_limit))
            w, cap, value = _level_dual(panels, types, fixed, time_limit=time_limit - (time.monotonic() - start))
        if value >= lp_bound - gap_tol:
            # The known panels reach the LP relaxation's bound, so the level is optimal; the
            # relaxation's duals are then optimal for the true problem too and safe for fixing.
            return {"level": number, "value": value, "upper_bound": lp_bound, "gap": max(lp_bound - value, 0.0),
                    "iterations": iters, "seconds": round(time.monotonic() - level_start, 3),
                    "bound": "lp_relaxation", "weights": lp_weights}
        smoothed = center is not None and alpha > 0 and best_ub - value > gap_tol
        w_price = alpha * center + (1 - alpha) * w if smoothed else w
        left = time_limit - (time.monotonic() - start)
        priced = best_panel(pool, types, w_price / types.sizes, time_limit=left)
        if priced is None:
            raise AssertionError("pricing infeasible although the pool is feasible")
        counts, best, bound, _ = priced
        ub = bound - float(np.nan_to_num(fixed[is_fixed]) @ w_price[is_fixed])
        if ub < best_ub:  # any convex combination of duals is dual feasible: its bound is valid
            best_ub, center = ub, w_price
        gap = bound - cap
        if not smoothed and gap <= gap_tol:
            break  # certified at the master's own dual, which is then optimal: safe for fixing types
        if left <= 0:
            raise LeximinNotConverged(
                f"LEXIMIN level {number} not certified within {time_limit:g}s "
                f"(value {value:.6f}, bound {min(best_ub, lp_bound):.6f}); raise --leximin-time-limit")
        improves = float(w @ (counts / types.sizes)) - cap > gap_tol / 10
        if improves and not any(np.array_equal(counts, p) for p in panels[-100:]):
            panels.append(counts)
        elif smoothed:
            alpha /= 2  # mispricing: move the pricing point towards the master's dual
        elif best - cap <= gap_tol:
            gap = best - cap  # the ILP's bound is loose, but no panel beats the master: certified by value
            break
        else:
            raise LeximinNotConverged(f"LEXIMIN level {number}: column generation stalled at gap {gap:.2e}")
    return {"level": number, "value": value, "upper_bound": value + max(gap, 0.0), "gap": max(gap, 0.0),
            "iterations": iters, "seconds": round(time.monotonic() - level_start, 3), "bound": "pricing_ilp",
            "weights": w}


def _relaxation_bound(pool: Pool, types: Types, fixed: np.ndarray, relax: float = 0.0) -> tuple[float, np.ndarray]:
    """Upper bound on a level from the LP relaxation of the quota polytope, and its duals per type.

    max z  s.t.  lo <= M'x <= hi, Σx = k, 0 <= x <= n, x_t >= z·n_t (unfixed), x_t >= p_t·n_t (fixed),
    where x are expected type counts. conv(feasible panels) lies inside this polytope, so z is an
    upper bound on the level's value.
    Types fixed at 0 (in no feasible panel) are held at 0. When the LP is infeasible, the fixed
    p_t sit a hair above what it can give (earlier levels hold only to the solver's tolerance):
    they are lowered by `relax`, from 1e-10 up to 1e-8; still infeasible gives an infinite bound.
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
                  bounds=[(0, s) for s in _type_caps(types, fixed)] + [(0, None)],
                  method="highs")
    if res.status == 2 and relax < 1e-8:
        return _relaxation_bound(pool, types, fixed, max(10 * relax, 1e-10))
    if res.status != 0:
        return np.inf, np.zeros(T)
    duals = -res.ineqlin.marginals[-T:]
    return float(-res.fun), np.where(is_fixed, 0.0, np.clip(duals, 0, None))


def _type_caps(types: Types, fixed: np.ndarray) -> np.ndarray:
    """Upper bound on each type's expected count: its size, or 0 for types that fit no feasible panel."""
    return np.where(fixed == 0, 0.0, types.sizes.astype(float))


def _quiet_highs():
    """A highspy model with logging off; its one-time banner goes to /dev/null, not our stdout."""
    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    h.setOptionValue("output_flag", False)
    return h


def _central_point(pool: Pool, types: Types, floor: np.ndarray, cap: np.ndarray) -> np.ndarray | None:
    """Expected type counts x in the relaxation with floor_t <= x_t <= cap_t, as central as an interior point gives."""
    T = len(types.sizes)
    lo, hi = pool.bounds
    h = _quiet_highs()
    h.setOptionValue("solver", "ipm")
    h.setOptionValue("run_crossover", "off")  # a vertex would sit on as many bounds as it can
    h.addVars(T, np.minimum(floor, cap), cap)
    h.addRow(pool.k, pool.k, T, np.arange(T, dtype=np.int32), np.ones(T))
    for c, row in enumerate(types.membership.T):
        idx = np.flatnonzero(row).astype(np.int32)
        h.addRow(float(lo[c]), float(hi[c]), len(idx), idx, np.ones(len(idx)))
    h.run()
    if h.modelStatusToString(h.getModelStatus()) != "Optimal":
        return None
    return np.clip(np.array(h.getSolution().col_value), 0, cap)


def _decompose_relaxation(pool: Pool, types: Types, fixed: np.ndarray, z: float, deadline: float,
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
    x = _central_point(pool, types, np.where(np.isnan(fixed), z, fixed) * n, _type_caps(types, fixed))
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
        got = best_panel(pool, types, x / n + 0.01 * rng.random(len(n)), time_limit=max(deadline - time.monotonic(), 1),
                         lo=qlo, hi=qhi, var_lo=np.where(atn, n, 0.0), var_hi=np.where(at0, 0.0, n), gap=0.5)
        if got is None:
            break
        c = got[0].astype(float)
        C = member @ c
        steps = [1.0]
        steps += list(x[c > 0] / c[c > 0])
        steps += list((n - x)[c < n] / (n - c)[c < n])
        steps += list((hi - X)[C < hi] / (hi - C)[C < hi])
        steps += list((X - lo)[C > lo] / (C - lo)[C > lo])
        lam = max(min(steps), 0.0)
        panels.append(got[0])
        if bar is not None:
            bar.update(1)
        if lam >= 1 - 1e-12:
            break
        x = np.clip((x - lam * c) / (1 - lam), 0, n)
        mass *= 1 - lam
    return panels


def _add_new_panels(panels: list[np.ndarray], new: list[np.ndarray]) -> None:
    """Append the panels of `new` that `panels` does not hold yet."""
    known = {p.tobytes() for p in panels}
    panels += [p for p in new if p.tobytes() not in known]


def _selectable(panels: list[np.ndarray], T: int) -> np.ndarray:
    return np.array(panels).sum(0) > 0 if panels else np.zeros(T, dtype=bool)


def _initial_panels(pool: Pool, types: Types, n_legacy: int = 0, seed: int = 0) -> list[np.ndarray]:
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
    while not covered.all():
        got = best_panel(pool, types, (~covered).astype(float) / types.sizes)
        if got is None:
            raise DLMError(f"{pool.config.path}: the quotas are infeasible for this pool; run the feasibility check")
        counts = got[0]
        if not (counts[~covered] > 0).any():
            break  # the remaining types appear in no feasible panel
        panels.append(counts)
        covered |= counts > 0
    unique = {p.tobytes(): p for p in panels}
    return list(unique.values())


def _level_dual(panels: list[np.ndarray], types: Types, fixed: np.ndarray, relax: float = 0.0,
                time_limit: float | None = None) -> tuple[np.ndarray, float, float]:
    """Restricted dual LP of one LEXIMIN level: weights w (T), cap ŷ and the level value.

    min ŷ - Σ_fixed p_t w_t  s.t.  Σ_t w_t c_{C,t}/n_t <= ŷ for known panels C,  Σ_unfixed w = 1,  w >= 0.
    When it is unbounded, the fixed p_t sit a hair above what the panels give (an earlier level's
    value is exact only to the solver's feasibility tolerance): they are lowered by `relax`,
    from 1e-9 up to 1e-7, which stays within the certified tolerance.
    """
    T = len(types.sizes)
    is_fixed = ~np.isnan(fixed)
    P = np.array(panels, dtype=float) / types.sizes
    c = np.r_[np.where(is_fixed, -np.maximum(np.nan_to_num(fixed) - relax, 0.0), 0.0), 1.0]
    A_ub = np.hstack([P, -np.ones((len(panels), 1))])
    A_eq = np.r_[(~is_fixed).astype(float), 0.0][None, :]
    res = linprog(c, A_ub=A_ub, b_ub=np.zeros(len(panels)), A_eq=A_eq, b_eq=[1.0],
                  bounds=[(0, None)] * T + [(None, None)], method="highs",
                  options={} if time_limit is None else {"time_limit": max(time_limit, 1.0)})
    if res.status == 1:
        raise LeximinNotConverged("LEXIMIN: the restricted master LP ran out of the time limit; "
                                  "raise --leximin-time-limit")
    if res.status == 3 and relax < 1e-7:
        return _level_dual(panels, types, fixed, max(10 * relax, 1e-9), time_limit)
    if res.status != 0:
        raise AssertionError(f"LEXIMIN dual LP failed: {res.message}")
    return res.x[:T], float(res.x[T]), float(res.fun)


def _final_primal(panels: list[np.ndarray], types: Types, fixed: np.ndarray) -> tuple[np.ndarray, float]:
    """Panel probabilities giving every type at least its fixed probability (minimal slack ε)."""
    P = np.array(panels, dtype=float) / types.sizes  # (m, T)
    m = len(panels)
    target = np.nan_to_num(fixed, nan=0.0)
    c = np.r_[np.zeros(m), 1.0]
    A_ub = np.hstack([-P.T, -np.ones((P.shape[1], 1))])
    res = linprog(c, A_ub=A_ub, b_ub=-target, A_eq=np.r_[np.ones(m), 0.0][None, :], b_eq=[1.0],
                  bounds=[(0, None)] * (m + 1), method="highs")
    if res.status != 0:
        raise AssertionError(f"LEXIMIN final LP failed: {res.message}")
    weights = np.clip(res.x[:m], 0, None)
    return weights / weights.sum(), float(res.x[m])


# ----------------------------------------------------------------------------- one entry point


@dataclass
class Selection:
    """Selection probabilities for every pool member, optionally one drawn panel, and diagnostics."""

    pool: Pool
    algorithm: str
    probabilities: pd.DataFrame  # user_id, probability[, stderr]
    panel: list[str] | None
    diagnostics: dict[str, Any]


def select(pool: Pool, algorithm: str = "legacy", n_samples: int = 2000, seed: int = 0,
           leximin_time_limit: float = 600.0, draw_panel: bool = True, progress: bool = False) -> Selection:
    """Selection probabilities (Monte Carlo for legacy/random, exact for leximin) and one panel.

    The one drawn panel uses `seed` too: for legacy/random it is the first Monte Carlo panel.
    """
    if algorithm not in ALGORITHMS:
        raise DLMError(f"unknown algorithm '{algorithm}'; use one of {', '.join(ALGORITHMS)}")
    if n_samples < 1:
        raise DLMError(f"--num-panel-samples must be at least 1, got {n_samples}")
    require_feasible(pool)
    diag: dict[str, Any] = {"algorithm": algorithm, "seed": seed, "pool": pool.report}
    if algorithm == "leximin":
        lex = leximin(pool, time_limit=leximin_time_limit, progress=progress)
        p = lex.probabilities()
        probs = pd.DataFrame({"user_id": pool.user_ids, "probability": p})
        panel_idx = lex.draw(seed) if draw_panel else None
        diag.update(leximin_method=lex.method, leximin_seconds=lex.seconds, levels=lex.levels,
                    final_primal_slack=lex.primal_slack, panels_in_support=int((lex.weights > 1e-12).sum()),
                    types=len(lex.types.sizes))
    else:
        draw = legacy_panels if algorithm == "legacy" else random_panels
        mc = draw(pool, n_samples, seed, progress=progress)
        p, se = mc.probabilities(pool.n)
        probs = pd.DataFrame({"user_id": pool.user_ids, "probability": p, "stderr": se})
        panel_idx = np.sort(mc.panels[0]) if draw_panel else None
        diag.update(n_samples=n_samples, attempts=mc.attempts, failures=mc.failures, failure_rate=mc.failure_rate,
                    zero_probability_people=int((p == 0).sum()))
    diag["summary"] = probability_summary(probs["probability"].to_numpy(), pool.k)
    panel = [str(u) for u in pool.user_ids[panel_idx]] if panel_idx is not None else None
    return Selection(pool, algorithm, probs, panel, diag)


def probability_summary(p: np.ndarray, k: int) -> dict[str, float]:
    """min / max / mean / Gini of selection probabilities, and Σπ (which must equal k)."""
    return {"min": float(p.min()), "max": float(p.max()), "mean": float(p.mean()), "gini": gini(p),
            "sum": float(p.sum()), "panel_size": k}


def gini(x: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 = all equal)."""
    x = np.sort(np.asarray(x, dtype=float))
    if x.sum() == 0:
        return 0.0
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def composition(pool: Pool, probabilities: np.ndarray | None = None, panel: list[str] | None = None) -> pd.DataFrame:
    """Per attribute and category: target share, quota range, pool share, expected (Σπ/k) and panel share."""
    M = pool.membership
    lo, hi = pool.bounds
    rows = []
    panel_mask = np.isin(pool.user_ids, panel) if panel is not None else None
    for c, (attr_name, cat) in enumerate(pool.category_labels):
        attr = next(a for a in pool.config.attributes if a.name == attr_name)
        row = {"attribute": attr_name, "category": cat,
               "target": (attr.proportions or {}).get(cat, np.nan), "min": int(lo[c]), "max": int(hi[c]),
               "pool_count": int(M[:, c].sum()), "pool_share": float(M[:, c].mean())}
        if probabilities is not None:
            row["expected_share"] = float(probabilities[M[:, c]].sum() / pool.k)
        if panel_mask is not None:
            row["panel_count"] = int((M[:, c] & panel_mask).sum())
            row["panel_share"] = row["panel_count"] / pool.k
        rows.append(row)
    return pd.DataFrame(rows)




def write_selection(sel: Selection, output: str | Path, panel_output: str | Path | None = None,
                    inputs: list[str | Path] = (), n_samples: int | None = None) -> None:
    """Write `user_id,probability[,stderr]` CSV, optionally the drawn panel, and a manifest (atomically)."""
    with atomic_path(output) as tmp:
        sel.probabilities.to_csv(tmp, index=False, float_format="%.10g")
    if panel_output and sel.panel is not None:
        with atomic_path(panel_output) as tmp:
            tmp.write_text("user_id\n" + "".join(f"{u}\n" for u in sel.panel), encoding="utf-8")
    write_json_atomic(f"{output}.manifest.json", manifest(
        "sortition", config=sel.pool.config.raw, seed=sel.diagnostics["seed"], inputs=list(inputs),
        algorithm=sel.algorithm, num_panel_samples=n_samples, diagnostics=sel.diagnostics))
