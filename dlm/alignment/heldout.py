"""Aligned to whom? Held-out preference accuracy of each model, overall, per group and for the target population.

Every model, the base included, is scored under one rule, the **log-likelihood ranking**: a pair
counts as agreement when the model's mean per-token log-probability of the chosen completion (EOS
included, as in training) exceeds that of the rejected one (½ when equal). Length-normalised, so
that a shorter answer is not preferred for being short. For trained models only, the **implicit
reward ranking** is reported beside it and labelled as such: the DPO reward margin
(log π(chosen) − log π_ref(chosen)) − (log π(rejected) − log π_ref(rejected)) with the base model as
reference (for the base itself it is 0 by construction, so it has no row).

The held-out set is the `eval` split fixed by `dlm prepare`: by default whole raters set aside
before sortition (dlm.data.split), so no model was trained on any of their pairs. Accuracy is reported
over the held-out raters and post-stratified to the primary panel config's target population
(dlm.stats.poststrat), per category of each quota attribute and for PRISM's US-REP subset, with intervals
clustered by rater. Arms are compared per group by paired differences on the same held-out pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlm.arms.replicates import arm_of, matched_pairs, parse_run
from dlm.data import synth
from dlm.errors import DLMError
from dlm.io import read_jsonl, write_json_atomic
from dlm.sortition import PanelConfig
from dlm.stats.pooling import contrast_design, pooled_contrast
from dlm.stats.poststrat import RakingWeights, population_weights, weighted_cluster_interval
from dlm.stats.winrates import cluster_t_interval, holm, json_ready, replicate_table
from dlm import training  # models import torch on first use: group tables and the bill do not
from dlm.preferences.template import as_completion_text, as_prompt_text


def eval_pairs(dataset: str | Path, limit: int | None = None, seed: int = 0) -> pd.DataFrame:
    """The `eval` rows of a preference dataset as plain-text prompt/chosen/rejected with their rater."""
    rows = [r for r in read_jsonl(dataset) if r.get("split") == "eval"]
    frame = pd.DataFrame([{"user_id": r["user_id"], "interaction_id": r["interaction_id"],
                           "prompt": as_prompt_text(r["prompt"]), "chosen": as_completion_text(r["chosen"]),
                           "rejected": as_completion_text(r["rejected"])} for r in rows])
    if limit and len(frame) > limit:
        frame = frame.sample(limit, random_state=seed).sort_index()
    return frame.reset_index(drop=True)


LOGLIK = "log-likelihood"
REWARD = "implicit reward (trained models only)"
RULES = {LOGLIK: "mean per-token log-prob of chosen minus rejected (EOS included); every model, the base included",
         REWARD: "DPO implicit reward margin against the base model; trained models only"}


def pair_margins(model_path: str, pairs: pd.DataFrame, reference: dict[str, np.ndarray] | None,
                 batch_size: int = 16) -> dict[str, np.ndarray]:
    """Log-probs of chosen and rejected under one model, its log-likelihood margin and (with a reference) reward.

    `margin` is the implicit reward margin when `reference` is given, else the log-likelihood margin.
    """
    model, tok = training.load_causal_lm(model_path)
    chosen, n_c = training.sequence_logprobs(model, tok, pairs["prompt"].tolist(), pairs["chosen"].tolist(), batch_size)
    rejected, n_r = training.sequence_logprobs(model, tok, pairs["prompt"].tolist(), pairs["rejected"].tolist(), batch_size)
    loglik = chosen / np.maximum(n_c, 1) - rejected / np.maximum(n_r, 1)
    out = {"chosen": chosen, "rejected": rejected, "loglik": loglik, "margin": loglik}
    if reference is not None:
        out["reward"] = out["margin"] = (chosen - reference["chosen"]) - (rejected - reference["rejected"])
    return out


@dataclass
class HeldOutScores:
    """The held-out pairs and each model's margin per pair under each rule."""

    pairs: pd.DataFrame
    loglik: dict[str, np.ndarray]  # every model, "base" included
    reward: dict[str, np.ndarray]  # trained models only

    def margins(self, rule: str = LOGLIK) -> dict[str, np.ndarray]:
        """model → margin under `rule` (LOGLIK or REWARD)."""
        if rule not in RULES:
            raise DLMError(f"unknown scoring rule {rule!r}; use one of {', '.join(RULES)}")
        return self.loglik if rule == LOGLIK else self.reward


