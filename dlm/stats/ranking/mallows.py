"""The Mallows model with Kendall distance, and its held-out likelihood against Plackett–Luce.

Mallows (1957): P(π) = exp(−θ · d(π, π₀)) / Z(θ), with d the Kendall distance (pairs in opposite
order) and Z(θ) = Π_{j=1..m} (1 − e^{−jθ}) / (1 − e^{−θ}). The MLE of the consensus π₀ is the Kemeny
order whatever θ, and θ's MLE solves E_θ[d] = mean distance, where
E_θ[d] = m e^{−θ}/(1 − e^{−θ}) − Σ_{j=1..m} j e^{−jθ}/(1 − e^{−jθ}) (Fligner & Verducci 1986).
θ ≥ 0 (0 is the uniform distribution); a mean distance of 0 would give θ = ∞, so θ is capped at
THETA_MAX. Only rankings of every model enter; a tied pair counts ½ in d, which makes the estimating
equation a moment match rather than an exact likelihood for tied data.

Held-out comparison: clauses are split into seeded folds; on each, both models are fitted on the
other folds and scored on the held-out strict rankings of every model (both are then proper
distributions over the m! orders, so their log-likelihoods compare directly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from dlm.stats.ranking import plackett_luce as pl
from dlm.stats.ranking.aggregate import pairwise_counts
from dlm.stats.ranking.kemeny import kemeny
from dlm.stats.ranking.records import RankingData, RankingError

THETA_MAX = 10.0  # e^{-10} per discordant pair: a judge that never deviates from the consensus


@dataclass(frozen=True)
class MallowsFit:
    """Consensus order (model indices), dispersion θ, the mean distance it matches and how the consensus was found."""

    consensus: tuple[int, ...]
    theta: float
    mean_distance: float
    n_rankings: int
    method: str


@dataclass(frozen=True)
class HeldOut:
    """Summed held-out log-likelihoods of Mallows and Plackett–Luce on the same strict rankings."""

    mallows: float
    plackett_luce: float
    n_rankings: int
    folds: int


def expected_distance(theta: float, m: int) -> float:
    """E_θ[d] under Mallows with m items."""
    if theta <= 0:
        return m * (m - 1) / 4
    j = np.arange(1, m + 1)
    return float(m * np.exp(-theta) / -np.expm1(-theta) - (j * np.exp(-j * theta) / -np.expm1(-j * theta)).sum())


def log_normaliser(theta: float, m: int) -> float:
    """log Z(θ) for m items (log m! at θ = 0)."""
    j = np.arange(1, m + 1)
    if theta <= 0:
        return float(np.log(j).sum())
    return float((np.log(-np.expm1(-j * theta)) - np.log(-np.expm1(-theta))).sum())


def kendall_distances(levels: np.ndarray, consensus: tuple[int, ...]) -> np.ndarray:
    """(n,) Kendall distance of each ranking from the consensus order; tied pairs count ½."""
    lv = levels[:, list(consensus)]
    m = lv.shape[1]
    later = np.triu(np.ones((m, m), bool), 1)
    discordant = (lv[:, :, None] > lv[:, None, :]) & later
    tied = (lv[:, :, None] == lv[:, None, :]) & later
    return discordant.sum((1, 2)) + 0.5 * tied.sum((1, 2))


def fit_theta(mean_distance: float, m: int) -> float:
    """θ solving E_θ[d] = mean_distance, within [0, THETA_MAX]."""
    if mean_distance >= expected_distance(0.0, m):
        return 0.0
    if mean_distance <= expected_distance(THETA_MAX, m):
        return THETA_MAX
    return float(brentq(lambda t: expected_distance(t, m) - mean_distance, 1e-9, THETA_MAX, xtol=1e-12))


def fit(data: RankingData, weights: np.ndarray | None = None) -> MallowsFit:
    """Mallows fit on the rankings of every model (optionally weighted)."""
    complete = (data.levels >= 0).all(1)
    w = np.ones(data.n) if weights is None else np.asarray(weights, float)
    w = np.where(complete, w, 0.0)
    if w.sum() <= 0:
        raise RankingError("Mallows needs rankings of every model; none rank all of them")
    above, tied = pairwise_counts(data, w[None])
    consensus = kemeny(above[0], tied[0])
    distance = float((w * kendall_distances(data.levels, consensus.order)).sum() / w.sum())
    return MallowsFit(consensus.order, fit_theta(distance, data.m), distance, int(complete.sum()), consensus.method)


def loglik(data: RankingData, model: MallowsFit) -> np.ndarray:
    """Log-probability of each ranking under a Mallows fit (meaningful for strict rankings of every model)."""
    return -model.theta * kendall_distances(data.levels, model.consensus) - log_normaliser(model.theta, data.m)


def held_out(data: RankingData, folds: int = 5, seed: int = 0) -> HeldOut:
    """Cross-validated log-likelihoods of Mallows and Plackett–Luce, folds made of whole clauses."""
    n_clauses = len(data.clauses)
    folds = min(folds, n_clauses)
    if folds < 2:
        raise RankingError("held-out likelihood needs at least two clauses")
    fold_of_clause = np.random.default_rng(seed).permutation(n_clauses) % folds
    fold = fold_of_clause[data.clause]
    scored = (data.levels >= 0).all(1) & (np.sort(data.levels, 1) == np.arange(data.m)).all(1)
    total_mallows = total_pl = 0.0
    n_scored = 0
    for f in range(folds):
        train, test = fold != f, (fold == f) & scored
        if not test.any() or not ((data.levels >= 0).all(1) & train).any():
            continue
        theta, _ = pl.fit_many(data, train[None].astype(float))
        test_data = data.subset(np.flatnonzero(test))
        total_pl += float(pl.ranking_loglik(test_data, theta[0]).sum())
        total_mallows += float(loglik(test_data, fit(data, train.astype(float))).sum())
        n_scored += test_data.n
    return HeldOut(total_mallows, total_pl, n_scored, folds)
