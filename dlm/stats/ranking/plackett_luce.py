"""Plackett–Luce worths by maximum likelihood (Newton's method), vectorised over bootstrap weightings.

A ranking is read as a sequence of choices: the best group is chosen from every model shown, the
next from those left, and so on, with P(i chosen from R) = w_i / Σ_{j∈R} w_j. Ties use Breslow's
rule (as in Cox regression): every member of a tied group of size d is "chosen" from the same set R,
each contributing w_i / (Σ_R w)^{1}, so the group contributes Π_{i∈D} w_i / (Σ_R w)^d. For strict
rankings this is the exact Plackett–Luce likelihood; with ties it is concave, keeps Hunter's (2004)
existence condition, and treats a tie as "each beat the rest, neither beat the other".

Log-worths θ = log w are centred to mean 0 (worths have geometric mean 1). The MLE exists exactly when
the graph "i was ranked level with or above j in some ranking" is strongly connected (Hunter 2004,
Assumption 1). Where it is not (a model always first or always last), a weak N(0, PRIOR_SD²) prior on
each log-worth makes the fit a finite MAP estimate that keeps the order; `prior_used` says so. The
decision is taken per fit, so a bootstrap replicate in which the MLE fails gets the prior too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix

from dlm.stats.ranking.records import RankingData

# SD of the weak prior on log-worths, used only where the MLE does not exist: ±2 SD spans a worth
# ratio of e^8 ≈ 3,000 between two models, so it binds only when the data say "infinitely better".
PRIOR_SD = 2.0
# Bound on bootstrap replicates × stages × models held in memory at once (floats).
CHUNK = 4_000_000


@dataclass(frozen=True)
class Stages:
    """The choice stages of every ranking: who could be chosen, who was, and from which ranking."""

    risk: np.ndarray  # (S, m) float 0/1: models still unranked at the stage
    win: np.ndarray  # (S, m) float 0/1: models in the group chosen at the stage
    size: np.ndarray  # (S,) number chosen (1 unless tied)
    ranking: np.ndarray  # (S,) row of the ranking the stage belongs to


def stages(levels: np.ndarray) -> Stages:
    """Choice stages from a (n, m) level matrix (-1 absent); single-model final stages are dropped."""
    risk, win, rows = [], [], []
    for g in range(int(levels.max(initial=-1)) + 1):
        r = levels >= g
        w = levels == g
        keep = (r.sum(1) > 1) & w.any(1)  # choosing the last model from itself carries no information
        risk.append(r[keep])
        win.append(w[keep])
        rows.append(np.flatnonzero(keep))
    risk_a, win_a = np.concatenate(risk).astype(float), np.concatenate(win).astype(float)
    return Stages(risk_a, win_a, win_a.sum(1), np.concatenate(rows))


def mle_exists(levels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per weighting (B, n): whether the 'ranked level with or above' graph over present models is strongly connected."""
    n, m = levels.shape
    present = levels >= 0
    above = (levels[:, :, None] <= levels[:, None, :]) & present[:, :, None] & present[:, None, :]
    edges = (weights @ above.reshape(n, m * m).astype(float)).reshape(-1, m, m) > 0
    reach = edges | np.eye(m, dtype=bool)
    for _ in range(int(np.ceil(np.log2(max(m, 2)))) + 1):
        reach = (reach.astype(float) @ reach.astype(float)) > 0
    used = (weights @ present.astype(float)) > 0  # models absent from a replicate are not required
    ok = reach | ~used[:, :, None] | ~used[:, None, :]
    return ok.all(axis=(1, 2))


def _terms(theta: np.ndarray, risk: np.ndarray, won: np.ndarray, chosen: np.ndarray, precision: np.ndarray,
           need_hess: bool):
    """Log-likelihood, gradient and (optionally) negative Hessian for a chunk of weightings.

    `risk` (U, m) holds the distinct choice sets, `chosen` (B, U) the weighted number of models chosen
    from each, and `won` (B, m) each model's weighted number of choices: the likelihood depends on the
    stages only through these, so repeated choice sets are computed once.
    """
    shift = theta.max(1, keepdims=True)
    e = np.exp(theta - shift)[:, None, :] * risk[None]  # (B, U, m)
    den = e.sum(-1)
    p = e / den[..., None]
    ll = (theta * won).sum(1) - (chosen * (np.log(den) + shift)).sum(1) - 0.5 * precision * (theta**2).sum(1)
    grad = won - np.einsum("bu,bui->bi", chosen, p) - precision[:, None] * theta
    if not need_hess:
        return ll, grad, None
    pw = p * chosen[..., None]
    neg_hess = -np.matmul(pw.transpose(0, 2, 1), p)
    idx = np.arange(theta.shape[1])
    neg_hess[:, idx, idx] += pw.sum(1) + precision[:, None]
    return ll, grad, neg_hess


