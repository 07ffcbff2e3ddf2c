"""Borda and Copeland scores, pairwise counts, position bias and rank correlations, vectorised over weightings.

Every function takes `weights` (B, n): the weight of each ranking in each of B fits (ones for the
estimate, clause-bootstrap counts for the replicates), and returns arrays with a leading B axis.

- Borda score of a model: the mean, over rankings that show it, of the number of models ranked below
  it, a tie counting ½ (so with m models a score runs from 0 to m − 1).
- Copeland score: over every other model, 1 for a pairwise majority win (more rankings put it above
  than below), ½ for an exact tie, 0 for a loss (Copeland's rule with α = ½).
- Empirical pairwise win rate of A over B: the share of rankings showing both that put A above B,
  a tie counting ½.
- Position bias: for each display position, the share of rankings whose first place went to the model
  shown there (a first place shared by t tied models gives each 1/t).
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from dlm.stats.ranking.records import RankingData, RankingError


def pairwise_counts(data: RankingData, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, m, m) weighted counts of 'i ranked above j' and of 'i tied with j' (both shown)."""
    lv = data.levels
    both = (lv[:, :, None] >= 0) & (lv[:, None, :] >= 0)
    above = (lv[:, :, None] < lv[:, None, :]) & both
    tied = (lv[:, :, None] == lv[:, None, :]) & both
    m = data.m
    np.einsum("nii->ni", tied)[:] = False
    flat = np.concatenate([above.reshape(data.n, m * m), tied.reshape(data.n, m * m)], axis=1).astype(float)
    out = np.atleast_2d(weights) @ flat
    return out[:, : m * m].reshape(-1, m, m), out[:, m * m:].reshape(-1, m, m)


def borda(data: RankingData, weights: np.ndarray) -> np.ndarray:
    """(B, m) mean number of models ranked below each model (ties ½); NaN for a model never shown."""
    lv = data.levels
    present = lv >= 0
    below = ((lv[:, :, None] < lv[:, None, :]) & present[:, None, :]).sum(2)
    tied = ((lv[:, :, None] == lv[:, None, :]) & present[:, None, :]).sum(2) - 1
    points = np.where(present, below + 0.5 * tied, 0.0)
    weights = np.atleast_2d(weights)
    shown = weights @ present.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(shown > 0, (weights @ points) / shown, np.nan)


def copeland(above: np.ndarray) -> np.ndarray:
    """(B, m) Copeland scores from pairwise 'above' counts (B, m, m): majority wins plus ½ per exact tie.

    A tie within a ranking counts for neither side of the majority comparison.
    """
    m = above.shape[-1]
    win = (above > np.swapaxes(above, 1, 2)).astype(float)
    even = (above == np.swapaxes(above, 1, 2)).astype(float)
    even[:, np.arange(m), np.arange(m)] = 0.0
    return win.sum(2) + 0.5 * even.sum(2)


def win_rates(above: np.ndarray, tied: np.ndarray) -> np.ndarray:
    """(B, m, m) share of rankings showing both with i above j, a tie counting ½; NaN where never shown together."""
    total = above + np.swapaxes(above, 1, 2) + tied
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (above + 0.5 * tied) / total, np.nan)


def first_place_by_position(data: RankingData, weights: np.ndarray) -> np.ndarray:
    """(B, P) share of first places won by the model shown at each display position."""
    n_positions = int(data.display.max()) + 1
    first = data.levels == 0
    credit = first / first.sum(1, keepdims=True)
    by_position = np.zeros((data.n, n_positions))
    shown = np.zeros((data.n, n_positions))
    rows, cols = np.nonzero(data.display >= 0)
    np.add.at(by_position, (rows, data.display[rows, cols]), credit[rows, cols])
    shown[rows, data.display[rows, cols]] = 1.0
    weights = np.atleast_2d(weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ by_position) / (weights @ shown)


def rank_correlation(order_a: list[str] | tuple[str, ...], order_b: list[str] | tuple[str, ...]) -> tuple[float, float]:
    """Spearman's ρ and Kendall's τ between two orders (best first) of the same models."""
    if sorted(order_a) != sorted(order_b):
        raise RankingError(f"the two orders rank different models: {sorted(order_a)} vs {sorted(order_b)}")
    position_b = {name: i for i, name in enumerate(order_b)}
    a = np.arange(len(order_a))
    b = np.array([position_b[name] for name in order_a])
    return float(sps.spearmanr(a, b).statistic), float(sps.kendalltau(a, b).statistic)