def score_models(dataset: str | Path, base_model: str, models: dict[str, str], limit: int | None = None,
                 batch_size: int = 16) -> HeldOutScores:
    """Margins of the base model and each trained model on the held-out pairs of `dataset`, under both rules."""
    pairs = eval_pairs(dataset, limit)
    if pairs.empty:
        raise DLMError(f"{dataset}: no `eval` rows to score; prepare the data with --eval-ratio above 0")
    base = pair_margins(base_model, pairs, None, batch_size)
    loglik, reward = {"base": base["loglik"]}, {}
    for name, path in models.items():
        m = pair_margins(path, pairs, base, batch_size)
        loglik[name], reward[name] = m["loglik"], m["reward"]
    return HeldOutScores(pairs, loglik, reward)


def agreement(margin: np.ndarray) -> np.ndarray:
    """1 when the model ranks chosen above rejected, 0 when below, ½ on a tie."""
    return np.where(margin > 0, 1.0, np.where(margin < 0, 0.0, 0.5))


def accuracy_by_arm(pairs: pd.DataFrame, margins: dict[str, np.ndarray]) -> pd.DataFrame:
    """Overall accuracy per arm pooled over its replicate runs (runs × raters), with variance components."""
    long = pd.concat([pd.DataFrame({"arm": arm_of(m), "run": m, "user_id": pairs["user_id"].astype(str),
                                    "score": agreement(v)}) for m, v in margins.items()], ignore_index=True)
    return replicate_table(long, ["arm"], "run", "user_id")


def style_by_arm(pairs: pd.DataFrame, margins: dict[str, np.ndarray], marker: str | None = None) -> pd.DataFrame:
    """The planted-effect read-out per run, then per arm: mean and between-run SD of the formal share."""
    marker = marker or planted_spec().marker
    runs = pd.DataFrame([{"arm": arm_of(m), "run": m, "prefers_formal": style_preference(pairs, v, marker)}
                         for m, v in margins.items()])
    table = runs.groupby("arm", sort=False)["prefers_formal"].agg(["mean", "std", "count"]).rename(
        columns={"mean": "prefers_formal", "std": "between_model_sd", "count": "runs"})
    # What `planted_verdict` needs for its interval travels with the table, so its callers stay as they are.
    table.attrs.update(pairs=pairs, margins=dict(margins), marker=marker)
    return table


def formal_won_share(dataset: str | Path, split: str = "train", marker: str = "Certainly.",
                     raters: set[str] | None = None) -> float:
    """The planted effect in a dataset: weighted share of style-differing pairs won by the marked style.

    `raters` restricts it to those raters' pairs (e.g. one age group).
    """
    wins = total = 0.0
    for row in read_jsonl(dataset):
        if raters is not None and row["user_id"] not in raters:
            continue
        chosen, rejected = (as_completion_text(row[k]).lstrip().startswith(marker) for k in ("chosen", "rejected"))
        if row.get("split", "train") == split and chosen != rejected:
            wins, total = wins + row.get("weight", 1.0) * chosen, total + row.get("weight", 1.0)
    return wins / total if total else float("nan")


