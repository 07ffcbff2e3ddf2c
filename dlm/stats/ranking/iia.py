"""Hausman–McFadden test of Plackett–Luce's independence of irrelevant alternatives, one dropped model at a time.

Under Plackett–Luce the rankings with one model struck out are again Plackett–Luce with the same
worths for the models left (IIA). The test (Hausman & McFadden 1984) fits the worths twice: on the
full rankings (θ_f) and on the rankings restricted to the remaining models (θ_r), and compares the
remaining models' log-worth contrasts against a reference model (q = m − 2 of them):
W = (φ_r − φ_f)ᵀ V⁻¹ (φ_r − φ_f).

Covariance: Hausman's V_r − V_f assumes the full fit is efficient, which clustered rankings break, and
can fail to be positive definite. We use the cluster-robust covariance of the difference instead:
both estimators are M-estimators on the same clauses, so each clause's influence on the difference is
H_r⁻¹ s_{r,g} − H_f⁻¹ s_{f,g} (scores s summed per clause, H the negative Hessian), and
V = G/(G−1) Σ_g D_g D_gᵀ. With G clauses that covariance is estimated from G points, so the p-value
uses the Hotelling small-sample form F = W (G − q) / (q (G − 1)) ~ F(q, G − q) rather than χ²_q.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from dlm.stats.ranking import plackett_luce as pl
from dlm.stats.ranking.records import RankingData, drop_model


@dataclass(frozen=True)
class IIATest:
    """The test for one dropped model: Wald statistic, its df, the p-value, and whether a prior was needed."""

    dropped: int
    statistic: float
    df: int
    p_value: float
    prior_used: bool


def _influence(data: RankingData, theta: np.ndarray, free: np.ndarray) -> np.ndarray:
    """(G, len(free)) per-clause influence on the free log-worths, the others held fixed."""
    scores, neg_hess = pl.cluster_scores(data, theta)
    return scores[:, free] @ np.linalg.inv(neg_hess[np.ix_(free, free)])


def hausman_mcfadden(data: RankingData, dropped: int, theta_full: np.ndarray | None = None) -> IIATest:
    """IIA test dropping model `dropped` (a column of `data`)."""
    if theta_full is None:
        theta_full, full_prior = pl.fit(data)
    else:
        full_prior = not bool(pl.mle_exists(data.levels, np.ones((1, data.n)))[0])
    restricted = drop_model(data, dropped)
    theta_r, restricted_prior = pl.fit(restricted)
    shown = (data.levels >= 0).any(0)
    remaining = np.flatnonzero(shown & (np.arange(data.m) != dropped))
    q = len(remaining) - 1
    n_clauses = len(data.clauses)
    if full_prior or restricted_prior or q < 1 or n_clauses <= q:
        return IIATest(dropped, float("nan"), q, float("nan"), full_prior or restricted_prior)
    ref, contrast = remaining[0], remaining[1:]
    phi_f = theta_full[contrast] - theta_full[ref]
    phi_r = theta_r[contrast] - theta_r[ref]
    free_f = np.flatnonzero(shown & (np.arange(data.m) != ref))
    influence_f = _influence(data, theta_full, free_f)[:, np.searchsorted(free_f, contrast)]
    influence_r = _influence(restricted, theta_r, contrast)
    diff = influence_r - influence_f
    diff = diff - diff.mean(0)
    cov = n_clauses / (n_clauses - 1) * diff.T @ diff
    gap = phi_r - phi_f
    wald = float(gap @ np.linalg.pinv(cov) @ gap)
    f_stat = wald * (n_clauses - q) / (q * (n_clauses - 1))
    return IIATest(dropped, wald, q, float(sps.f.sf(f_stat, q, n_clauses - q)), False)


def iia_tests(data: RankingData) -> list[IIATest]:
    """The test for every model in turn."""
    theta, _ = pl.fit(data)
    return [hausman_mcfadden(data, k, theta) for k in range(data.m)]
