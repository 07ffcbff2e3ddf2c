"""Whose preferences does the judge share? Judge–human agreement on held-out PRISM pairs, and judge–judge κ.

`judge_agreement` shows the judge the `eval` rows of a prepared dataset (the conversation so far
and the two responses a rater compared), in both orders, and compares its pick with the rater's:
- a pair's judge verdict follows 06's both-orders rule: a response wins only if picked in both
  orders; otherwise (a tie, or the orders disagree) the verdict is a tie;
- agreement per pair: 1 when the verdict is the rater's chosen response, 0 when it is the
  rejected one, ½ for a tie (the tie convention: a judge that always ties agrees 0.5);
- reported overall, per category of each quota attribute and for US-REP, with cluster-robust
  intervals clustered by rater (a rater's pairs are not independent);
- Cohen's κ between judge and rater over the two labels "first/second response in a seeded
  random order" (random, so raters' labels are balanced even though raters never tie); a judge's
  tie counts half for each label, so a judge that always ties (or always picks the first shown
  answer, which the both-orders rule turns into ties) has κ = 0;
- tie rate and inconsistency rate (pairs whose two orders disagree).

Files: `<output>` (the report JSON) and `<output stem>.judgments.jsonl`, one record per (pair,
order), appended as judged so a killed run resumes; replies are cached in `.cache` beside it.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlm.alignment.heldout import accuracy_by_group, group_columns
from dlm.errors import DLMError
from dlm.io import ensure_writable_dir, manifest, read_jsonl, redact_url, sha256_text, write_json_atomic
from dlm.judging.judge import _append, _read_resumable, judge_all, make_judge
from dlm.llm.backends import GenerationParams
from dlm.stats.winrates import cluster_t_interval, combine_orders

AGREEMENT_SYSTEM = ("You are an impartial judge. A user had a conversation with an assistant and saw two candidate "
                    "responses to their last message. Ignore the order in which the responses are shown and their "
                    "length; pick the response that is better for this user.")
# Model families for the same-family warning (a judge grading its own family's questions may favour them).
FAMILIES = (("openai", r"gpt|^o[134]\b|^o[134]-|davinci|chatgpt"), ("meta-llama", r"llama"),
            ("mistral", r"mistral|mixtral|ministral"), ("qwen", r"qwen"), ("google", r"gemma|gemini|bison|palm"),
            ("anthropic", r"claude"), ("microsoft", r"\bphi"), ("deepseek", r"deepseek"), ("cohere", r"command"))


@dataclass(frozen=True)
class AgreementReport:
    """One judge's agreement with the raters of held-out pairs."""

    judge_model: str
    n_pairs: int
    n_raters: int
    agreement: float
    ci_low: float
    ci_high: float
    kappa: float
    tie_rate: float
    inconsistency_rate: float
    by_group: list[dict[str, Any]]  # attribute, group, pairs, raters, accuracy (= agreement), ci_low, ci_high


def model_family(model: str) -> str:
    """A model's family from its id or path (`gpt-4o-mini` → openai, `meta-llama/Llama-3.1-8B` → meta-llama)."""
    name = model.lower().rsplit("/", 1)[-1] if "/" in model else model.lower()
    for family, pattern in FAMILIES:
        if re.search(pattern, name) or re.search(pattern, model.lower()):
            return family
    return name


def same_family_warning(question_model: str | None, judges: list[str]) -> str | None:
    """A warning line when the question writer and a judge come from the same model family."""
    if not question_model or question_model in ("template", ""):
        return None
    shared = [j for j in judges if not j.startswith("oracle:") and model_family(j) == model_family(question_model)]
    if not shared:
        return None
    return (f"the question writer {question_model} and judge(s) {', '.join(shared)} are from the same model family "
            f"({model_family(question_model)}): a judge may favour answers to its own family's questions; add a "
            "judge from another family")


def render_conversation(prompt: Any) -> str:
    """The conversation so far as plain text: a chat message list, or an already rendered string."""
    if isinstance(prompt, str):
        return prompt.strip()
    return "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt if m["role"] != "system")


def _text(completion: Any) -> str:
    return completion if isinstance(completion, str) else "".join(m["content"] for m in completion)


def agreement_messages(conversation: str, first: str, second: str) -> list[dict[str, str]]:
    """The judge's prompt for one held-out pair (answers in the same blocks as 06's judge prompt)."""
    user = (f"Conversation so far:\n{conversation}\n\n[Answer A]\n{first.strip()}\n[End of Answer A]\n\n"
            f"[Answer B]\n{second.strip()}\n[End of Answer B]\n\nWhich response is better for this user? Explain "
            "briefly, then end with exactly one verdict: [[A]] if A is better, [[B]] if B is better, [[C]] for a tie.")
    return [{"role": "system", "content": AGREEMENT_SYSTEM}, {"role": "user", "content": user}]