def _style_choice(pairs: pd.DataFrame, margin: np.ndarray, marker: str) -> tuple[np.ndarray, np.ndarray]:
    """Mask of the pairs whose answers differ in style, and 1 where the model prefers the marked one there."""
    marker = marker.strip()  # completions carry a leading space in the raw template
    chosen_marked = pairs["chosen"].str.lstrip().str.startswith(marker).to_numpy()
    differ = chosen_marked != pairs["rejected"].str.lstrip().str.startswith(marker).to_numpy()
    prefers = np.where(chosen_marked, margin, -np.asarray(margin)) > 0
    return differ, prefers[differ].astype(float)


def style_preference(pairs: pd.DataFrame, margin: np.ndarray, marker: str = "Certainly.") -> float:
    """Share of held-out pairs whose two answers differ in style where the model prefers the marked style.

    For the generated sample, whose planted effect is a preference for `formal` answers (opening
    "Certainly.") among raters aged 55+: a model aligned to older raters scores higher here.
    """
    _, prefers = _style_choice(pairs, margin, marker)
    return float(np.mean(prefers)) if len(prefers) else float("nan")


def style_difference(pairs: pd.DataFrame, margins: dict[str, np.ndarray], arm_a: str, arm_b: str,
                     marker: str) -> dict[str, Any]:
    """Arm A's minus arm B's preference for the marked style, pooled over matched runs, with its interval.

    Over held-out raters (the crossed clusters), and over panel draws and seeds where the runs have
    several (`dlm.pooling`, as 06 pools arm contrasts); `scope` names the estimand.
    """
    runs = [parse_run(m) for m in margins]
    matched = matched_pairs([arm_a, arm_b], runs, base=None, contrasts=[(arm_a, arm_b)])
    design = contrast_design([x for x, _ in matched], [y for _, y in matched])
    differ, _ = _style_choice(pairs, margins[matched[0][0]], marker)
    diffs = np.stack([_style_choice(pairs, margins[x], marker)[1] - _style_choice(pairs, margins[y], marker)[1]
                      for x, y in matched])
    raters = pairs["user_id"].astype(str).to_numpy()[differ]
    r = pooled_contrast(_linearised_by_rater(diffs, raters), design, null=0.0, bounds=(-1.0, 1.0))
    return {**r, "raters": len(set(raters)), "runs": len(matched)}


def group_columns(survey: pd.DataFrame, attributes: list[tuple[str, str]]) -> pd.DataFrame:
    """user_id → group labels: each quota attribute's category, and US-REP membership."""
    cols = {name: survey[column].astype(str) for name, column in attributes}
    out = pd.DataFrame({"user_id": survey["user_id"].astype(str), **cols})
    out["US-REP"] = np.where(survey["included_in_US_REP"].astype(bool), "US-REP", "not US-REP")
    return out.set_index("user_id")


def accuracy_by_group(pairs: pd.DataFrame, margins: dict[str, np.ndarray], groups: pd.DataFrame,
                      min_raters: int = 5) -> pd.DataFrame:
    """Accuracy per model, overall and per group, with rater-clustered 95% intervals."""
    rows: list[dict[str, Any]] = []
    g = groups.reindex(pairs["user_id"].astype(str))
    for model, margin in margins.items():
        agree = agreement(margin)
        slices = [("overall", "all", np.ones(len(pairs), dtype=bool))]
        slices += [(col, val, (g[col] == val).to_numpy()) for col in g.columns for val in sorted(g[col].dropna().unique())]
        for attribute, value, mask in slices:
            raters = pairs.loc[mask, "user_id"].to_numpy()
            if len(set(raters)) < min_raters:
                continue  # too few raters for a clustered interval
            ci = cluster_t_interval(agree[mask], raters)
            rows.append({"model": model, "attribute": attribute, "group": value, "pairs": int(mask.sum()),
                         "raters": len(set(raters)), "accuracy": ci["estimate"], "ci_low": ci["ci_low"],
                         "ci_high": ci["ci_high"]})
    return pd.DataFrame(rows, columns=["model", "attribute", "group", "pairs", "raters", "accuracy", "ci_low",
                                       "ci_high"])


