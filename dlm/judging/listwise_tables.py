"""Tables of listwise records for 06: mean rank per clause and model, clause difficulty, consistency across orders."""

from __future__ import annotations

import pandas as pd

from dlm.stats.ranking import load_rankings


def rank_rows(records: list[dict]) -> pd.DataFrame:
    """One row per (ranking, model): its rank, 1 best, a tied group sharing the mean of the places it spans."""
    recs = load_rankings(records)
    rows = []
    for raw, r in zip(records, recs, strict=True):
        place = 1
        for group in r.ranking:
            for name in group:
                rows.append({"question_id": r.question_id, "clause_id": r.clause_id, "judge_model": r.judge_model,
                             "order": raw.get("order", 0), "model": name, "rank": place + (len(group) - 1) / 2})
            place += len(group)
    return pd.DataFrame(rows)


def mean_rank_table(records: list[dict]) -> pd.DataFrame:
    """Clause × model mean rank (1 = ranked best), models ordered by their overall mean rank."""
    rows = rank_rows(records)
    table = rows.pivot_table(index="clause_id", columns="model", values="rank", aggfunc="mean")
    return table[rows.groupby("model")["rank"].mean().sort_values().index]


def clause_difficulty(records: list[dict]) -> pd.Series:
    """Per clause, the SD of the models' mean ranks: near 0 the judge cannot tell the models apart on it."""
    return mean_rank_table(records).std(axis=1, ddof=0).sort_values().rename("spread of mean ranks")


def order_consistency(records: list[dict]) -> pd.DataFrame:
    """Per model: the share of questions where every display order gave it the same rank, and the mean rank range."""
    rows = rank_rows(records)
    span = rows.groupby(["question_id", "judge_model", "model"])["rank"].agg(lambda r: r.max() - r.min())
    counts = rows.groupby(["question_id", "judge_model", "model"])["rank"].size()
    span = span[counts > 1]  # a question judged in one order says nothing about consistency
    out = pd.DataFrame({"same_rank_share": (span == 0).groupby(level="model").mean(),
                        "mean_rank_range": span.groupby(level="model").mean()})
    return out.sort_values("same_rank_share")

