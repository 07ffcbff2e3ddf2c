"""Aligned to whom? Held-out preference accuracy of each model, overall and per demographic group.

For a trained model the score of a pair is its implicit DPO reward margin,
(log π(chosen) − log π_ref(chosen)) − (log π(rejected) − log π_ref(rejected)), with the base model
as reference; for the base model itself, the length-normalised log-likelihood margin (mean
per-token log-prob of chosen minus rejected). A pair counts as agreement when the margin is > 0
(½ when exactly 0). Accuracy is reported overall, per category of each quota attribute and for
PRISM's US-REP subset, with cluster-robust t intervals clustered by rater (a rater's pairs are not
independent). The held-out set is the `eval` split fixed by `dlm prepare` (the same interactions
in every dataset), so no model was trained on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlm.io import read_jsonl
from dlm.replicates import arm_of
from dlm.stats import cluster_t_interval, replicate_table
from dlm.training import as_completion_text, as_prompt_text


def eval_pairs(dataset: str | Path, limit: int | None = None, seed: int = 0) -> pd.DataFrame:
    """The `eval` rows of a preference dataset as plain-text prompt/chosen/rejected with their rater."""
    rows = [r for r in read_jsonl(dataset) if r.get("split") == "eval"]
    frame = pd.DataFrame([{"user_id": r["user_id"], "interaction_id": r["interaction_id"],
                           "prompt": as_prompt_text(r["prompt"]), "chosen": as_completion_text(r["chosen"]),
                           "rejected": as_completion_text(r["rejected"])} for r in rows])
    if limit and len(frame) > limit:
        frame = frame.sample(limit, random_state=seed).sort_index()
    return frame.reset_index(drop=True)


def completion_logps(model, tokenizer, prompts: list[str], completions: list[str],
                     batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(sum, token count) of each completion's log-probs given its prompt; EOS included as in training."""
    import torch

    sums, counts = [], []
    for start in range(0, len(prompts), batch_size):
        enc_p = [tokenizer(p)["input_ids"] for p in prompts[start:start + batch_size]]
        enc_f = [tokenizer(p + c)["input_ids"] + [tokenizer.eos_token_id]
                 for p, c in zip(prompts[start:start + batch_size], completions[start:start + batch_size], strict=True)]
        width = max(len(f) for f in enc_f)
        ids = torch.full((len(enc_f), width), tokenizer.pad_token_id)
        mask = torch.zeros_like(ids)
        for i, f in enumerate(enc_f):
            ids[i, :len(f)], mask[i, :len(f)] = torch.tensor(f), 1
        ids, mask = ids.to(model.device), mask.to(model.device)
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), dim=-1)
        token_lp = logp.gather(-1, ids[:, 1:, None])[..., 0]
        for i, (p, f) in enumerate(zip(enc_p, enc_f, strict=True)):
            span = token_lp[i, len(p) - 1:len(f) - 1]
            sums.append(float(span.sum()))
            counts.append(len(f) - len(p))
    return np.array(sums), np.array(counts)


def pair_margins(model_path: str, pairs: pd.DataFrame, reference: dict[str, np.ndarray] | None,
                 batch_size: int = 16) -> dict[str, np.ndarray]:
    """Log-probs of chosen and rejected under one model, and its margin (implicit reward or normalised LL)."""
    from dlm.models import load_causal_lm

    model, tok = load_causal_lm(model_path)
    tok.padding_side = "right"
    chosen, n_c = completion_logps(model, tok, pairs["prompt"].tolist(), pairs["chosen"].tolist(), batch_size)
    rejected, n_r = completion_logps(model, tok, pairs["prompt"].tolist(), pairs["rejected"].tolist(), batch_size)
    if reference is None:
        margin = chosen / np.maximum(n_c, 1) - rejected / np.maximum(n_r, 1)
    else:
        margin = (chosen - reference["chosen"]) - (rejected - reference["rejected"])
    return {"chosen": chosen, "rejected": rejected, "margin": margin}


def agreement(margin: np.ndarray) -> np.ndarray:
    """1 when the model ranks chosen above rejected, 0 when below, ½ on a tie."""
    return np.where(margin > 0, 1.0, np.where(margin < 0, 0.0, 0.5))


def accuracy_by_arm(pairs: pd.DataFrame, margins: dict[str, np.ndarray]) -> pd.DataFrame:
    """Overall accuracy per arm pooled over its replicate runs (runs × raters), with variance components."""
    long = pd.concat([pd.DataFrame({"arm": arm_of(m), "run": m, "user_id": pairs["user_id"].astype(str),
                                    "score": agreement(v)}) for m, v in margins.items()], ignore_index=True)
    return replicate_table(long, ["arm"], "run", "user_id")


def style_by_arm(pairs: pd.DataFrame, margins: dict[str, np.ndarray]) -> pd.DataFrame:
    """The planted-effect read-out per run, then per arm: mean and between-run SD of the formal share."""
    runs = pd.DataFrame([{"arm": arm_of(m), "run": m, "prefers_formal": style_preference(pairs, v)}
                         for m, v in margins.items()])
    return runs.groupby("arm", sort=False)["prefers_formal"].agg(["mean", "std", "count"]).rename(
        columns={"mean": "prefers_formal", "std": "between_runs_sd", "count": "runs"})


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


def style_preference(pairs: pd.DataFrame, margin: np.ndarray, marker: str = " Certainly.") -> float:
    """Share of held-out pairs whose two answers differ in style where the model prefers the marked style.

    For the generated sample, whose planted effect is a preference for `formal` answers (opening
    "Certainly.") among raters aged 55+: a model aligned to older raters scores higher here.
    """
    chosen_marked = pairs["chosen"].str.startswith(marker)
    differ = chosen_marked != pairs["rejected"].str.startswith(marker)
    prefers = np.where(chosen_marked, margin, -margin)[differ.to_numpy()]
    return float(np.mean(prefers > 0)) if len(prefers) else float("nan")


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


def preference_accuracy(dataset: str | Path, base_model: str, models: dict[str, str], survey: pd.DataFrame,
                        attributes: list[tuple[str, str]], limit: int | None = None,
                        batch_size: int = 16) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """(accuracy table, eval pairs, margins per model) for the base model and each trained model.

    Args:
        dataset: a preference JSONL whose `eval` rows are the held-out pairs (use `full`: every rater).
        base_model: the reference for every implicit reward (and itself scored by normalised likelihood).
        models: name → checkpoint folder.
        attributes: (name, survey column) pairs defining the groups.
        limit: score at most this many eval pairs (a seeded sample) to bound the cost.
    """
    pairs = eval_pairs(dataset, limit)
    base = pair_margins(base_model, pairs, None, batch_size)
    margins = {"base": base["margin"]}
    for name, path in models.items():
        margins[name] = pair_margins(path, pairs, base, batch_size)["margin"]
    return accuracy_by_group(pairs, margins, group_columns(survey, attributes)), pairs, margins
