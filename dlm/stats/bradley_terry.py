"""Bradley–Terry ratings by maximum likelihood, with cluster-robust intervals.

Each judged question is a Bernoulli-like outcome y ∈ {1, ½, 0} (a tie is half a win each way)
with P(a beats b) = σ(θ_a − θ_b); the log-likelihood Σ y·log σ(θ_a − θ_b) + (1 − y)·log σ(θ_b − θ_a)
is concave and maximised by Newton's method (step halving; the ratings are centred to mean 0).

The MLE exists exactly when the "beats" graph (an edge a → b when a has any win or tie against b)
is strongly connected (Zermelo 1929; Ford 1957). Where it is not (a model that wins or loses
every comparison), a weak N(0, PRIOR_SD²) prior on each log-strength makes the fit a finite MAP
estimate that keeps the order of the models; `prior_used` says so. Ratings are the same whatever
the iteration limit, because Newton converges to the unique optimum in a few steps.

Intervals use the same reasoning as the win rates: questions are sampled within clauses, so the
score contributions are summed per clause and the sandwich H⁻¹ (G/(G−1) Σ_g s_g s_gᵀ) H⁻¹ gives
cluster-robust standard errors; intervals are t with G − 1 df.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

# SD of the weak prior on log-strengths used only where the MLE does not exist: ±2 SD spans a
# log-odds difference of 8 between two models (a 99.97% win probability), so it binds only when
# the data say "infinitely better".
PRIOR_SD = 2.0


@dataclass(frozen=True)
class BTFit:
    """Centred log-strengths, their cluster-robust standard errors, and whether the prior was needed."""

    rating: np.ndarray
    se: np.ndarray
    prior_used: bool
    iterations: int


def mle_exists(a: np.ndarray, b: np.ndarray, y: np.ndarray, k: int) -> bool:
    """Whether the graph 'i has some win or tie against j' over k models is strongly connected."""
    src = np.concatenate([a[y > 0], b[y < 1]])
    dst = np.concatenate([b[y > 0], a[y < 1]])
    graph = csr_matrix((np.ones(len(src)), (src, dst)), shape=(k, k))
    return connected_components(graph, directed=True, connection="strong")[0] == 1


def fit(a: np.ndarray, b: np.ndarray, y: np.ndarray, k: int, clusters: np.ndarray | None = None,
        max_iter: int = 100, prior_sd: float | None = None) -> BTFit:
    """Bradley–Terry fit of outcomes y (1: a wins, ½: tie, 0: b wins) between model indices a and b.

    Args:
        clusters: cluster label per outcome (clauses), for the standard errors; NaN without.
        prior_sd: force a N(0, prior_sd²) prior; default: none where the MLE exists, else PRIOR_SD.
    """
    a, b, y = np.asarray(a, int), np.asarray(b, int), np.asarray(y, float)
    if prior_sd is None and not mle_exists(a, b, y, k):
        prior_sd = PRIOR_SD
    precision = 0.0 if prior_sd is None else 1.0 / prior_sd**2
    theta = np.zeros(k)
    # Reduced parameterisation (θ_0 = 0) keeps the Hessian invertible without a prior.
    free = np.arange(1, k) if precision == 0 else np.arange(k)
    iterations = 0
    for iterations in range(1, max_iter + 1):
        grad, hess = _grad_hess(theta, a, b, y, k, precision)
        step = np.zeros(k)
        step[free] = np.linalg.solve(hess[np.ix_(free, free)], grad[free])
        objective = _loglik(theta, a, b, y, precision)
        scale = 1.0
        while _loglik(theta + scale * step, a, b, y, precision) < objective - 1e-12 and scale > 1e-8:
            scale /= 2
        theta = theta + scale * step
        if np.abs(scale * step).max() < 1e-12:
            break
    rating = theta - theta.mean()
    se = _cluster_se(theta, a, b, y, k, clusters, precision, free)
    return BTFit(rating, se, prior_sd is not None, iterations)


def _loglik(theta, a, b, y, precision) -> float:
    d = theta[a] - theta[b]
    return float((y * -np.logaddexp(0, -d) + (1 - y) * -np.logaddexp(0, d)).sum() - precision * (theta**2).sum() / 2)


def _grad_hess(theta, a, b, y, k, precision) -> tuple[np.ndarray, np.ndarray]:
    p = 1 / (1 + np.exp(-(theta[a] - theta[b])))
    r, w = y - p, p * (1 - p)
    grad = np.bincount(a, r, k) - np.bincount(b, r, k) - precision * theta
    hess = np.zeros((k, k))
    np.add.at(hess, (a, b), w)
    np.add.at(hess, (b, a), w)
    hess = np.diag(hess.sum(1)) - hess + precision * np.eye(k)  # negative Hessian of the log-likelihood
    return grad, hess


def _cluster_se(theta, a, b, y, k, clusters, precision, free) -> np.ndarray:
    if clusters is None:
        return np.full(k, np.nan)
    labels, g = np.unique(clusters, return_inverse=True)
    G = len(labels)
    if G < 2:
        return np.full(k, np.nan)
    p = 1 / (1 + np.exp(-(theta[a] - theta[b])))
    r = y - p
    scores = np.zeros((G, k))
    np.add.at(scores, (g, a), r)
    np.add.at(scores, (g, b), -r)
    scores[:, :] -= precision * theta / G  # the prior's share of each cluster's score (0 without a prior)
    _, hess = _grad_hess(theta, a, b, y, k, precision)
    bread = np.zeros((k, k))
    bread[np.ix_(free, free)] = np.linalg.inv(hess[np.ix_(free, free)])
    meat = G / (G - 1) * scores.T @ scores
    cov = bread @ meat @ bread
    centre = np.eye(k) - 1.0 / k  # ratings are centred: θ − mean(θ)
    cov = centre @ cov @ centre.T
    return np.sqrt(np.clip(np.diag(cov), 0, None))


def intervals(result: BTFit, clusters: int, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """t intervals with clusters − 1 df around the ratings."""
    t = sps.t.ppf(0.5 + level / 2, clusters - 1) if clusters >= 2 else np.nan
    return result.rating - t * result.se, result.rating + t * result.se