def held_out_pairs(dataset: str | Path, max_pairs: int | None = None, seed: int = 0) -> pd.DataFrame:
    """The `eval` rows of a prepared dataset (a seeded sample of `max_pairs`), with a seeded random order."""
    rows = [r for r in read_jsonl(dataset) if r.get("split") == "eval"]
    if not rows:
        raise DLMError(f"{dataset} has no held-out rows (split: eval); prepare it with --eval-ratio above 0")
    frame = pd.DataFrame([{"user_id": str(r["user_id"]), "conversation": render_conversation(r["prompt"]),
                           "chosen": _text(r["chosen"]), "rejected": _text(r["rejected"])} for r in rows])
    frame["pair_id"] = [sha256_text(f"{r.user_id}\0{r.conversation}\0{r.chosen}\0{r.rejected}")[:16]
                        for r in frame.itertuples()]
    frame = frame.drop_duplicates("pair_id")
    rank = [hashlib.sha256(f"{seed}|{p}".encode()).hexdigest() for p in frame["pair_id"]]
    frame = frame.assign(_rank=rank).sort_values("_rank")
    if max_pairs:
        frame = frame.head(max_pairs)
    # Label X is the response shown first in order "xy"; which one is the rater's choice is random.
    frame["chosen_is_x"] = [int(r[:2], 16) % 2 == 0 for r in frame["_rank"].str[-2:]]
    return frame.drop(columns="_rank").reset_index(drop=True)


def cohen_kappa(judge: np.ndarray, rater: np.ndarray) -> float:
    """κ between judge labels (1: X, 0: Y, 0.5: tie, counted half for each) and rater labels (1/0)."""
    judge, rater = np.asarray(judge, float), np.asarray(rater, float)
    p_o = float(np.mean(judge * rater + (1 - judge) * (1 - rater)))
    pj, pr = judge.mean(), rater.mean()
    p_e = float(pj * pr + (1 - pj) * (1 - pr))
    return (p_o - p_e) / (1 - p_e) if p_e < 1 else float("nan")


def judge_agreement(dataset: str | Path, survey: pd.DataFrame, judge_model: str, output: str | Path,
                    attributes: list[tuple[str, str]], judge_backend: str = "openai",
                    judge_base_url: str | None = None, oracle_spec: str | Path | None = None,
                    max_pairs: int | None = None, seed: int = 0, batch_size: int = 16) -> AgreementReport:
    """Judge held-out pairs in both orders and report agreement with the raters (see the module doc).

    Args:
        dataset: a prepared preference JSONL with `split: eval` rows (e.g. `full.jsonl`: every rater).
        survey: the survey table (dlm.data.prism) for the groups.
        judge_model: the judge (`oracle:GROUP` with judge_backend="oracle").
        output: the report JSON; the judgments JSONL and the reply cache go beside it.
        attributes: (name, survey column) pairs defining the groups (the panel config's quota attributes).
    """
    output = Path(output)
    ensure_writable_dir(output.parent)
    judge = make_judge(judge_backend, judge_model, output.parent / ".cache", judge_base_url, batch_size,
                       oracle_spec, seed)
    pairs = held_out_pairs(dataset, max_pairs, seed)
    tasks = []
    for p in pairs.itertuples():
        x, y = (p.chosen, p.rejected) if p.chosen_is_x else (p.rejected, p.chosen)
        for order, (first, second) in (("xy", (x, y)), ("yx", (y, x))):
            tasks.append({"key": (p.pair_id, order, judge_model, judge.identity), "order": order,
                          "messages": agreement_messages(p.conversation, first, second)})
    records_path = output.with_name(output.stem + ".judgments.jsonl")
    # Keyed by the judge's identity too (a local judge's weights, an oracle's rule): nothing stale is reused.
    done = {(r["pair_id"], r["order"], r["judge_model"], r.get("judge_identity")): r
            for r in _read_resumable(records_path)}
    todo = [t for t in tasks if t["key"] not in done]
    params = GenerationParams(temperature=0.0, max_tokens=512, seed=seed)
    for start in range(0, len(todo), 32):  # written as we go: a kill loses at most one chunk
        chunk = todo[start:start + 32]
        verdicts = judge_all(judge, chunk, judge_backend == "hf", params, batch_size)
        new = [{"pair_id": t["key"][0], "order": t["order"], "judge_model": judge_model,
                "judge_identity": judge.identity, "verdict": v, "judge_raw": raw}
               for t, (v, raw) in zip(chunk, verdicts, strict=True)]
        _append(records_path, new)
        done.update({t["key"]: r for t, r in zip(chunk, new, strict=True)})
    # Per pair: which label the judge picked in each order (X shown first in "xy", second in "yx").
    picked_x = {"xy": {"A": 1.0, "B": 0.0, "C": 0.5}, "yx": {"A": 0.0, "B": 1.0, "C": 0.5}}
    ident = (judge_model, judge.identity)
    xy = np.array([picked_x["xy"][done[(p, "xy", *ident)]["verdict"]] for p in pairs["pair_id"]])
    yx = np.array([picked_x["yx"][done[(p, "yx", *ident)]["verdict"]] for p in pairs["pair_id"]])
    verdict_x = np.where((xy == 1) & (yx == 1), 1.0, np.where((xy == 0) & (yx == 0), 0.0, 0.5))
    rater_x = pairs["chosen_is_x"].to_numpy(dtype=float)
    agree = np.where(verdict_x == 0.5, 0.5, (verdict_x == rater_x).astype(float))
    overall = cluster_t_interval(agree, pairs["user_id"].to_numpy())
    by_group = accuracy_by_group(pairs, {judge_model: agree * 2 - 1}, group_columns(survey, attributes))
    report = AgreementReport(
        judge_model=judge_model, n_pairs=len(pairs), n_raters=int(pairs["user_id"].nunique()),
        agreement=overall["estimate"], ci_low=overall["ci_low"], ci_high=overall["ci_high"],
        kappa=cohen_kappa(verdict_x, rater_x), tie_rate=float(np.mean(verdict_x == 0.5)),
        inconsistency_rate=float(np.mean(xy != yx)),
        by_group=by_group.drop(columns="model").to_dict("records"))
    write_json_atomic(output, {**asdict(report), "settings": manifest("judge_agreement", config={
        "dataset": str(dataset), "judge_model": judge_model, "judge_backend": judge_backend,
        "judge_base_url": redact_url(judge_base_url), "oracle_spec": str(oracle_spec) if oracle_spec else None,
        "max_pairs": max_pairs}, seed=seed)})
    return report