def accuracy_table(scores: HeldOutScores, groups: pd.DataFrame, min_raters: int = 5) -> pd.DataFrame:
    """accuracy_by_group under both rules, with a `rule` column (the reward rule has no base row)."""
    parts = [accuracy_by_group(scores.pairs, scores.margins(rule), groups, min_raters).assign(rule=rule)
             for rule in RULES]
    table = pd.concat(parts, ignore_index=True)
    return table[["rule", *[c for c in table.columns if c != "rule"]]]


@dataclass
class PopulationAccuracy:
    """Overall accuracy over the held-out raters and post-stratified to a target population."""

    table: pd.DataFrame
    weights: RakingWeights

    def notes(self) -> str:
        """What raking had to merge or leave out, in words."""
        w = self.weights
        lines = [f"{len(w.weights)} held-out raters in the target population's locale are weighted "
                 f"(largest margin error after raking {w.max_margin_error:.1e})."]
        if w.max_margin_error > 1e-3:
            lines.append("**Raking did not converge**: these few held-out raters cannot match every target margin at "
                         "once; the post-stratified row is approximate (raise `eval_ratio` or `max_pairs`).")
        lines += [f"{a}: merged (fewer than the minimum of held-out raters): {', '.join(c)}"
                  for a, c in w.merged.items()]
        lines += [f"{a}: target share {p:.3f} has no held-out rater and is left out (rest renormalised)"
                  for a, p in w.dropped_targets.items()]
        return "\n".join(lines)


def population_accuracy(scores: HeldOutScores, survey: pd.DataFrame, config: PanelConfig, rule: str = LOGLIK,
                        min_raters: int = 5) -> PopulationAccuracy:
    """Per model: accuracy over all held-out raters, and raked to `config`'s target population (locale, quotas)."""
    pairs = scores.pairs
    raters = pairs["user_id"].astype(str).to_numpy()
    weights = population_weights(survey, list(raters), config, min_raters)
    rows = []
    for model, margin in scores.margins(rule).items():
        agree = agreement(margin)
        for population, w in (("held-out raters", None), (f"target population ({Path(config.path).name})",
                                                          weights.weights)):
            ci = weighted_cluster_interval(agree, raters, w)
            rows.append({"model": model, "rule": rule, "population": population, "raters": ci.raters,
                         "pairs": ci.pairs, "accuracy": ci.estimate, "ci_low": ci.ci_low, "ci_high": ci.ci_high})
    return PopulationAccuracy(pd.DataFrame(rows), weights)


