"""Planted-effect checks with the oracle judge: win rates judged as each rater group, tables, plots, answer styles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlm.io import read_jsonl
from dlm.judging.evaluation import evaluate
from dlm.judging.judge import load_questions, slug
from dlm.judging.oracle import load_spec


@dataclass(frozen=True)
class OracleWinRate:
    """One pair's win rate (ties ½) under one oracle judge, both orders, interval clustered by clause."""

    judge: str
    model_a: str
    model_b: str
    win_rate: float
    ci_low: float
    ci_high: float
    wins: int
    ties: int
    losses: int
    n_questions: int
    style_share_a: dict[str, float]  # share of model_a's answers in each style (None: no marker)
    style_share_b: dict[str, float]


def judge_as_groups(questions_dir: str | Path, models: list[str], output_dir: str | Path, spec: str | Path,
                    judges: list[str], **evaluate_kwargs: Any) -> dict[str, dict[str, Any]]:
    """Evaluate `models` once per oracle judge (each on its own), reusing answers in `output_dir/responses`.

    Returns {judge: summary}; judgments go to `output_dir/oracle_<group>.jsonl`.
    """
    out = {}
    for judge in judges:
        out[judge] = evaluate(questions_dir, models, Path(output_dir) / f"oracle_{slug(judge[len('oracle:'):])}.jsonl",
                              [judge], judge_backend="oracle", oracle_spec=spec, **evaluate_kwargs)
    return out


def planted_effect_win_rates(hard: str | Path, contrast: str | Path, questions_dir: str | Path,
                             spec: str | Path, output_dir: str | Path, judges: list[str] | None = None,
                             max_new_tokens: int = 48, questions_per_clause: int | None = None,
                             seed: int = 0) -> list[OracleWinRate]:
    """`hard` vs `contrast` win rate with its interval under each oracle judge (default: every group).

    The trained models answer the questions (greedy, as in 06); each oracle judge then judges both
    orders. Expected on the generated sample: above 0.5 for the 55+ judge, below for the younger one
    — when the models' answers carry the styles at all, which `style_share_*` reports.
    """
    rule = load_spec(spec)
    judges = judges or [f"oracle:{g}" for g in rule.groups]
    models = [f"hard={hard}", f"contrast={contrast}"]
    summaries = judge_as_groups(questions_dir, models, output_dir, spec, judges, max_new_tokens=max_new_tokens,
                                questions_per_clause=questions_per_clause, seed=seed, primary=("hard", "contrast"))
    wanted = {q.question_id for q in load_questions(questions_dir, questions_per_clause)}
    shares = {}
    for name, path in (("hard", hard), ("contrast", contrast)):
        rows = [r for r in read_jsonl(Path(output_dir) / "responses" / f"{slug(str(path))}.jsonl")
                if r["question_id"] in wanted]
        styles = [rule.style_of(r["answer"]) or "none" for r in rows]
        shares[name] = {s: round(styles.count(s) / max(len(styles), 1), 4) for s in [*rule.markers, "none"]}
    out = []
    for judge, summary in summaries.items():
        p = next(v for v in summary["pairs"].values() if v["primary"])
        out.append(OracleWinRate(judge, p["model_a"], p["model_b"], p["win_rate"], p["ci_low"], p["ci_high"],
                                 p["wins"], p["ties"], p["losses"], p["n_questions"], shares[p["model_a"]],
                                 shares[p["model_b"]]))
    return out


def judged_table(summaries: dict[str, dict[str, Any]]) -> "pd.DataFrame":
    """One row per judge and arm contrast (or pair): win rate and interval, for "aligned to whom, as judged"."""
    rows = []
    for judge, s in summaries.items():
        for name, r in (s.get("arms") or s["pairs"]).items():
            rows.append({"judge": judge, "comparison": name.split(" [")[0], "win_rate": r["win_rate"],
                         "ci_low": r["ci_low"], "ci_high": r["ci_high"], "primary": bool(r.get("primary"))})
    return pd.DataFrame(rows, columns=["judge", "comparison", "win_rate", "ci_low", "ci_high", "primary"])


def plot_judged(table: "pd.DataFrame"):
    """Win rate per comparison, one marker per judge, with 95% intervals clustered by clause."""
    import matplotlib.pyplot as plt  # pyplot only when plotting: the CLI imports dlm.judging without drawing

    comparisons = list(dict.fromkeys(table["comparison"]))
    judges = list(dict.fromkeys(table["judge"]))
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(comparisons) + 1.4))
    for j, judge in enumerate(judges):
        t = table[table["judge"] == judge].set_index("comparison").reindex(comparisons)
        y = np.arange(len(comparisons)) + (j - (len(judges) - 1) / 2) * 0.8 / max(len(judges), 1)
        ax.errorbar(t["win_rate"], y, xerr=[t["win_rate"] - t["ci_low"], t["ci_high"] - t["win_rate"]], fmt="o",
                    capsize=2, label=judge)
    ax.axvline(0.5, color="k", ls=":", lw=1)
    ax.set_yticks(np.arange(len(comparisons)), comparisons, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate of the first arm (ties = ½), 95% CI clustered by clause")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def answer_styles(responses_dir: str | Path, spec: str | Path, models: dict[str, str]) -> "pd.DataFrame":
    """Share of each model's answers in each style of the spec (do the answers carry the planted style?)."""
    rule = load_spec(spec)
    rows = []
    for name, path in models.items():
        file = Path(responses_dir) / f"{slug(path)}.jsonl"
        styles = [rule.style_of(r["answer"]) or "none" for r in (read_jsonl(file) if file.exists() else [])]
        rows.append({"model": name, "answers": len(styles),
                     **{s: styles.count(s) / max(len(styles), 1) for s in [*rule.markers, "none"]}})
    return pd.DataFrame(rows).set_index("model")
