"""Win rates with honest uncertainty, from pairwise judgments.

Per question, the two orders are combined by MT-Bench's conservative rule: a model wins only if
it wins in both orders; otherwise it is a tie; the pair of verdicts is *inconsistent* when they
differ. A question scores 1 (model_a wins), ½ (tie) or 0.

- Overall: the mean score over questions, with a cluster-robust t interval over clauses
  (G − 1 degrees of freedom): questions are sampled within clauses, so clauses are the unit of
  replication; a percentile cluster bootstrap under-covers with 12–25 clauses.
- Per clause (n ≈ 10, ties): a Wilson score interval on W + T/2 "successes" out of n, and an
  exact two-sided sign test of wins against losses (ties carry no information on direction);
  p-values are Holm-adjusted across all clauses and model pairs.
- Bradley–Terry ratings by maximum likelihood (a tie counts half a win each way; `dlm.stats.bradley_terry`)
  with cluster-robust (by clause) t intervals.
- Length: mean answer-length difference and a length-controlled win rate (a logistic model of
  the score on the standardised length difference, evaluated at zero difference).
- Replicates (R panel draws × S training seeds per arm): arm contrasts pooled over trained models,
  each distinct model a unit (`dlm.stats.pooling`); `replicate_anova` pools one arm's runs over clusters
  (clauses, or raters for accuracy) with each run a unit.
- Uninformative results (all ties, all one way so that se = 0, too few clusters, or at clause
  level too few decisive outcomes for the sign test ever to reach 0.05) are flagged
  `uninformative`, with NaN in place of a zero-width interval or p = 1; clause rows so flagged are
  left out of the Holm family (how many decisive outcomes a clause has says nothing about their
  direction, so the selection keeps the tests valid).
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from dlm.stats import bradley_terry as bt
from dlm.stats.pooling import contrast_design, pooled_contrast

Z95 = 1.959963984540054
# Fewest decisive (non-tie) outcomes at which a two-sided sign test can reach 0.05 (2·0.5⁶ = 0.031).
MIN_DECISIVE = 6


def combine_orders(records: pd.DataFrame) -> pd.DataFrame:
    """One row per (question, pair, judge): score for model_a, and whether the orders disagreed."""
    r = records.copy()
    r["score"] = np.where(r["winner"] == r["model_a"], 1.0, np.where(r["winner"] == r["model_b"], 0.0, 0.5))
    keys = ["question_id", "clause_id", "model_a", "model_b", "judge_model"]
    g = r.groupby(keys, sort=False)
    out = g.agg(n_orders=("order", "nunique"), min_score=("score", "min"), max_score=("score", "max"),
                len_a=("len_a", "first"), len_b=("len_b", "first")).reset_index()
    both = out["n_orders"] == 2
    # Conservative rule: a win must be a win in both orders; anything else is a tie.
    out["score"] = np.where(both, np.where(out["min_score"] == 1, 1.0, np.where(out["max_score"] == 0, 0.0, 0.5)),
                            out["min_score"])
    out["inconsistent"] = np.where(both, out["min_score"] != out["max_score"], np.nan)
    return out.drop(columns=["min_score", "max_score"])


def majority(combined: pd.DataFrame) -> pd.DataFrame:
    """Majority verdict across judges per question and pair (a tie when judges split evenly)."""
    keys = ["question_id", "clause_id", "model_a", "model_b"]
    g = combined.groupby(keys, sort=False)
    out = g.agg(score=("score", lambda s: 1.0 if (s == 1).sum() > len(s) / 2 else 0.0 if (s == 0).sum() > len(s) / 2
                       else 0.5), len_a=("len_a", "first"), len_b=("len_b", "first"),
                inconsistent=("inconsistent", "mean")).reset_index()
    out["judge_model"] = "majority"
    return out


def cluster_t_interval(scores: np.ndarray, clusters: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Mean of scores with a cluster-robust (CR1) standard error and a t interval with G − 1 df."""
    scores = np.asarray(scores, float)
    mean = float(scores.mean())
    labels, idx = np.unique(clusters, return_inverse=True)
    G, N = len(labels), len(scores)
    nan = float("nan")
    if G < 2:
        return {"estimate": mean, "se": nan, "ci_low": nan, "ci_high": nan, "p_value": nan, "clusters": G,
                "uninformative": True}
    sums = np.bincount(idx, weights=scores - mean, minlength=G)
    se = float(np.sqrt(G / (G - 1) * (sums**2).sum()) / N)
    if not se > 0:  # every score equal (all ties, or all one way): no interval, no test
        return {"estimate": mean, "se": nan, "ci_low": nan, "ci_high": nan, "p_value": nan, "clusters": G,
                "uninformative": True}
    t = sps.t.ppf(0.5 + level / 2, G - 1)
    p = float(2 * sps.t.sf(abs(mean - 0.5) / se, G - 1))
    # Scores (wins, agreement) lie in [0, 1]: an interval clipped to that range covers whenever the
    # unclipped one does, and never shows an impossible win rate such as 1.02.
    return {"estimate": mean, "se": se, "ci_low": max(mean - t * se, 0.0), "ci_high": min(mean + t * se, 1.0),
            "p_value": p, "clusters": G, "uninformative": False}


