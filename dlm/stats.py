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
- Bradley–Terry ratings (a tie counts half a win each way) with cluster-bootstrap intervals.
- Length: mean answer-length difference and a length-controlled win rate (a logistic model of
  the score on the standardised length difference, evaluated at zero difference).
- Replicates (R panel draws × S training seeds per arm): the runs × clusters table of cluster
  means is a two-way crossed random-effects layout, y_jg = μ + u_j + v_g + e_jg, with u the
  between-run effect (panel draw and training seed), v the cluster effect (clause for win rates,
  rater for accuracy: the questions or raters that happened to be sampled) and e the rest
  (the judge's noise on this run's answers, run × question interaction). Variance components
  come from the ANOVA mean squares (method of moments, truncated at 0); the variance of the mean
  is var_run/J + var_cluster/G + var_residual/(J·G) = (MS_run + MS_cluster − MS_residual)/(J·G)
  when no component is truncated, with Satterthwaite degrees of freedom. With one run the
  between-run variance is not estimable and is reported as NaN.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

Z95 = 1.959963984540054


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
    if G < 2:
        return {"estimate": mean, "se": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                "p_value": float("nan"), "clusters": G}
    sums = np.bincount(idx, weights=scores - mean, minlength=G)
    se = float(np.sqrt(G / (G - 1) * (sums**2).sum()) / N)
    t = sps.t.ppf(0.5 + level / 2, G - 1)
    p = float(2 * sps.t.sf(abs(mean - 0.5) / se, G - 1)) if se > 0 else (1.0 if mean == 0.5 else 0.0)
    return {"estimate": mean, "se": se, "ci_low": mean - t * se, "ci_high": mean + t * se, "p_value": p,
            "clusters": G}


def replicate_anova(matrix: np.ndarray, null: float = 0.5, level: float = 0.95) -> dict[str, float]:
    """Mean of a runs × clusters table of cluster means, its interval and variance components."""
    Y = np.asarray(matrix, float)
    J, G = Y.shape
    grand = float(Y.mean())
    nan = float("nan")
    out = {"estimate": grand, "runs": J, "clusters": G}
    if G < 2:
        return {**out, "se": nan, "ci_low": nan, "ci_high": nan, "df": nan, "p_value": nan, "between_runs_sd": nan,
                "cluster_sd": nan, "residual_sd": nan, "var_from_runs": nan, "var_from_clusters": nan,
                "var_from_residual": nan}
    row, col = Y.mean(1), Y.mean(0)
    ms_cl = J * float(((col - grand) ** 2).sum()) / (G - 1)
    if J < 2:
        var_run = var_res = nan
        var_cl, terms = ms_cl, [(1.0, ms_cl, G - 1)]
    else:
        ms_run = G * float(((row - grand) ** 2).sum()) / (J - 1)
        resid = Y - row[:, None] - col[None, :] + grand
        ms_res = float((resid**2).sum()) / ((J - 1) * (G - 1))
        var_run, var_cl, var_res = max(0.0, (ms_run - ms_res) / G), max(0.0, (ms_cl - ms_res) / J), ms_res
        # Var(mean) = var_run/J + var_cl/G + var_res/(JG) as a combination of mean squares; a
        # component truncated at 0 drops its mean square (and its −MS_residual) from it.
        c_run, c_cl = float(var_run > 0), float(var_cl > 0)
        terms = [(c_run, ms_run, J - 1), (c_cl, ms_cl, G - 1), (1 - c_run - c_cl, ms_res, (J - 1) * (G - 1))]
    var_mean = sum(c * m for c, m, _ in terms) / (J * G)
    denominator = sum((c * m) ** 2 / d for c, m, d in terms)
    df = (var_mean * J * G) ** 2 / denominator if denominator > 0 else float(G - 1)  # Satterthwaite
    se = float(np.sqrt(var_mean))
    t = sps.t.ppf(0.5 + level / 2, df)
    p = float(2 * sps.t.sf(abs(grand - null) / se, df)) if se > 0 else (1.0 if grand == null else 0.0)
    return {**out, "se": se, "ci_low": grand - t * se, "ci_high": grand + t * se, "df": float(df), "p_value": p,
            "between_runs_sd": float(np.sqrt(var_run)), "cluster_sd": float(np.sqrt(var_cl)),
            "residual_sd": float(np.sqrt(var_res)),
            # contributions to the variance of the mean: what more runs, or more clusters, would shrink
            "var_from_runs": var_run / J, "var_from_clusters": var_cl / G, "var_from_residual": var_res / (J * G)}


def replicate_table(scores: pd.DataFrame, group: list[str], run: str, cluster: str, null: float = 0.5) -> pd.DataFrame:
    """replicate_anova per group of a long table of scores (one row per run, cluster and item)."""
    rows = []
    for key, g in scores.groupby(group, sort=False):
        table = g.groupby([run, cluster])["score"].mean().unstack(cluster)
        table = table.dropna(axis=1)  # clusters every run has (balanced by design; guards partial runs)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(group, key, strict=True)), **replicate_anova(table.to_numpy(), null)})
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


