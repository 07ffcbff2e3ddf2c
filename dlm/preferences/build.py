"""Preference pairs for DPO from PRISM utterances: `full`, `us_rep`, `hard` and `soft` datasets.

Pair semantics: an interaction is one (conversation, turn). Its pairs are all pairs of its
responses whose scores differ by at least `min_score_gap`; the higher score is `chosen`. Empty
responses (blank or PRISM's literal "EMPTY STRING") are dropped, and so are pairs of identical
texts. The prompt of turn t > 0 carries the conversation so far: each earlier user prompt and the
response the participant chose at that turn (from conversations.jsonl; role `model` → `assistant`).

`size_matched` (formerly `random`, still accepted) is a control: a size-matched panel (panel_size
raters drawn uniformly from the same pool, no quotas), so that differences between `hard` and
`size_matched` come from who is represented, not from how many. `soft_resampled` is a control
that separates weighting from data size: `soft`'s training rows drawn with replacement, with
probability ∝ weight, as many as the `hard` panel of the same draw has training rows, weight 1.

Weights: `full`, `us_rep`, `hard`, `size_matched` and `soft_resampled` rows weigh 1. `soft` rows weigh
the rater's selection probability π, normalised by `weight_normalization`:
- `mean` (default): rescaled so the weights average 1 over training rows (the loss scale of
  unweighted DPO, so every arm puts the same expected gradient mass into each step);
- `per-rater`: each rater's rows share π equally, so a rater's total weight is ∝ π however many
  pairs they gave (one person, one voice), then rescaled to average 1 over training rows;
- `none`: π as is.
Raters with π = 0 (Monte Carlo cannot see probabilities below 1/N) contribute nothing; they are
counted in the manifest, not dropped silently.

The train/eval split is decided here, once, and shared by every mode. By default (`split_by`
`rater`, see dlm.data.split) a stratified set of raters is held out *before* any panel is drawn: they
add no training row to any arm. Each arm's file carries, as `eval` rows (weight 1), the pairs of the
held-out raters in its population (full: all of them; us_rep: the US-REP ones; panel modes: those in
the panel config's locale), so the eval loss during training is on held-out members of the arm's
own population and `full.jsonl` holds the whole held-out set. `split_by="interaction"` hashes the
interaction id with the split seed instead (raters then appear on both sides; the manifest's
`heldout.train_eval_rater_overlap` counts them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlm import sortition
from dlm.data.prism import check_links, load_table
from dlm.data.split import SPLIT_BY, training_survey
from dlm.errors import DLMError
from dlm.io import commit_output_set, manifest, output_lock, write_csv, write_jsonl_atomic
from dlm.preferences.template import render_completion, render_prompt

MODES = ("hard", "soft", "us_rep", "full", "size_matched", "soft_resampled")
PANEL_MODES = ("hard", "soft", "size_matched", "soft_resampled")
DEPRECATED_MODES = {"random": "size_matched"}  # the seed's name, confusable with the `random` algorithm
FORMATS = ("chat", "raw")
NORMALIZATIONS = ("mean", "per-rater", "none")
EMPTY = "EMPTY STRING"
DATA_LICENCE = "CC-BY-NC-4.0 (PRISM model responses); human-written text CC-BY-4.0"


@dataclass
class PrepareOptions:
    """Everything that decides a preference dataset's content."""

    mode: str = "full"
    panel_config: str | None = None
    panel_algorithm: str = "legacy"
    panel_seed: int = 0
    num_panel_samples: int = 2000
    leximin_time_limit: float = 600.0
    dataset_format: str = "chat"
    system_prompt: str | None = None
    min_score_gap: int = 1
    eval_ratio: float = 0.0
    split_by: str = "rater"
    split_seed: int = 0
    weight_normalization: str = "mean"

    def validate(self) -> None:
        """Raise DLMError for option values that cannot work."""
        self.mode = DEPRECATED_MODES.get(self.mode, self.mode)
        for name, value, allowed in (("mode", self.mode, MODES), ("dataset-format", self.dataset_format, FORMATS),
                                     ("weight-normalization", self.weight_normalization, NORMALIZATIONS),
                                     ("split-by", self.split_by, SPLIT_BY),
                                     ("panel-algorithm", self.panel_algorithm, sortition.ALGORITHMS)):
            if value not in allowed:
                raise DLMError(f"--{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.mode in PANEL_MODES and not self.panel_config:
            raise DLMError(f"--mode {self.mode} needs --panel-config")
        if not 0 <= self.eval_ratio < 1:
            raise DLMError(f"--eval-ratio must be in [0, 1), got {self.eval_ratio}")
        if self.min_score_gap < 0:
            raise DLMError(f"--min-score-gap must be >= 0, got {self.min_score_gap}")


@dataclass
class PreferenceData:
    """Built rows plus what the manifest reports about them."""

    rows: list[dict[str, Any]]
    counts: dict[str, Any]
    selection: dict[str, Any] = field(default_factory=dict)
    probabilities: pd.DataFrame | None = None
    panel: list[str] | None = None


def build_pairs(utterances: pd.DataFrame, min_score_gap: int = 1) -> tuple[pd.DataFrame, dict[str, int]]:
    """All scored response pairs per interaction, chosen = higher score; with drop counts by reason."""
    u = utterances.reset_index(drop=True)
    u = u.assign(_row=np.arange(len(u)), _text=u["model_response"].astype(str))
    empty = u["_text"].str.strip().isin(["", EMPTY])
    drops = {"empty_responses": int(empty.sum())}
    u = u[~empty]
    cols = ["_row", "conversation_id", "turn", "user_id", "interaction_id", "_text", "score"]
    # An interaction is one (conversation, turn): key on both, not on interaction_id alone.
    m = u[cols].merge(u[["_row", "conversation_id", "turn", "_text", "score"]], on=["conversation_id", "turn"],
                      suffixes=("_a", "_b"))
    m = m[m["_row_a"] < m["_row_b"]]
    same_text = m["_text_a"] == m["_text_b"]
    drops["identical_text_pairs"] = int(same_text.sum())
    m = m[~same_text]
    gap = (m["score_a"] - m["score_b"]).abs()
    small = gap < max(min_score_gap, 1e-9)  # equal scores never make a pair, even with --min-score-gap 0
    drops["score_gap_below_min"] = int(small.sum())
    m = m[~small].sort_values(["_row_a", "_row_b"], kind="stable")
    a_wins = (m["score_a"] > m["score_b"]).to_numpy()
    pairs = pd.DataFrame({
        "user_id": m["user_id"].to_numpy(), "interaction_id": m["interaction_id"].to_numpy(),
        "conversation_id": m["conversation_id"].to_numpy(), "turn": m["turn"].to_numpy().astype(int),
        "chosen_text": np.where(a_wins, m["_text_a"], m["_text_b"]),
        "rejected_text": np.where(a_wins, m["_text_b"], m["_text_a"]),
        "score_chosen": np.where(a_wins, m["score_a"], m["score_b"]).astype(int),
        "score_rejected": np.where(a_wins, m["score_b"], m["score_a"]).astype(int),
    })
    return pairs, drops


def conversation_context(conversations: pd.DataFrame) -> dict[str, dict[int, tuple[str, str]]]:
    """conversation_id -> turn -> (user prompt, chosen response) from conversation histories."""
    context: dict[str, dict[int, tuple[str, str]]] = {}
    for cid, history in zip(conversations["conversation_id"], conversations["conversation_history"], strict=True):
        turns: dict[int, list[str | None]] = {}
        for i, entry in enumerate(history):
            turn = entry.get("turn", 0) if isinstance(entry, dict) else None
            if not isinstance(turn, int) or isinstance(turn, bool) or turn < 0:
                what = f"turn {turn!r}" if isinstance(entry, dict) else "an entry that is not an object"
                raise DLMError(f"conversations.jsonl: conversation {cid} conversation_history[{i}] has {what}; "
                               "each entry is an object with an integer turn >= 0, role and content")
            slot = turns.setdefault(turn, [None, None])
            if entry.get("role") == "user" and slot[0] is None:
                slot[0] = entry.get("content", "")
            elif entry.get("role") == "model" and entry.get("if_chosen") and slot[1] is None:
                slot[1] = entry.get("content", "")
        context[cid] = {t: (p or "", "" if (r or "").strip() == EMPTY else (r or "")) for t, (p, r) in turns.items()}
    return context


def prompt_messages(context: dict[str, dict[int, tuple[str, str]]], conversation_id: str, turn: int, prompt: str,
                    system_prompt: str | None) -> list[dict[str, str]]:
    """The conversation so far as chat messages, ending with the current user prompt."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    if turn > 0:
        turns = context.get(conversation_id)
        if turns is None:
            raise DLMError(f"conversation {conversation_id} (turn {turn}) is missing from conversations.jsonl; "
                           "pass the matching --conversations file")
        for t in range(turn):
            if t not in turns:
                raise DLMError(f"conversations.jsonl: conversation {conversation_id} has no turn {t} in its history")
            user, chosen = turns[t]
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": chosen}]
    messages.append({"role": "user", "content": prompt})
    return messages


def split_of(key: str, ratio: float, seed: int) -> str:
    """`eval` for a stable, seed-dependent fraction `ratio` of keys; `train` otherwise."""
    if ratio <= 0:
        return "train"
    h = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2**64
    return "eval" if h < ratio else "train"


def rater_weights(opts: PrepareOptions, survey: pd.DataFrame, progress: bool = False) -> tuple[pd.Series, dict, Any]:
    """Weight per rater for the mode (NaN-free; raters absent from the Series are excluded).

    `survey` is the training pool: held-out raters are already removed (dlm.split.training_survey).
    """
    if opts.mode == "full":
        return pd.Series(1.0, index=survey["user_id"].astype(str)), {}, None
    if opts.mode == "us_rep":
        ids = survey.loc[survey["included_in_US_REP"].astype(bool), "user_id"].astype(str)
        return pd.Series(1.0, index=ids), {}, None
    config = sortition.load_panel_config(opts.panel_config)
    pool = sortition.build_pool(survey, config)
    if opts.mode == "size_matched":
        rng = np.random.default_rng(opts.panel_seed)
        panel = sorted(rng.choice(pool.user_ids, pool.k, replace=False).tolist())
        return pd.Series(1.0, index=panel), {"random_panel": {"size": pool.k, "pool": pool.n}}, None
    # soft_resampled draws the hard panel too: the same call as `hard` (same seed), so its size is hard's
    sel = sortition.select(pool, opts.panel_algorithm, opts.num_panel_samples, opts.panel_seed,
                           leximin_time_limit=opts.leximin_time_limit,
                           draw_panel=opts.mode in ("hard", "soft_resampled"), progress=progress)
    if opts.mode == "hard":
        return pd.Series(1.0, index=sel.panel), sel.diagnostics.to_dict(), sel
    probs = sel.probabilities.set_index("user_id")["probability"]
    return probs.astype(float), sel.diagnostics.to_dict(), sel


def build_dataset(survey: pd.DataFrame, utterances: pd.DataFrame, conversations: pd.DataFrame | None,
                  opts: PrepareOptions, progress: bool = False) -> PreferenceData:
    """Pairs for the chosen raters with weights, prompts with history, and the split."""
    opts.validate()
    pool_survey, held = training_survey(survey, opts.eval_ratio, opts.split_by, opts.split_seed)
    weights, diagnostics, selection = rater_weights(opts, pool_survey, progress)
    pairs, drops = build_pairs(utterances, opts.min_score_gap)
    counts: dict[str, Any] = {"pairs_all_raters": len(pairs), "dropped": drops}
    heldout_pairs = pairs[pairs["user_id"].isin(_heldout_in_population(opts, survey, held))]
    pairs = pairs[pairs["user_id"].isin(weights.index)]
    pairs = pairs.assign(weight=pairs["user_id"].map(weights).to_numpy(dtype=float))
    zero = pairs["weight"] <= 0
    counts["raters_zero_probability"] = int(pairs.loc[zero, "user_id"].nunique())
    counts["dropped"]["zero_weight_rows"] = int(zero.sum())
    pairs = pairs[~zero]
    if pairs.empty:
        raise DLMError(f"mode {opts.mode}: no preference pairs left (no selected rater has scored pairs)")
    pairs = _assign_split(pairs, heldout_pairs, opts)
    if opts.mode == "soft_resampled":
        pairs = resample_to_panel_size(pairs, selection, opts.panel_seed)
        counts["resampled_to"] = int((pairs["split"] == "train").sum())
    how = opts.weight_normalization if opts.mode == "soft" else "none"
    train_mask = (pairs["split"] == "train").to_numpy()
    # Equal mean weight over training rows in every arm; held-out rows keep weight 1 (nobody trains on them).
    pairs = pairs.assign(weight=np.where(train_mask, normalise_weights(pairs, how, train=train_mask), 1.0))
    context = conversation_context(conversations) if conversations is not None and (pairs["turn"] > 0).any() else {}
    if (pairs["turn"] > 0).any() and conversations is None:
        raise DLMError("multi-turn pairs need conversations.jsonl for their history; pass --conversations")
    first = utterances.drop_duplicates(["conversation_id", "turn"])
    prompts = dict(zip(zip(first["conversation_id"], first["turn"], strict=True), first["user_prompt"], strict=True))
    rows = _format_rows(pairs, prompts, context, opts)
    splits = [r["split"] for r in rows]
    train = pairs[pairs["split"] == "train"]
    counts.update(rows=len(rows), raters=int(pairs["user_id"].nunique()),
                  interactions=int(pairs["interaction_id"].nunique()),
                  split={s: splits.count(s) for s in ("train", "eval")},
                  effective_sample_size=kish_ess(train["weight"].to_numpy()),
                  weight_sum=float(train["weight"].sum()),
                  heldout=_split_report(pairs, held, opts))
    train_w = train["weight"].to_numpy()
    counts.update(train_rows=len(train_w), train_raters=int(train["user_id"].nunique()),
                  train_weight_sum=float(train_w.sum()), train_weight_mean=float(train_w.mean()) if len(train_w) else 0.0,
                  train_effective_sample_size=kish_ess(train_w))
    probs = selection.probabilities if (selection is not None and opts.mode in ("soft", "soft_resampled")) else None
    panel = selection.panel if (selection is not None and opts.mode == "hard") else None
    if opts.mode == "size_matched":
        panel = sorted(weights.index)
    return PreferenceData(rows, counts, diagnostics, probs, panel)


def _heldout_in_population(opts: PrepareOptions, survey: pd.DataFrame, held: Any) -> set[str]:
    """The held-out raters who belong to this mode's population: its eval rows (full: all of them)."""
    if held is None:
        return set()
    s = survey[survey["user_id"].astype(str).isin(held.raters)]
    if opts.mode == "us_rep":
        s = s[s["included_in_US_REP"].astype(bool)]
    elif opts.mode != "full":
        locales = sortition.load_panel_config(opts.panel_config).locale_filter
        s = s[s["study_locale"].isin(locales)] if locales else s
    return set(s["user_id"].astype(str))


def _assign_split(pairs: pd.DataFrame, heldout_pairs: pd.DataFrame, opts: PrepareOptions) -> pd.DataFrame:
    """Mark each row train or eval; under the rater split, add the held-out raters' pairs as eval rows."""
    if opts.split_by == "interaction":
        return pairs.assign(split=[split_of(k, opts.eval_ratio, opts.split_seed) for k in pairs["interaction_id"]])
    # weight 1: held-out raters have no π (they were never in the pool), and nobody trains on these rows
    both = pd.concat([pairs.assign(split="train"), heldout_pairs.assign(weight=1.0, split="eval")])
    return both.sort_index(kind="stable")  # the pairs' original order, train and eval interleaved


def _split_report(pairs: pd.DataFrame, held: Any, opts: PrepareOptions) -> dict[str, Any]:
    """The manifest's `heldout` section: who is held out and how many of them also have training rows."""
    train_raters = set(pairs.loc[pairs["split"] == "train", "user_id"])
    eval_raters = set(pairs.loc[pairs["split"] == "eval", "user_id"])
    report = held.report() if held is not None else {"by": opts.split_by, "eval_ratio": opts.eval_ratio,
                                                     "split_seed": opts.split_seed}
    # must be 0 under the rater split: a held-out rater with a training row would be in-sample
    return report | {"eval_raters_with_rows": len(eval_raters),
                     "train_eval_rater_overlap": len(train_raters & eval_raters)}


def normalise_weights(pairs: pd.DataFrame, how: str, train: np.ndarray | None = None) -> np.ndarray:
    """Apply the weight normalisation described in the module docstring (mean 1 over `train` rows)."""
    w = pairs["weight"].to_numpy(dtype=float)
    if how == "none":
        return w
    if how == "per-rater":
        w = w / pairs.groupby("user_id")["weight"].transform("size").to_numpy()
    train = np.ones(len(w), dtype=bool) if train is None or not train.any() else train
    return w * train.sum() / w[train].sum()


def resample_to_panel_size(pairs: pd.DataFrame, selection: Any, seed: int) -> pd.DataFrame:
    """Training rows drawn with replacement ∝ weight, as many as the hard panel's training rows; weight 1.

    Held-out rows stay as they are (every arm is scored on the same kind of held-out data).
    """
    train = pairs[pairs["split"] == "train"]
    size = int(train["user_id"].isin(set(selection.panel)).sum())
    p = train["weight"].to_numpy(dtype=float)
    rng = np.random.default_rng([seed, 1])  # its own stream: the panel draw used `seed` already
    picked = np.sort(rng.choice(len(train), size=size, replace=True, p=p / p.sum()))
    drawn = train.iloc[picked].assign(weight=1.0)
    return pd.concat([drawn, pairs[pairs["split"] == "eval"].assign(weight=1.0)], ignore_index=True)


def kish_ess(w: np.ndarray) -> float:
    """Kish's effective sample size (Σw)² / Σw²."""
    return float(w.sum() ** 2 / (w**2).sum()) if len(w) else 0.0


def _format_rows(pairs: pd.DataFrame, prompts: dict, context: dict, opts: PrepareOptions) -> list[dict]:
    """Output records in the chosen dataset format."""
    out = []
    for r in pairs.itertuples(index=False):
        messages = prompt_messages(context, r.conversation_id, r.turn, prompts[(r.conversation_id, r.turn)],
                                   opts.system_prompt)
        if opts.dataset_format == "chat":
            prompt: Any = messages
            chosen: Any = [{"role": "assistant", "content": r.chosen_text}]
            rejected: Any = [{"role": "assistant", "content": r.rejected_text}]
        else:
            prompt, chosen, rejected = (render_prompt(messages), render_completion(r.chosen_text),
                                        render_completion(r.rejected_text))
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "user_id": r.user_id,
                    "interaction_id": r.interaction_id, "conversation_id": r.conversation_id, "turn": int(r.turn),
                    "weight": float(r.weight), "split": r.split,
                    "score_chosen": int(r.score_chosen), "score_rejected": int(r.score_rejected)})
    return out


