"""LEGACY (the Sortition Foundation's greedy) and uniform rejection sampling, as Monte Carlo over panels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlm.errors import DLMError
from dlm.io import Progress, progress_bar
from dlm.sortition.pool import Pool


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


LEGACY_VARIANTS = ("stratification-app", "clamped")


def legacy_panels(pool: Pool, n_panels: int, seed: int, batch: int = 1000, max_attempts_factor: int = 100,
                  progress: Progress = False, variant: str = "stratification-app") -> MonteCarlo:
    """Draw `n_panels` successful LEGACY panels (failed draws are retried with fresh randomness).

    variant "stratification-app" ranks categories by (min - selected) / remaining as the
    Sortition Foundation's stratification-app does (the ratio goes negative once a minimum is
    met); "clamped" floors that ratio at 0 as the `sortition-algorithms` library does, which
    changes the distribution (see docs/sortition.md).
    """
    if variant not in LEGACY_VARIANTS:
        raise DLMError(f"unknown LEGACY variant '{variant}'; use one of {', '.join(LEGACY_VARIANTS)}")
    rng = np.random.default_rng(seed)
    M = pool.membership
    lo, hi = pool.bounds
    found: list[np.ndarray] = []
    attempts = failures = 0
    bar = progress_bar(n_panels, "LEGACY panels", progress)
    while sum(len(f) for f in found) < n_panels:
        # A greedy that has never succeeded in 1,000 draws will not: stop long before the attempt budget.
        if attempts > max_attempts_factor * n_panels or (failures == attempts >= 1000):
            raise DLMError(f"{pool.config.path}: LEGACY failed {failures} of {attempts} draws; the quotas are too "
                           "tight for the greedy (try leximin, or loosen them)")
        size = min(batch, max(n_panels - sum(len(f) for f in found), 64))
        panels = _legacy_batch(M, lo, hi, pool.k, size, rng, variant == "clamped")
        attempts += size
        failures += size - len(panels)
        found.append(panels)
        bar.update(len(panels))
    bar.close()
    return MonteCarlo(np.concatenate(found)[:n_panels], attempts, failures)


def _legacy_batch(M: np.ndarray, lo: np.ndarray, hi: np.ndarray, k: int, P: int,
                  rng: np.random.Generator, clamp: bool = False) -> np.ndarray:
    """Run the greedy for P panels at once; return the (S, k) picks of the S runs that succeeded.

    Runs that fail are dropped from the working arrays as soon as they fail (their picks would
    be discarded anyway), so a batch gets cheaper as it goes, and ends early when all have failed.
    Counts are integer products (numpy does them without BLAS): a multithreaded BLAS burnt 5x
    the CPU of one thread on these thin products and gave nothing back.
    """
    n, C = M.shape
    block = 64  # people are searched in blocks: count per block, then within the chosen block
    n_pad = -(-n // block) * block
    small = np.int16 if n_pad < 32_000 else np.int32
    Mp = np.zeros((n_pad, C), dtype=bool)
    Mp[:n] = M
    Mi = Mp.astype(np.int32)
    MT = np.ascontiguousarray(Mp.T)
    alive = np.zeros((P, n_pad), dtype=bool)
    alive[:, :n] = True
    alive[:, (Mp & (hi == 0)).any(1)] = False  # a category with max 0 is closed from the start
    remaining = np.tile(alive[0].astype(np.int32) @ Mi, (P, 1))  # every run starts from the same pool
    selected = np.zeros((P, C), dtype=np.int32)
    closed = np.tile(hi == 0, (P, 1))
    picks = np.zeros((P, k), dtype=np.int64)
    for step in range(k):
        need = np.maximum(lo - selected, 0) if clamp else lo - selected
        ok = ~((need > 0) & (remaining < need)).any(1)
        open_ = (remaining > 0) & ~closed
        ratio = np.where(open_, need / np.maximum(remaining, 1), -np.inf)
        ok &= open_.any(1) & ~(ratio > 1).any(1)
        if not ok.all():
            alive, remaining, selected, closed, picks = alive[ok], remaining[ok], selected[ok], closed[ok], picks[ok]
            ratio = ratio[ok]
            if not ok.any():
                return picks
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
            remaining[hit] -= gone.astype(np.int32) @ Mi
            alive[hit] &= ~gone
            closed |= full
    ok = ((selected >= lo) & (selected <= hi)).all(1)
    return picks[ok]


def random_panels(pool: Pool, n_panels: int, seed: int, max_draws: int = 5_000_000,
                  progress: Progress = False) -> MonteCarlo:
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