def bradley_terry(combined: pd.DataFrame, models: list[str], iters: int = 500) -> np.ndarray:
    """Bradley–Terry log-strengths (mean 0) by the MM algorithm; a tie is half a win each way."""
    idx = {m: i for i, m in enumerate(models)}
    k = len(models)
    wins = np.zeros((k, k))
    for a, b, s in zip(combined["model_a"], combined["model_b"], combined["score"], strict=True):
        wins[idx[a], idx[b]] += s
        wins[idx[b], idx[a]] += 1 - s
    games = wins + wins.T
    strength = np.ones(k)
    for _ in range(iters):
        denom = (games / (strength[:, None] + strength[None, :])).sum(1)
        new = (wins.sum(1) + 0.5) / (denom + 1.0 / strength)  # a weak prior keeps all-win models finite
        new /= np.exp(np.log(new).mean())
        if np.allclose(new, strength, rtol=1e-10):
            break
        strength = new
    return np.log(strength) - np.log(strength).mean()


def summarise(records: pd.DataFrame, primary: tuple[str, str] | None = None, n_boot: int = 500,
              seed: int = 0, arms: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything the report shows: per pair and judge (and majority), per clause, overall, BT, length.

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
            "clusters": overall["clusters"],
            "inconsistency_rate": float(inconsistent.mean()) if len(inconsistent) else None,
            "mean_length_difference": float((g["len_a"] - g["len_b"]).mean()),
            **length_controlled(g["score"].to_numpy(), (g["len_a"] - g["len_b"]).to_numpy()),
            "primary": primary == (a, b) or primary == (b, a),
        }
        for clause, c in g.groupby("clause_id", sort=True):
            w, t, l = int((c["score"] == 1).sum()), int((c["score"] == 0.5).sum()), int((c["score"] == 0).sum())
            lo, hi = wilson_interval(w + t / 2, len(c))
            clause_rows.append({"pair": key, "model_a": a, "model_b": b, "judge": judge, "clause_id": clause,
                                "n": len(c), "wins": w, "ties": t, "losses": l, "win_rate": float(c["score"].mean()),
                                "ci_low": lo, "ci_high": hi, "p_value": sign_test(w, l)})
    adjusted = holm([r["p_value"] for r in clause_rows])
    for r, p in zip(clause_rows, adjusted, strict=True):
        r["p_holm"] = p
    secondary = [k for k, v in pairs.items() if not v["primary"]]
    for k, p in zip(secondary, holm([pairs[k]["p_value"] for k in secondary]), strict=True):
        pairs[k]["p_holm_secondary"] = p
    out: dict[str, Any] = {"pairs": pairs, "clauses": clause_rows, "judges": judges,
                           "primary": list(primary) if primary else None}
    if arms:
        out["arms"] = arm_contrasts(combined, arms, primary, judges)
    models = sorted(set(combined["model_a"]) | set(combined["model_b"]))
    if len(models) >= 3:
        out["bradley_terry"] = bt_with_intervals(combined[combined["judge_model"] == judges[-1]], models, n_boot, seed)
    return out


def arm_contrasts(combined: pd.DataFrame, arms: dict[str, str], primary: tuple[str, str] | None,
                  judges: list[str]) -> dict[str, dict[str, Any]]:
    """Win rate of arm A over arm B pooled over their matched replicate runs, with variance components."""
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
    c["run"] = [" vs ".join(sorted((a, b))) for a, b in zip(c["model_a"], c["model_b"], strict=True)]
    table = replicate_table(c, ["arm_a", "arm_b", "judge_model"], "run", "clause_id")
    out = {}
    for r in table.to_dict("records"):
        key = f"{r['arm_a']} vs {r['arm_b']}" + ("" if len(judges) == 1 else f" [{r['judge_model']}]")
        out[key] = {**r, "model_a": r["arm_a"], "model_b": r["arm_b"], "win_rate": r["estimate"],
                    "primary": bool(primary) and {r["arm_a"], r["arm_b"]} == set(primary)}
    secondary = [k for k, v in out.items() if not v["primary"]]
    for k, p in zip(secondary, holm([out[k]["p_value"] for k in secondary]), strict=True):
        out[k]["p_holm_secondary"] = p
    return out


def bt_with_intervals(combined: pd.DataFrame, models: list[str], n_boot: int, seed: int) -> dict[str, Any]:
    """BT log-strengths with 95% percentile intervals from resampling clauses."""
    rng = np.random.default_rng(seed)
    point = bradley_terry(combined, models)
    clauses = combined["clause_id"].unique()
    groups = {c: g for c, g in combined.groupby("clause_id")}
    boots = []
    for _ in range(n_boot):
        sample = pd.concat([groups[c] for c in rng.choice(clauses, len(clauses))], ignore_index=True)
        boots.append(bradley_terry(sample, models))
    boots = np.array(boots)
    return {m: {"rating": float(point[i]), "ci_low": float(np.percentile(boots[:, i], 2.5)),
                "ci_high": float(np.percentile(boots[:, i], 97.5))} for i, m in enumerate(models)}


def model_pairs(models: list[str]) -> list[tuple[str, str]]:
    """Every unordered pair, in the order the models were given."""
    return list(combinations(models, 2))
