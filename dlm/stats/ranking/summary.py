"""Every rank-aggregation statistic of a set of listwise judgments, as one seeded, typed summary."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dlm.stats.ranking import aggregate, iia, mallows
from dlm.stats.ranking import plackett_luce as pl
from dlm.stats.ranking.bootstrap import clause_weights, percentile_interval, t_interval
from dlm.stats.ranking.kemeny import kemeny
from dlm.stats.ranking.records import RankingError, RankingRecord, encode, parse_record

DIGITS = 10  # floats in to_dict() are rounded so the JSON does not depend on the BLAS's last bits


@dataclass(frozen=True)
class ModelScores:
    """One model: Plackett–Luce worth (geometric mean 1) and rank, Borda and Copeland scores, with intervals."""

    model: str
    worth: float
    worth_low: float
    worth_high: float
    log_worth_se: float
    rank: int
    rank_low: float
    rank_high: float
    borda: float
    borda_low: float
    borda_high: float
    copeland: float
    copeland_low: float
    copeland_high: float


@dataclass(frozen=True)
class PositionShare:
    """Share of first places won by the answer shown at one display position (0 = shown first)."""

    position: int
    share: float
    low: float
    high: float
    n_rankings: int


@dataclass(frozen=True)
class Contrast:
    """How often A is ranked above B (empirical, ties ½) and Plackett–Luce's w_A / (w_A + w_B), with intervals."""

    a: str
    b: str
    primary: bool
    empirical: float
    empirical_low: float
    empirical_high: float
    implied: float
    implied_low: float
    implied_high: float
    n_rankings: int


@dataclass(frozen=True)
class KemenyResult:
    """Kemeny consensus order (best first), its pairwise disagreement with the rankings, and the method used."""

    order: tuple[str, ...]
    disagreement: float
    method: str


@dataclass(frozen=True)
class MallowsResult:
    """Mallows (Kendall) consensus and dispersion, and held-out log-likelihoods against Plackett–Luce."""

    consensus: tuple[str, ...]
    theta: float
    mean_distance: float
    n_rankings: int
    heldout_mallows: float | None
    heldout_plackett_luce: float | None
    heldout_rankings: int
    folds: int


@dataclass(frozen=True)
class IIAResult:
    """Hausman–McFadden test dropping one model."""

    dropped: str
    statistic: float
    df: int
    p_value: float
    prior_used: bool


@dataclass(frozen=True)
class RankingSummary:
    """Everything `summarize_rankings` computes; `to_dict()` is the stable JSON form."""

    models: tuple[ModelScores, ...]  # by Plackett–Luce rank, best first
    n_rankings: int
    n_questions: int
    n_clauses: int
    judges: tuple[str, ...]
    prior_used: bool
    replicates_with_prior: int
    kemeny: KemenyResult
    mallows: MallowsResult | None
    iia: tuple[IIAResult, ...]
    position_bias: tuple[PositionShare, ...]
    contrasts: tuple[Contrast, ...]
    primary: tuple[str, str] | None
    seed: int
    n_boot: int
    level: float

    def to_dict(self) -> dict[str, object]:
        """A JSON-able dict with a fixed key order: tuples become lists, NaN becomes None, floats are rounded."""
        return _clean(dataclasses.asdict(self))


def _clean(value: object) -> object:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else round(float(value), DIGITS)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _pair(spec: str | Sequence[str], models: tuple[str, ...]) -> tuple[str, str]:
    """A contrast given as 'A:B' or (A, B), checked against the models ranked."""
    if isinstance(spec, str):
        if ":" not in spec:
            raise RankingError(f"a contrast is written A:B, got {spec!r}")
        a, b = spec.split(":", 1)
    else:
        parts = tuple(spec)
        if len(parts) != 2:
            raise RankingError(f"a contrast names two models, got {parts!r}")
        a, b = parts
    for name in (a, b):
        if name not in models:
            raise RankingError(f"contrast {a}:{b} names {name!r}, which no ranking shows; models: {', '.join(models)}")
    if a == b:
        raise RankingError(f"contrast {a}:{b} compares a model with itself")
    return a, b