def judges_kappa(records: pd.DataFrame, judge_a: str, judge_b: str) -> dict[str, float]:
    """Agreement between two judges of the same evaluation: Cohen's κ over their both-orders verdicts.

    Labels per (question, pair): model_a wins, tie, model_b wins (both judges can tie, so ties are
    a third label here); also the share of exact agreement.
    """
    c = combine_orders(records)
    wide = c.pivot_table(index=["question_id", "model_a", "model_b"], columns="judge_model", values="score")
    if judge_a not in wide or judge_b not in wide:
        raise DLMError(f"judges {judge_a} and {judge_b} did not both judge this evaluation")
    wide = wide[[judge_a, judge_b]].dropna()
    a, b = wide[judge_a].to_numpy(), wide[judge_b].to_numpy()
    labels = [0.0, 0.5, 1.0]
    p_o = float(np.mean(a == b))
    p_e = float(sum(np.mean(a == k) * np.mean(b == k) for k in labels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kappa = (p_o - p_e) / (1 - p_e) if p_e < 1 else float("nan")
    return {"judge_a": judge_a, "judge_b": judge_b, "n": len(a), "agreement": p_o, "kappa": kappa}


def question_writer(questions_dir: str | Path) -> str | None:
    """The model that wrote the questions in a `dlm questions` folder (None if not recorded)."""
    files = sorted(Path(questions_dir).glob("clause_*.json"))
    if not files:
        return None
    data = json.loads(files[0].read_text(encoding="utf-8"))
    return None if data.get("backend") == "template" else data.get("question_model")


def load_report(path: str | Path) -> dict[str, Any]:
    """A written agreement report (JSON)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def plot_agreement_by_group(reports: dict[str, dict[str, Any]], attribute: str = "age"):
    """Agreement with raters per group of one attribute, one marker per judge (95% CI clustered by rater)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    names = list(reports)
    for j, name in enumerate(names):
        rows = [r for r in reports[name]["by_group"] if r["attribute"] in ("overall", attribute)]
        x = np.arange(len(rows)) + (j - (len(names) - 1) / 2) * 0.8 / max(len(names), 1)
        acc = np.array([r["accuracy"] for r in rows])
        ax.errorbar(x, acc, yerr=[acc - [r["ci_low"] for r in rows], [r["ci_high"] for r in rows] - acc], fmt="o",
                    capsize=2, label=name)
        ax.set_xticks(np.arange(len(rows)), [r["group"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.axhline(0.5, color="k", ls=":", lw=1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("agreement with the rater (tie = ½)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