def replicate_anova(matrix: np.ndarray, null: float = 0.5, level: float = 0.95,
                    runs: list[str] | None = None) -> dict[str, Any]:
    """Mean of a runs × clusters table (each run a distinct trained model), its interval and variance components.

    With `runs` (run names ARM-rR-sS, `dlm.replicates`), runs trained on one panel draw's dataset
    share its draw effect and count as one unit; without, every run is its own unit.
    `between_model_sd` is the SD of the true value across the units (NaN with one run, where the
    interval is conditional on that model).
    """
    design = contrast_design(list(runs)) if runs is not None and len(runs) > 1 else None
    out = pooled_contrast(np.asarray(matrix, float), design, null=null, level=level)
    out["between_model_sd"] = out.pop("model_pair_sd")  # each run its own unit: the runs' spread
    for k in ("model_sd_a", "model_sd_b"):
        out.pop(k)
    if out["runs"] < 2:
        out["between_model_sd"] = float("nan")
    return out


def replicate_table(scores: pd.DataFrame, group: list[str], run: str, cluster: str, null: float = 0.5) -> pd.DataFrame:
    """replicate_anova per group of a long table of scores (one row per run, cluster and item)."""
    rows = []
    for key, g in scores.groupby(group, sort=False):
        table = g.groupby([run, cluster])["score"].mean().unstack(cluster)
        table = table.dropna(axis=1)  # clusters every run has (balanced by design; guards partial runs)
        key = key if isinstance(key, tuple) else (key,)
        fit = replicate_anova(table.to_numpy(), null, runs=[str(r) for r in table.index])
        rows.append({**dict(zip(group, key, strict=True)), **fit})
    return pd.DataFrame(rows)


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion (fractional successes allowed: ties count ½)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial test of wins vs losses (ties excluded)."""
    n = wins + losses
    return 1.0 if n == 0 else float(sps.binomtest(wins, n, 0.5).pvalue)


def holm(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order."""
    p = np.asarray(p_values, float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def length_controlled(scores: np.ndarray, len_diff: np.ndarray) -> dict[str, float]:
    """Win rate predicted at zero length difference by a logistic fit of score on standardised length difference."""
    scores, x = np.asarray(scores, float), np.asarray(len_diff, float)
    sd = x.std()
    if sd == 0 or np.all(scores == scores[0]):
        return {"length_controlled_win_rate": float(scores.mean()), "length_coefficient": 0.0}
    z = (x - x.mean()) / sd
    X = np.column_stack([np.ones_like(z), z])
    beta = np.zeros(2)
    for _ in range(50):  # IRLS for a quasi-binomial GLM (fractional outcomes allowed)
        mu = 1 / (1 + np.exp(-X @ beta))
        w = np.clip(mu * (1 - mu), 1e-9, None)
        step = np.linalg.solve(X.T @ (X * w[:, None]) + 1e-9 * np.eye(2), X.T @ (scores - mu))
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    at_zero = beta[0] + beta[1] * (0 - x.mean()) / sd
    return {"length_controlled_win_rate": float(1 / (1 + np.exp(-at_zero))), "length_coefficient": float(beta[1])}


def bradley_terry(combined: pd.DataFrame, models: list[str], max_iter: int = 100) -> np.ndarray:
    """Bradley–Terry log-strengths (mean 0) by maximum likelihood (`dlm.stats.bradley_terry`); a tie is half a win."""
    idx = {m: i for i, m in enumerate(models)}
    return bt.fit(combined["model_a"].map(idx).to_numpy(), combined["model_b"].map(idx).to_numpy(),
                  combined["score"].to_numpy(), len(models), max_iter=max_iter).rating


def summarise(records: pd.DataFrame, primary: tuple[str, str] | None = None, seed: int = 0,
              arms: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything the report shows: per pair and judge (and majority), per clause, overall, BT, length.

    Deterministic: nothing is resampled (`seed` is accepted for callers and unused).

    With `arms` (model name → arm), replicate runs of the same arms are pooled per arm pair
    (`replicate_anova` over runs × clauses), and the primary/secondary contrasts are arm-level.
    """
    combined = combine_orders(records)
    judges = list(dict.fromkeys(combined["judge_model"]))
    if len(judges) > 1:
        combined = pd.concat([combined, majority(combined)], ignore_index=True)
        judges.append("majority")
    pairs, clause_rows = {}, []
    for (a, b, judge), g in combined.groupby(["model_a", "model_b", "judge_model"], sort=False):
        key = f"{a} vs {b}" + ("" if judge == judges[0] and len(judges) == 1 else f" [{judge}]")
        overall = cluster_t_interval(g["score"].to_numpy(), g["clause_id"].to_numpy())
        inconsistent = g["inconsistent"].dropna()
        pairs[key] = {
            "model_a": a, "model_b": b, "judge": judge, "n_questions": len(g),
            "wins": int((g["score"] == 1).sum()), "ties": int((g["score"] == 0.5).sum()),
            "losses": int((g["score"] == 0).sum()), "win_rate": overall["estimate"], "se": overall["se"],
            "ci_low": overall["ci_low"], "ci_high": overall["ci_high"], "p_value": overall["p_value"],
            "clusters": overall["clusters"], "uninformative": overall["uninformative"],
            "inconsistency_rate": float(inconsistent.mean()) if len(inconsistent) else None,
            "mean_length_difference": float((g["len_a"] - g["len_b"]).mean()),
            **length_controlled(g["score"].to_numpy(), (g["len_a"] - g["len_b"]).to_numpy()),
            "primary": primary == (a, b) or primary == (b, a),
        }
        for clause, c in g.groupby("clause_id", sort=True):
            w, t, l = int((c["score"] == 1).sum()), int((c["score"] == 0.5).sum()), int((c["score"] == 0).sum())
            lo, hi = wilson_interval(w + t / 2, len(c))
            testable = w + l >= MIN_DECISIVE
            clause_rows.append({"pair": key, "model_a": a, "model_b": b, "judge": judge, "clause_id": clause,
                                "n": len(c), "wins": w, "ties": t, "losses": l, "win_rate": float(c["score"].mean()),
                                "ci_low": lo, "ci_high": hi, "p_value": sign_test(w, l) if testable else float("nan"),
                                "uninformative": not testable})
    tested = [r for r in clause_rows if not r["uninformative"]]
    for r, p in zip(tested, holm([r["p_value"] for r in tested]), strict=True):
        r["p_holm"] = p
    for r in clause_rows:
        r.setdefault("p_holm", float("nan"))
    _holm_secondary(pairs)
    out: dict[str, Any] = {"pairs": pairs, "clauses": clause_rows, "judges": judges,
                           "primary": list(primary) if primary else None}
    if arms:
        out["arms"] = arm_contrasts(combined, arms, primary, judges)
    models = sorted(set(combined["model_a"]) | set(combined["model_b"]))
    if len(models) >= 3:
        out["bradley_terry"] = bt_with_intervals(combined[combined["judge_model"] == judges[-1]], models)
    return out


def arm_contrasts(combined: pd.DataFrame, arms: dict[str, str], primary: tuple[str, str] | None,
                  judges: list[str]) -> dict[str, dict[str, Any]]:
    """Win rate of arm A over arm B pooled over their judged model pairs (`dlm.stats.pooling`), per judge."""
    c = combined.copy()
    c["arm_a"], c["arm_b"] = c["model_a"].map(arms).fillna(c["model_a"]), c["model_b"].map(arms).fillna(c["model_b"])
    c = c[c["arm_a"] != c["arm_b"]]
    # One orientation per arm pair: the primary's, else the first seen.
    canonical: dict[frozenset, tuple[str, str]] = {frozenset(primary): tuple(primary)} if primary else {}
    for a, b in zip(c["arm_a"], c["arm_b"], strict=True):
        canonical.setdefault(frozenset((a, b)), (a, b))
    flip = [canonical[frozenset((a, b))] != (a, b) for a, b in zip(c["arm_a"], c["arm_b"], strict=True)]
    flip = np.array(flip, dtype=bool)
    c.loc[flip, "score"] = 1 - c.loc[flip, "score"]
    c.loc[flip, ["arm_a", "arm_b"]] = c.loc[flip, ["arm_b", "arm_a"]].to_numpy()
    # Each pair's two trained models, in the arm pair's orientation: the units of between-model variation.
    c["run_a"] = np.where(flip, c["model_b"], c["model_a"])
    c["run_b"] = np.where(flip, c["model_a"], c["model_b"])
    out = {}
    for (arm_a, arm_b, judge), g in c.groupby(["arm_a", "arm_b", "judge_model"], sort=False):
        table = g.groupby(["run_a", "run_b", "clause_id"], sort=False)["score"].mean().unstack("clause_id")
        table = table.dropna(axis=1)  # clauses every pair has (balanced by design; guards partial runs)
        design = contrast_design(list(table.index.get_level_values(0)), list(table.index.get_level_values(1)))
        r = pooled_contrast(table.to_numpy(), design)
        key = f"{arm_a} vs {arm_b}" + ("" if len(judges) == 1 else f" [{judge}]")
        out[key] = {"arm_a": arm_a, "arm_b": arm_b, "judge_model": judge, **r, "model_a": arm_a, "model_b": arm_b,
                    "win_rate": r["estimate"], "primary": bool(primary) and {arm_a, arm_b} == set(primary)}
    _holm_secondary(out)
    return out


def _holm_secondary(results: dict[str, dict[str, Any]]) -> None:
    """Holm-adjust the p-values of the secondary (non-primary) informative results, in place."""
    secondary = [k for k, v in results.items() if not v["primary"] and not v["uninformative"]]
    for k, p in zip(secondary, holm([results[k]["p_value"] for k in secondary]), strict=True):
        results[k]["p_holm_secondary"] = p
    for k, v in results.items():
        if not v["primary"] and v["uninformative"]:
            v["p_holm_secondary"] = float("nan")


def bt_with_intervals(combined: pd.DataFrame, models: list[str], level: float = 0.95) -> dict[str, Any]:
    """BT log-strengths with cluster-robust (by clause) t intervals; `prior_used` where the MLE does not exist."""
    idx = {m: i for i, m in enumerate(models)}
    clusters = combined["clause_id"].to_numpy()
    result = bt.fit(combined["model_a"].map(idx).to_numpy(), combined["model_b"].map(idx).to_numpy(),
                    combined["score"].to_numpy(), len(models), clusters=clusters)
    low, high = bt.intervals(result, len(set(clusters)), level)
    return {m: {"rating": float(result.rating[i]), "se": float(result.se[i]), "ci_low": float(low[i]),
                "ci_high": float(high[i]), "prior_used": result.prior_used,
                "uninformative": not bool(result.se[i] > 0)} for i, m in enumerate(models)}


def json_ready(obj: Any) -> Any:
    """The summary with NaN (not estimable, uninformative) as None, so that summary.json is strict JSON."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def model_pairs(models: list[str]) -> list[tuple[str, str]]:
    """Every unordered pair, in the order the models were given."""
    return list(combinations(models, 2))