def _newton(risk: np.ndarray, won: np.ndarray, chosen: np.ndarray, precision: np.ndarray, active: np.ndarray,
            max_iter: int) -> np.ndarray:
    b, m = won.shape
    theta = np.zeros((b, m))
    # Without a prior the likelihood is flat along θ + t·1; adding 11ᵀ to the Hessian fixes that
    # direction (the gradient sums to 0, so the step stays centred). Models absent from a weighting
    # have a zero row; a unit diagonal keeps them at 0.
    flat = (precision == 0)[:, None, None] * (active[:, :, None] & active[:, None, :])
    idx = np.arange(m)
    for _ in range(max_iter):
        ll, grad, neg_hess = _terms(theta, risk, won, chosen, precision, True)
        neg_hess = neg_hess + flat
        neg_hess[:, idx, idx] += ~active
        step = np.linalg.solve(neg_hess, grad[..., None])[..., 0] * active
        scale = np.ones(b)
        for _ in range(30):
            trial = _terms(theta + scale[:, None] * step, risk, won, chosen, precision, False)[0]
            worse = trial < ll - 1e-10
            if not worse.any():
                break
            scale[worse] /= 2
        theta = theta + scale[:, None] * step
        if np.abs(scale[:, None] * step).max() < 1e-9:
            break
    return theta


def fit_many(data: RankingData, weights: np.ndarray, prior_sd: float | None = None,
             max_iter: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Log-worths (B, m), centred over present models, and whether each fit needed the prior.

    Args:
        weights: (B, n) non-negative weight of each ranking in each fit (bootstrap counts, or ones).
        prior_sd: force a N(0, prior_sd²) prior on every fit; default: only where the MLE does not exist.
    """
    weights = np.atleast_2d(np.asarray(weights, float))
    st = stages(data.levels)
    if prior_sd is None:
        prior_used = ~mle_exists(data.levels, weights)
        precision = np.where(prior_used, 1.0 / PRIOR_SD**2, 0.0)
    else:
        prior_used = np.ones(weights.shape[0], bool)
        precision = np.full(weights.shape[0], 1.0 / prior_sd**2)
    active = (weights @ (data.levels >= 0).astype(float)) > 0
    risk, which = np.unique(st.risk, axis=0, return_inverse=True)
    # (n, U): how many models each ranking chooses from each distinct choice set.
    chosen_by_ranking = coo_matrix((st.size, (st.ranking, which.ravel())), shape=(data.n, len(risk))).tocsr()
    won_by_ranking = np.zeros((data.n, data.m))
    np.add.at(won_by_ranking, st.ranking, st.win)
    chosen = np.asarray((chosen_by_ranking.T @ weights.T).T)
    won = weights @ won_by_ranking
    per_chunk = max(1, CHUNK // max(1, risk.size))
    theta = np.zeros((weights.shape[0], data.m))
    for lo in range(0, weights.shape[0], per_chunk):
        sl = slice(lo, lo + per_chunk)
        theta[sl] = _newton(risk, won[sl], chosen[sl], precision[sl], active[sl], max_iter)
    centre = (theta * active).sum(1, keepdims=True) / np.maximum(active.sum(1, keepdims=True), 1)
    return np.where(active, theta - centre, np.nan), prior_used


def fit(data: RankingData, prior_sd: float | None = None) -> tuple[np.ndarray, bool]:
    """Centred log-worths of one fit on every ranking with weight 1, and whether the prior was needed."""
    theta, prior_used = fit_many(data, np.ones((1, data.n)), prior_sd)
    return theta[0], bool(prior_used[0])


def cluster_scores(data: RankingData, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-clause score vectors (G, m) and the negative Hessian (m, m) of the log-likelihood at θ (no prior)."""
    st = stages(data.levels)
    theta0 = np.nan_to_num(theta)
    e = np.exp(theta0 - theta0.max())[None, :] * st.risk
    p = e / e.sum(1, keepdims=True)
    per_stage = st.win - st.size[:, None] * p
    per_clause = np.zeros((len(data.clauses), data.m))
    np.add.at(per_clause, data.clause[st.ranking], per_stage)
    pw = p * st.size[:, None]
    neg_hess = np.diag(pw.sum(0)) - pw.T @ p
    return per_clause, neg_hess


def ranking_loglik(data: RankingData, theta: np.ndarray) -> np.ndarray:
    """Log-probability of each ranking under log-worths θ (Breslow's rule for ties), shape (n,)."""
    st = stages(data.levels)
    theta = np.nan_to_num(theta)
    shift = theta.max()
    den = (np.exp(theta - shift)[None, :] * st.risk).sum(1)
    per_stage = st.win @ theta - st.size * (np.log(den) + shift)
    out = np.zeros(data.n)
    np.add.at(out, st.ranking, per_stage)
    return out


def ranks(theta: np.ndarray) -> np.ndarray:
    """Rank of each model by log-worth along the last axis, 1 for the best (ties share the better rank)."""
    theta = np.asarray(theta)
    return (theta[..., None, :] > theta[..., :, None]).sum(-1) + 1
