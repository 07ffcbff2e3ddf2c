"""Held-out accuracy for a target population: raking weights, rater-clustered intervals, paired tests.

The held-out raters are a sample of PRISM, not of the population a panel config targets. Raking
(iterative proportional fitting) gives each held-out rater in the config's locale a weight so that
the weighted share of every category of every quota attribute matches the config's population
proportions. Categories with fewer than `min_raters` held-out raters cannot carry their share
reliably: they are merged into one pooled category per attribute (target = the sum of theirs); if
the pooled category has no rater at all, its target is left out and the rest renormalised. Both are
reported, never silent.

Accuracy is a ratio over pairs, Σᵢ wᵢ yᵢ / Σᵢ wᵢ nᵢ (rater i with nᵢ held-out pairs, yᵢ of them
agreed with); its standard error is the linearised, rater-clustered (CR1) one with a t interval on
G − 1 degrees of freedom. With all weights 1 it is exactly `dlm.stats.cluster_t_interval`. Raking
weights are treated as fixed, as survey software does for a linearised interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from dlm.errors import DLMError
from dlm.sortition import PanelConfig

MERGED = "(merged: too few held-out raters)"


@dataclass(frozen=True)
class Interval:
    """An estimate with its rater-clustered standard error and 95% t interval."""

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    raters: int
    pairs: int


@dataclass
class RakingWeights:
    """One weight per held-out rater (mean 1 over the raters kept), and what had to be merged or dropped."""

    weights: pd.Series
    merged: dict[str, list[str]] = field(default_factory=dict)
    dropped_targets: dict[str, float] = field(default_factory=dict)
    outside_population: int = 0
    max_margin_error: float = 0.0


def rake(labels: pd.DataFrame, targets: dict[str, dict[str, float]], max_iter: int = 200,
         tol: float = 1e-10) -> pd.Series:
    """Weights (mean 1) whose weighted category shares match `targets` for every column of `labels`."""
    w = np.ones(len(labels))
    codes = {}
    for col, target in targets.items():
        cats = list(target)
        idx = labels[col].map({c: i for i, c in enumerate(cats)})
        if idx.isna().any():
            raise DLMError(f"raking: column {col} has categories without a target: "
                           f"{sorted(set(labels.loc[idx.isna(), col]))}")
        t = np.array([target[c] for c in cats], float)
        codes[col] = (idx.to_numpy(int), t / t.sum())
    for _ in range(max_iter):
        worst = 0.0
        for code, t in codes.values():
            share = np.bincount(code, weights=w, minlength=len(t)) / w.sum()
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = np.where(share > 0, t / share, 0.0)
            w = w * factor[code]
            worst = max(worst, float(np.abs(share - t).max()))
        if worst < tol:
            break
    return pd.Series(w * len(w) / w.sum(), index=labels.index)


def population_weights(survey: pd.DataFrame, raters: list[str], config: PanelConfig,
                       min_raters: int = 5) -> RakingWeights:
    """Raking weights that make the held-out raters in the config's locale look like its target population."""
    s = survey.set_index(survey["user_id"].astype(str)).reindex(pd.Index(sorted(set(raters)), dtype=object))
    if config.locale_filter:
        inside = s["study_locale"].isin(config.locale_filter).to_numpy()
    else:
        inside = np.ones(len(s), dtype=bool)
    s = s[inside]
    labels = pd.DataFrame(index=s.index)
    keep = np.ones(len(s), dtype=bool)
    attrs = [a for a in config.attributes if a.proportions]
    for a in attrs:
        v = s[a.column].astype(object).where(s[a.column].notna(), "<missing>").astype(str)
        unknown = ~v.isin(a.categories)
        # the pool's rule (dlm.sortition.build_pool): an unknown value counts in the first slack category
        v[unknown] = a.slack_categories[0] if a.slack_categories else None
        keep &= v.notna().to_numpy()
        labels[a.name] = v
    labels = labels[keep]
    targets, merged, dropped = {}, {}, {}
    for a in attrs:
        counts = labels[a.name].value_counts()
        props = {c: p for c, p in a.proportions.items() if p > 0}
        small = [c for c in props if counts.get(c, 0) < min_raters]
        t = {c: p for c, p in props.items() if c not in small}
        if small:
            merged[a.name] = small
            pooled = labels[a.name].isin(small)
            labels.loc[pooled, a.name] = MERGED
            if pooled.any():
                t[MERGED] = sum(props[c] for c in small)
            else:
                dropped[a.name] = sum(props[c] for c in small)
        labels = labels[labels[a.name].isin(list(t))]  # raters only in zero-target categories: outside
        targets[a.name] = t
    if labels.empty:
        raise DLMError(f"{config.path}: no held-out rater is in the target population "
                       f"(locale {config.locale_filter}); raise --eval-ratio or use another panel config")
    w = rake(labels, targets)
    err = max(abs(float(w.groupby(labels[c]).sum()[k] / w.sum()) - p / sum(t.values()))
              for c, t in targets.items() for k, p in t.items() if k in set(labels[c]))
    return RakingWeights(w, merged, dropped, len(set(raters)) - len(w), err)


def weighted_cluster_interval(scores: np.ndarray, raters: np.ndarray, weights: pd.Series | None = None,
                              null: float = 0.5, level: float = 0.95,
                              bounds: tuple[float, float] = (0.0, 1.0)) -> Interval:
    """Σ w·score / Σ w over pairs (w = the rater's weight) with a linearised rater-clustered t interval.

    The interval is clipped to `bounds`, the range of the estimand (which never loses coverage).
    """
    scores = np.asarray(scores, float)
    raters = np.asarray(raters).astype(str)
    w = np.ones(len(scores)) if weights is None else weights.reindex(raters).to_numpy(float)
    ok = ~np.isnan(w)
    scores, raters, w = scores[ok], raters[ok], w[ok]
    labels, idx = np.unique(raters, return_inverse=True)
    G, N = len(labels), len(scores)
    if N == 0 or w.sum() == 0:
        return Interval(float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), G, N)
    est = float((w * scores).sum() / w.sum())
    if G < 2:
        return Interval(est, float("nan"), float("nan"), float("nan"), float("nan"), G, N)
    z = np.bincount(idx, weights=w * (scores - est), minlength=G) / w.sum()
    se = float(np.sqrt(G / (G - 1) * (z**2).sum()))
    t = sps.t.ppf(0.5 + level / 2, G - 1)
    p = float(2 * sps.t.sf(abs(est - null) / se, G - 1)) if se > 0 else (1.0 if est == null else 0.0)
    return Interval(est, se, max(est - t * se, bounds[0]), min(est + t * se, bounds[1]), p, G, N)


def paired_difference(a: np.ndarray, b: np.ndarray, raters: np.ndarray, level: float = 0.95) -> Interval:
    """Mean of a − b over the same pairs, with a rater-clustered t interval and the p-value of no difference."""
    return weighted_cluster_interval(np.asarray(a, float) - np.asarray(b, float), raters, None, 0.0, level, (-1.0, 1.0))
