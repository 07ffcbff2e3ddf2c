"""The clause-clustered bootstrap: resampling weights and the intervals built from replicates.

Questions are sampled within clauses and a clause's rankings share its difficulty, so whole clauses
are resampled with replacement (all rankings of a drawn clause enter with the clause's count).
Continuous estimates get t intervals, estimate ± t_{G−1} · SE, where SE is the bootstrap SD inflated
by √(G/(G−1)): the bootstrap variance of a mean over G clusters is (G−1)/G of the usual unbiased
one, which matters with 25 clauses. Ranks are discrete and get percentile intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval."""

    estimate: float
    low: float
    high: float


def clause_weights(clause: np.ndarray, n_clauses: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) weight of each ranking in each replicate: its clause's draw count."""
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_clauses, np.full(n_clauses, 1.0 / n_clauses), size=n_boot)
    return counts[:, clause].astype(float)


def t_interval(estimate: np.ndarray, replicates: np.ndarray, n_clusters: int, level: float,
               bounds: tuple[float, float] = (-np.inf, np.inf)) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap-SE t intervals (G − 1 df) around `estimate`, replicates along axis 0, clipped to `bounds`."""
    se = np.nanstd(replicates, axis=0, ddof=1) * np.sqrt(n_clusters / max(n_clusters - 1, 1))
    t = sps.t.ppf(0.5 + level / 2, max(n_clusters - 1, 1))
    return np.clip(estimate - t * se, *bounds), np.clip(estimate + t * se, *bounds)


def percentile_interval(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile intervals of replicates along axis 0."""
    alpha = (1 - level) / 2
    return np.nanquantile(replicates, alpha, axis=0), np.nanquantile(replicates, 1 - alpha, axis=0)