def prepare(survey_path: str | Path, utterances_path: str | Path, output: str | Path, opts: PrepareOptions,
            conversations_path: str | Path | None = None, progress: bool = False,
            allow_unlinked: bool = False) -> PreferenceData:
    """Load inputs, build the dataset and write it with its manifest as one output set.

    Args:
        survey_path, utterances_path: PRISM files.
        output: JSONL to write; `<output>.manifest.json` goes beside it (listing the SHA-256 of
            every file of the set), plus `<output>.probabilities.csv` (soft).
        opts: mode, panel and formatting options.
        conversations_path: defaults to conversations.jsonl beside the utterances.
        allow_unlinked: drop (and count in the manifest) utterances whose user or conversation is
            unknown, instead of stopping.
    """
    opts.validate()
    output = Path(output)
    with output_lock(output, "preference dataset"):  # one writer per dataset: a second run stops at once
        conversations_path = Path(conversations_path or Path(utterances_path).parent / "conversations.jsonl")
        survey = load_table(survey_path, "survey")
        utterances = load_table(utterances_path, "utterances")
        conversations = load_table(conversations_path, "conversations") if conversations_path.exists() else None
        utterances, links = check_links(utterances, survey, conversations, str(utterances_path), allow_unlinked)
        data = build_dataset(survey, utterances, conversations, opts, progress)
        data.counts["dropped"]["unlinked_utterances"] = links.total
        inputs = [survey_path, utterances_path] + ([conversations_path] if conversations is not None else [])
        if opts.panel_config:
            inputs.append(opts.panel_config)
        extra: dict[str, Any] = {}
        writers: dict[Path, Any] = {output: lambda tmp: write_jsonl_atomic(tmp, data.rows)}
        if data.probabilities is not None:
            probs = data.probabilities
            writers[Path(f"{output}.probabilities.csv")] = lambda tmp: write_csv(tmp, probs, float_format="%.10g")
            extra["probabilities_file"] = f"{output.name}.probabilities.csv"
        if data.panel is not None:
            extra["panel"] = data.panel
        commit_output_set(output, writers, manifest(
            "preferences", config=vars(opts) | {"panel_config_contents": _panel_raw(opts),
                                                "allow_unlinked": allow_unlinked},
            seed=opts.panel_seed, inputs=inputs, counts=data.counts, selection=data.selection, licence=DATA_LICENCE,
            **extra))
    return data


