"""Preference rows as TRL will see them: over-long histories shortened, and what TRL's length filter keeps.

TRL 1.16 (`truncation_mode="keep_start"`, the only mode its DPOConfig documents) drops every row
whose tokenised prompt alone has `max_length` tokens or more (1024 by default), and cuts the
end of longer prompt + completion sequences. Long multi-turn PRISM conversations would be lost
disproportionately, shifting whose preferences are trained on. So, before TRL sees a row, dlm
shortens its prompt by dropping the earliest turns of the history, one message at a time (and an
assistant message left at the start with it, so the history starts with a user turn), until the
prompt plus the longer of its two completions fits in `max_length`, or only the last user message
is left. The chosen and rejected answers keep the same (shortened) context. A row whose last
user message alone still fills `max_length` is then dropped by TRL: it is counted, not hidden.

`training_summary.json` records rows, raters and Σw before and after, and per rater the rows and
Σw kept (`length_filter.per_rater`), so that the breakdown by quota category can be computed
wherever the survey is known (`by_category`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from dlm.preferences.template import render_prompt


@dataclass(frozen=True)
class Counts:
    """Rows, distinct raters and weight sum of a set of training rows."""

    rows: int
    raters: int
    weight_sum: float


def _count(rows: list[dict]) -> Counts:
    return Counts(len(rows), len({r.get("user_id") for r in rows if r.get("user_id") is not None}),
                  float(sum(r["weight"] for r in rows)))


def shorten_history(messages: list[dict[str, str]], completion_tokens: int, tokenizer: Any,
                    max_length: int | None) -> tuple[list[dict[str, str]], int]:
    """The prompt messages without their earliest turns so that prompt + completion fit; and how many were dropped."""
    if max_length is None:
        return messages, 0
    kept = list(messages)
    while len(kept) > 1 and _tokens(tokenizer, render_prompt(kept)) + completion_tokens > max_length:
        kept = kept[1:]
        while len(kept) > 1 and kept[0]["role"] == "assistant":
            kept = kept[1:]
    return kept, len(messages) - len(kept)


def _tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text)["input_ids"])


def fit_rows(rows: list[dict], tokenizer: Any, max_length: int | None) -> tuple[list[dict], dict[str, int]]:
    """Rows with over-long chat prompts shortened (rendered to text), and how many rows and turns were shortened."""
    out, shortened, turns = [], 0, 0
    for r in rows:
        messages = r.get("prompt_messages")
        if messages is not None and max_length is not None:
            completion = max(_tokens(tokenizer, r["chosen"]), _tokens(tokenizer, r["rejected"]))
            kept, dropped = shorten_history(messages, completion, tokenizer, max_length)
            if dropped:
                shortened, turns = shortened + 1, turns + dropped
                r = {**r, "prompt": render_prompt(kept)}
        out.append(r)
    return out, {"rows_shortened": shortened, "messages_dropped": turns}


def trl_rows(rows: list[dict]) -> list[dict]:
    """The columns TRL trains on, plus `row` (the index, to see which rows its filter keeps)."""
    return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"], "weight": r["weight"],
             "row": i} for i, r in enumerate(rows)]


def length_filter_report(rows: list[dict], kept_rows: list[int], max_length: int | None,
                         shortening: dict[str, int]) -> dict[str, Any]:
    """Rows, raters and Σw before and after TRL's length filter, and per rater what was kept."""
    kept = [rows[i] for i in sorted(set(kept_rows))]
    per_rater: dict[str, dict[str, float]] = {}
    for r, is_kept in [(r, False) for r in rows] + [(r, True) for r in kept]:
        uid = r.get("user_id")
        if uid is None:
            continue
        d = per_rater.setdefault(str(uid), {"rows": 0, "weight_sum": 0.0, "rows_kept": 0, "weight_sum_kept": 0.0})
        d["rows_kept" if is_kept else "rows"] += 1
        d["weight_sum_kept" if is_kept else "weight_sum"] += r["weight"]
    before, after = _count(rows), _count(kept)
    return {"max_length": max_length, **shortening, "rows_dropped": before.rows - after.rows,
            "before": asdict(before), "after": asdict(after), "per_rater": dict(sorted(per_rater.items()))}


def by_category(report: dict[str, Any], survey: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Rows, raters and Σw before and after TRL's length filter per quota category (column, value) of the survey.

    Args:
        report: `training_summary.json`'s `length_filter`.
        survey: one row per rater with `user_id` and the quota columns (e.g. the panel config's categories).
    """
    per = pd.DataFrame.from_dict(report["per_rater"], orient="index")
    if per.empty:
        return pd.DataFrame(columns=["category", "value", "raters", "raters_kept", "rows", "rows_kept",
                                     "weight_sum", "weight_sum_kept"])
    per.index.name = "user_id"
    merged = per.join(survey.assign(user_id=survey["user_id"].astype(str)).set_index("user_id")[columns], how="left")
    tables = []
    for col in columns:
        g = merged.groupby(col, dropna=False)
        t = pd.DataFrame({"raters": g.size(), "raters_kept": g["rows_kept"].apply(lambda s: int((s > 0).sum())),
                          "rows": g["rows"].sum(), "rows_kept": g["rows_kept"].sum(),
                          "weight_sum": g["weight_sum"].sum(), "weight_sum_kept": g["weight_sum_kept"].sum()})
        tables.append(t.reset_index(names="value").assign(category=col))
    cols = ["category", "value", "raters", "raters_kept", "rows", "rows_kept", "weight_sum", "weight_sum_kept"]
    return pd.concat(tables, ignore_index=True)[cols]