def arm_agreement(margins: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per arm, the agreement on each held-out pair averaged over its replicate runs."""
    by_arm: dict[str, list[np.ndarray]] = {}
    for run, margin in margins.items():
        by_arm.setdefault(arm_of(run), []).append(agreement(margin))
    return {arm: np.mean(v, axis=0) for arm, v in by_arm.items()}


def paired_by_group(pairs: pd.DataFrame, margins: dict[str, np.ndarray], groups: pd.DataFrame,
                    comparisons: list[tuple[str, str]], min_raters: int = 5) -> pd.DataFrame:
    """Accuracy of arm A minus arm B on the same held-out pairs, overall and per group, over draws and seeds.

    Replicate runs are matched as 06 matches them (`replicates.matched_pairs`) and pooled with
    `dlm.pooling` (raters the crossed clusters, runs of one panel draw one unit), so that the
    interval includes between-draw and between-seed variation where the design has it; `estimand`
    says what it averages over. `p_holm` is Holm-adjusted over the groups of each comparison (the
    overall row is its own family).
    """
    g = groups.reindex(pairs["user_id"].astype(str))
    raters = pairs["user_id"].astype(str).to_numpy()
    slices = [("overall", "all", np.ones(len(pairs), dtype=bool))]
    slices += [(col, val, (g[col] == val).to_numpy()) for col in g.columns for val in sorted(g[col].dropna().unique())]
    runs = [parse_run(m) for m in margins]
    arms = {r.arm for r in runs}
    rows = []
    for a, b in comparisons:
        if a not in arms or b not in arms:
            continue
        matched = matched_pairs([a, b], runs, base=None, contrasts=[(a, b)])
        design = contrast_design([x for x, _ in matched], [y for _, y in matched])
        diffs = np.stack([agreement(margins[x]) - agreement(margins[y]) for x, y in matched])
        first = len(rows)
        for attribute, value, mask in slices:
            if len(set(raters[mask])) < min_raters:
                continue
            r = pooled_contrast(_linearised_by_rater(diffs[:, mask], raters[mask]), design, null=0.0, bounds=(-1, 1))
            rows.append({"comparison": f"{a} − {b}", "attribute": attribute, "group": value, "pairs": int(mask.sum()),
                         "raters": len(set(raters[mask])), "runs": len(matched), "units": design.units,
                         "estimand": design.scope, "difference": r["estimate"], "ci_low": r["ci_low"],
                         "ci_high": r["ci_high"], "p_value": r["p_value"]})
        family = [i for i in range(first, len(rows)) if rows[i]["attribute"] != "overall"
                  and np.isfinite(rows[i]["p_value"])]
        for i, p in zip(family, holm([rows[i]["p_value"] for i in family]), strict=True):
            rows[i]["p_holm"] = p
        for i in range(first, len(rows)):
            rows[i].setdefault("p_holm", rows[i]["p_value"] if rows[i]["attribute"] == "overall" else float("nan"))
    return pd.DataFrame(rows, columns=["comparison", "attribute", "group", "pairs", "raters", "runs", "units",
                                       "estimand", "difference", "ci_low", "ci_high", "p_value", "p_holm"])


def _linearised_by_rater(values: np.ndarray, raters: np.ndarray) -> np.ndarray:
    """(runs, raters) table whose cell mean is the pair-weighted mean and whose spread is its linearisation.

    Cell = m + n_g (v̄_g − m) / n̄ (m the pair-weighted mean over all runs): the mean over cells is m,
    and for one run the between-rater variance gives exactly the CR1 rater-clustered standard error.
    """
    labels, idx = np.unique(raters, return_inverse=True)
    n = np.bincount(idx, minlength=len(labels)).astype(float)
    sums = np.stack([np.bincount(idx, weights=v, minlength=len(labels)) for v in values])
    m = values.mean()
    return m + (sums - n * m) / n.mean()


# ----------------------------------------------------------------------------- the planted effect


@dataclass(frozen=True)
class PlantedSpec:
    """What the generated sample plants: raters in `older_ages` prefer answers opening with `marker`."""

    marker: str
    older_ages: tuple[str, ...]


def planted_spec() -> PlantedSpec:
    """The planted effect as the generator defines it (dlm.data.synth's constants)."""
    return PlantedSpec(synth.STYLE_TEXT["formal"][0][0], tuple(synth.OLDER_AGES))


def older_target_share(config: PanelConfig, spec: PlantedSpec) -> float:
    """The target population's share in the planted older age groups, from the config's age quota."""
    for attr in config.attributes:
        if attr.column == "age" and attr.proportions:
            total = sum(attr.proportions.values())
            return sum(attr.proportions.get(a, 0.0) for a in spec.older_ages) / total
    raise DLMError(f"{config.path}: no `age` attribute with population_proportions; the planted-effect "
                   "verdict needs each compared arm's target age distribution")


@dataclass(frozen=True)
class PlantedVerdict:
    """Does the arm whose target population is older prefer the planted style more, beyond the noise?"""

    older_arm: str
    older_share: float
    older_prefers: float
    younger_arm: str
    younger_share: float
    younger_prefers: float
    marker: str
    difference: float = float("nan")  # older − younger preference, pooled over matched runs
    ci_low: float = float("nan")  # 95% interval of the difference (NaN: none could be computed)
    ci_high: float = float("nan")
    p_value: float = float("nan")
    estimand: str = "no interval (no per-pair scores)"  # what the interval averages over
    raters: int = 0

    @property
    def recovered(self) -> bool:
        """True only when the difference's interval lies above 0 (excludes no difference, planted direction)."""
        return bool(np.isfinite(self.ci_low) and self.ci_low > 0)

    def sentence(self) -> str:
        """The verdict in one line of Markdown."""
        word = "recovered" if self.recovered else "NOT recovered"
        interval = (f"difference {self.difference:+.3f}, 95% interval [{self.ci_low:+.3f}, {self.ci_high:+.3f}] over "
                    f"{self.raters} held-out raters, {self.estimand}" if np.isfinite(self.ci_low)
                    else f"no interval: {self.estimand}")
        return (f"**Planted direction {word}:** `{self.older_arm}` (target {self.older_share:.0%} in the planted "
                f"age groups) prefers answers opening “{self.marker}” in {self.older_prefers:.0%} of "
                f"style-differing held-out pairs, `{self.younger_arm}` (target {self.younger_share:.0%}) in "
                f"{self.younger_prefers:.0%}; {interval}.")


def planted_verdict(style: pd.DataFrame, arm_configs: dict[str, PanelConfig], spec: PlantedSpec | None = None,
                    pairs: pd.DataFrame | None = None,
                    margins: dict[str, np.ndarray] | None = None) -> PlantedVerdict | None:
    """Compare the scored arms with the oldest and the youngest target population (None if fewer than two differ).

    The interval needs the held-out pairs and every run's margins: given here, or carried by a
    `style_by_arm` table; without them the verdict has no interval and is never "recovered".
    """
    spec = spec or planted_spec()
    shares = {arm: older_target_share(c, spec) for arm, c in arm_configs.items() if arm in style.index}
    if len(shares) < 2 or max(shares.values()) == min(shares.values()):
        return None
    old, young = max(shares, key=shares.get), min(shares, key=shares.get)
    pairs = style.attrs.get("pairs") if pairs is None else pairs
    margins = style.attrs.get("margins") if margins is None else margins
    interval = {}
    if pairs is not None and margins is not None:
        d = style_difference(pairs, margins, old, young, spec.marker)
        interval = dict(difference=d["estimate"], ci_low=d["ci_low"], ci_high=d["ci_high"], p_value=d["p_value"],
                        estimand=d.get("scope", "conditional on the trained models"), raters=d["raters"])
    return PlantedVerdict(old, shares[old], float(style.loc[old, "prefers_formal"]), young, shares[young],
                          float(style.loc[young, "prefers_formal"]), spec.marker, **interval)


def accuracy_record(by_arm: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Accuracy per arm as 07's summary file stores it (and its headline plot draws it): estimate, interval, runs."""
    table = by_arm.reset_index() if "arm" not in by_arm.columns else by_arm
    return {str(r["arm"]): {k: float(r[k]) if pd.notna(r[k]) else None for k in ("estimate", "ci_low", "ci_high")}
            | {"runs": int(r["runs"])}
            | {k: json_ready(r[k]) for k in ("scope", "units") if k in r and not pd.isna(r[k])}
            for _, r in table.iterrows()}


def write_summary(path: str | Path, by_arm: pd.DataFrame, verdict: PlantedVerdict | None, rule: str,
                  synthetic: bool) -> dict[str, Any]:
    """Write 07's headline numbers (accuracy per arm, the planted verdict) as JSON for the report and the terminal."""
    record = {"rule": rule, "synthetic": synthetic, "accuracy": accuracy_record(by_arm),
              "planted": None if verdict is None else json_ready({**vars(verdict), "recovered": verdict.recovered,
                                                                  "sentence": verdict.sentence()})}
    write_json_atomic(Path(path), record)
    return record
