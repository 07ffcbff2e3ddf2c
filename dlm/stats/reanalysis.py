"""Re-analysis without re-judging: every statistic of an evaluation, recomputed from its judgment records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from dlm.arms.replicates import arms_of
from dlm.errors import DLMError
from dlm.io import manifest, read_jsonl, write_json_atomic
from dlm.stats.winrates import json_ready, summarise

REQUIRED = ("question_id", "clause_id", "model_a", "model_b", "order", "judge_model", "winner", "len_a", "len_b")


def load_records(path: str | Path) -> pd.DataFrame:
    """Judgment records of `dlm evaluate`; a missing file, field or unknown winner is a DLMError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DLMError(f"{path} does not exist; pass the judgments JSONL that `dlm evaluate --output` wrote")
    rows = read_jsonl(path)
    if not rows:
        raise DLMError(f"{path} has no judgment records")
    for i, r in enumerate(rows, start=1):
        if not isinstance(r, dict):
            raise DLMError(f"{path}: record {i} is {json_kind(r)}, not a judgment object; is this a `dlm evaluate` "
                           "judgments file?")
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            raise DLMError(f"{path}: record {i} lacks {', '.join(missing)}; is this a `dlm evaluate` judgments file?")
        if r["winner"] not in (r["model_a"], r["model_b"], "tie"):
            raise DLMError(f"{path}: record {i} has winner {r['winner']!r}, neither model_a, model_b nor 'tie'")
    return pd.DataFrame(rows)


def json_kind(value: Any) -> str:
    """What a JSON value is, for messages: a number, a string, a list…"""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def summarize(records_path: str | Path, output: str | Path, primary: tuple[str, str] | None = None,
              replicates: bool = False) -> dict[str, Any]:
    """Recompute the summary `dlm evaluate` writes (pairs, clauses, arms, Bradley–Terry) and write it to `output`.

    With `replicates`, model names ARM-rR-sS are pooled per arm, as `dlm evaluate --replicates` does.
    """
    records = load_records(records_path)
    models = list(dict.fromkeys([*records["model_a"], *records["model_b"]]))
    arms = None
    if replicates:
        arms = arms_of(models)
    if primary:
        names = set(models) | set((arms or {}).values())
        if not set(primary) <= names:
            raise DLMError(f"--primary {primary[0]}:{primary[1]} names a model that is not in {records_path}")
    summary = summarise(records, primary, arms=arms)
    summary["settings"] = manifest("summary", config={"records": str(records_path), "primary": primary,
                                                      "replicates": replicates}, seed=None, inputs=[records_path],
                                   n_judgments=len(records))
    write_json_atomic(output, json_ready(summary))
    return summary