def _panel_raw(opts: PrepareOptions) -> dict | None:
    return sortition.load_panel_config(opts.panel_config).raw if opts.panel_config else None


def dataset_composition(data: PreferenceData, survey: pd.DataFrame, config: sortition.PanelConfig,
                        name: str) -> pd.DataFrame:
    """Long table of shares per quota category: target, Σπ over people, Σweight over rows.

    People are weighted by π (soft), panel membership (hard) or 1 per rater (full, us_rep):
    what the quotas guarantee. Rows are weighted by their training weight: what DPO sees.
    """
    rows = pd.DataFrame(data.rows)
    rows = rows.loc[rows["split"] == "train", ["user_id", "weight"]]  # what training sees: held-out rows excluded
    if data.probabilities is not None:
        people = data.probabilities.set_index("user_id")["probability"]
    else:
        people = pd.Series(1.0, index=pd.unique(rows["user_id"]))
    people = people[people > 0]
    s = survey.set_index(survey["user_id"].astype(str))
    out = []
    for attr in config.attributes:
        target = pd.Series(attr.proportions or {}, dtype=float)
        by_people = people.groupby(s.loc[people.index, attr.column].to_numpy()).sum() / people.sum()
        by_rows = rows.groupby(s.loc[rows["user_id"], attr.column].to_numpy())["weight"].sum() / rows["weight"].sum()
        for measure, series in (("target", target), ("people (Σπ)", by_people), ("rows (Σweight)", by_rows)):
            for cat, share in series.items():
                out.append({"dataset": name, "attribute": attr.name, "category": cat, "measure": measure,
                            "share": float(share)})
    return pd.DataFrame(out)