def summarize_rankings(records: Iterable[RankingRecord | Mapping[str, object]],
                       primary: str | Sequence[str] | None = None, contrasts: Iterable[str | Sequence[str]] = (),
                       seed: int = 0, n_boot: int = 1000, level: float = 0.95, folds: int = 5) -> RankingSummary:
    """Plackett–Luce, Borda, Copeland, Kemeny, Mallows, IIA tests, position bias and contrasts of listwise records.

    Args:
        records: RankingRecord objects or record dicts (validated; RankingError names a bad one).
        primary: the declared contrast 'A:B' (listed first among the contrasts).
        contrasts: further 'A:B' pairs for win rates implied by the rankings.
        seed: seeds the clause bootstrap and the held-out folds; the summary is a function of it.
        n_boot: clause-bootstrap replicates.
    """
    recs = [r if isinstance(r, RankingRecord) else parse_record(r, f"record {i + 1}") for i, r in enumerate(records)]
    if not recs:
        raise RankingError("no ranking records")
    if n_boot < 2 or not 0 < level < 1:
        raise RankingError(f"need n_boot ≥ 2 and 0 < level < 1, got n_boot={n_boot}, level={level}")
    data = encode(recs)
    if len(data.clauses) < 2:
        raise RankingError(f"intervals resample clauses, and the rankings come from {len(data.clauses)}; need at least 2")
    pairs = ([_pair(primary, data.models)] if primary is not None else []) + [_pair(c, data.models) for c in contrasts]
    pairs = list(dict.fromkeys(pairs))
    n_clauses = len(data.clauses)
    ones = np.ones((1, data.n))
    boot = clause_weights(data.clause, n_clauses, n_boot, seed)

    theta, prior = pl.fit_many(data, ones)
    theta_b, prior_b = pl.fit_many(data, boot)
    theta_low, theta_high = t_interval(theta[0], theta_b, n_clauses, level)
    rank, rank_b = pl.ranks(theta[0]), pl.ranks(theta_b)
    rank_low, rank_high = percentile_interval(rank_b.astype(float), level)
    borda, borda_b = aggregate.borda(data, ones)[0], aggregate.borda(data, boot)
    borda_low, borda_high = t_interval(borda, borda_b, n_clauses, level, (0.0, data.m - 1.0))
    above, tied = aggregate.pairwise_counts(data, ones)
    above_b, tied_b = aggregate.pairwise_counts(data, boot)
    copeland, copeland_b = aggregate.copeland(above)[0], aggregate.copeland(above_b)
    copeland_low, copeland_high = percentile_interval(copeland_b, level)
    se = np.nanstd(theta_b, axis=0, ddof=1) * np.sqrt(n_clauses / max(n_clauses - 1, 1))
    scores = [ModelScores(name, math.exp(theta[0, j]), math.exp(theta_low[j]), math.exp(theta_high[j]), float(se[j]),
                          int(rank[j]), float(rank_low[j]), float(rank_high[j]), float(borda[j]), float(borda_low[j]),
                          float(borda_high[j]), float(copeland[j]), float(copeland_low[j]), float(copeland_high[j]))
              for j, name in enumerate(data.models)]
    scores.sort(key=lambda s: (s.rank, s.model))

    share, share_b = aggregate.first_place_by_position(data, ones)[0], aggregate.first_place_by_position(data, boot)
    share_low, share_high = t_interval(share, share_b, n_clauses, level, (0.0, 1.0))
    shown = np.array([(data.display == p).any(1).sum() for p in range(len(share))])
    positions = tuple(PositionShare(p, float(share[p]), float(share_low[p]), float(share_high[p]), int(shown[p]))
                      for p in range(len(share)))

    column = {name: j for j, name in enumerate(data.models)}
    rates, rates_b = aggregate.win_rates(above, tied)[0], aggregate.win_rates(above_b, tied_b)
    implied = 1 / (1 + np.exp(theta[0][None, :] - theta[0][:, None]))
    implied_b = 1 / (1 + np.exp(theta_b[:, None, :] - theta_b[:, :, None]))
    contrast_rows = []
    for k, (a, b) in enumerate(pairs):
        i, j = column[a], column[b]
        e_low, e_high = t_interval(rates[i, j], rates_b[:, i, j], n_clauses, level, (0.0, 1.0))
        i_low, i_high = t_interval(implied[i, j], implied_b[:, i, j], n_clauses, level, (0.0, 1.0))
        together = int(((data.levels[:, i] >= 0) & (data.levels[:, j] >= 0)).sum())
        contrast_rows.append(Contrast(a, b, primary is not None and k == 0, float(rates[i, j]), float(e_low),
                                      float(e_high), float(implied[i, j]), float(i_low), float(i_high), together))

    consensus = kemeny(above[0], tied[0])
    kemeny_result = KemenyResult(tuple(data.models[i] for i in consensus.order), consensus.disagreement,
                                 consensus.method)
    mallows_result = None
    if (data.levels >= 0).all(1).any():
        fit = mallows.fit(data)
        heldout = mallows.held_out(data, folds, seed) if n_clauses >= 2 else None
        mallows_result = MallowsResult(
            tuple(data.models[i] for i in fit.consensus), fit.theta, fit.mean_distance, fit.n_rankings,
            None if heldout is None or heldout.n_rankings == 0 else heldout.mallows,
            None if heldout is None or heldout.n_rankings == 0 else heldout.plackett_luce,
            0 if heldout is None else heldout.n_rankings, 0 if heldout is None else heldout.folds)
    tests = tuple(IIAResult(data.models[t.dropped], t.statistic, t.df, t.p_value, t.prior_used)
                  for t in (iia.hausman_mcfadden(data, k, theta[0]) for k in range(data.m)))
    return RankingSummary(tuple(scores), data.n, len({r.question_id for r in recs}), n_clauses,
                          tuple(sorted({r.judge_model for r in recs})), bool(prior[0]), int(prior_b.sum()),
                          kemeny_result, mallows_result, tests, positions, tuple(contrast_rows),
                          pairs[0] if primary is not None else None, seed, n_boot, level)
