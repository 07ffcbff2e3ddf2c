"""Bradley–Terry: the MLE where it exists, finite ratings where it does not, intervals that cover."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from dlm.stats import bradley_terry as bt


def games(rng, theta, n_clauses, per_clause, tie=0.3, clause_sd=0.0):
    """Every pair of models judged on each question; y ∈ {1, ½, 0}; clause shifts of the strengths."""
    k = len(theta)
    pa, pb = np.triu_indices(k, 1)
    shift = rng.normal(0, clause_sd, (n_clauses, 1, k)) if clause_sd else np.zeros((n_clauses, 1, k))
    strength = np.asarray(theta)[None, None, :] + shift  # (G, 1, k)
    d = strength[..., pa] - strength[..., pb]  # (G, 1, pairs)
    d = np.broadcast_to(d, (n_clauses, per_clause, len(pa)))
    u = rng.random(d.shape)
    p_win = (1 - tie) / (1 + np.exp(-d))
    y = np.where(u < p_win, 1.0, np.where(u < p_win + tie, 0.5, 0.0))
    a = np.broadcast_to(pa, d.shape).ravel()
    b = np.broadcast_to(pb, d.shape).ravel()
    g = np.broadcast_to(np.arange(n_clauses)[:, None, None], d.shape).ravel()
    return a, b, y.ravel(), g


def test_fit_equals_the_maximum_likelihood_to_1e_6():
    rng = np.random.default_rng(0)
    a, b, y, _ = games(rng, [0.8, 0.1, -0.3, -0.6], 10, 5)
    ours = bt.fit(a, b, y, 4)
    assert not ours.prior_used

    def nll(t):
        t = np.concatenate([[0.0], t])
        d = t[a] - t[b]
        return float((y * np.logaddexp(0, -d) + (1 - y) * np.logaddexp(0, d)).sum())

    ref = minimize(nll, np.zeros(3), method="BFGS", options={"gtol": 1e-10}).x
    ref = np.concatenate([[0.0], ref])
    assert ours.rating == pytest.approx(ref - ref.mean(), abs=1e-6)


def test_a_model_that_wins_everything_gets_a_finite_rating_that_does_not_grow_with_iterations():
    rng = np.random.default_rng(1)
    a, b, y, g = games(rng, [0.5, 0.0, -0.5], 6, 4)
    y = np.where(a == 0, 1.0, np.where(b == 0, 0.0, y))  # model 0 wins every comparison
    y = np.where(b == 2, np.where(a == 0, 1.0, y), y)
    short, long = bt.fit(a, b, y, 3, g, max_iter=20), bt.fit(a, b, y, 3, g, max_iter=10_000)
    assert short.prior_used and np.all(np.isfinite(short.rating)) and np.all(np.isfinite(short.se))
    assert short.rating[0] > short.rating[1] and short.rating[0] > short.rating[2]
    assert long.rating == pytest.approx(short.rating, abs=1e-9)
    # and a model that loses every comparison
    y2 = np.where(b == 2, 1.0, np.where(a == 2, 0.0, 0.5))
    lose = bt.fit(a, b, y2, 3, g)
    assert lose.prior_used and np.all(np.isfinite(lose.rating)) and lose.rating.argmin() == 2


def coverage(n_clauses, reps, seed):
    theta = np.array([0.6, 0.2, -0.2, -0.6])
    rng = np.random.default_rng(seed)
    # The estimand: the large-sample limit of the fit under this design (clause shifts make it
    # differ slightly from theta), from one very large sample.
    a, b, y, _ = games(rng, theta, 40_000, 10, clause_sd=0.3)
    truth = bt.fit(a, b, y, 4).rating
    hits = []
    for _ in range(reps):
        a, b, y, g = games(rng, theta, n_clauses, 10, clause_sd=0.3)
        f = bt.fit(a, b, y, 4, g)
        lo, hi = bt.intervals(f, n_clauses)
        hits.append((lo <= truth) & (truth <= hi))
    return np.mean(hits)


@pytest.mark.slow
@pytest.mark.parametrize("n_clauses", [12, 25])
def test_intervals_cover_93_to_97_percent(n_clauses):
    assert 0.93 <= coverage(n_clauses, 2000, n_clauses) <= 0.97
