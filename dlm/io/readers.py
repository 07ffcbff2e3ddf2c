"""Readers of the files every stage writes, checked against their output-set manifests first."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dlm.io.csvfiles import csv_unescape
from dlm.io.files import parse_json_line
from dlm.io.outputs import verify_output_set


def read_jsonl(path: str | Path) -> list[dict]:
    """Read JSON Lines (verified against its output-set manifest, if any); a bad line is a DLMError naming it."""
    path = Path(path)
    verify_output_set(path, missing_ok=True)
    rows: list[dict] = []
    with open(path, "rb") as fh:
        lines = fh.readlines()
    offset = 0
    for i, raw in enumerate(lines, start=1):
        if raw.strip():
            # NaN stays readable here: each stage's own check names the field (e.g. a NaN weight).
            rows.append(parse_json_line(raw, path, i, offset, allow_nan=True))
        offset += len(raw)
    return rows


def read_csv_checked(path: str | Path, string_columns: Iterable[str] = (), set_output: str | Path | None = None) -> Any:
    """Read a CSV written by `write_csv`, verified against the manifest of `set_output`'s set (default: its own).

    Columns in `string_columns` (ids) stay strings exactly as written.
    """
    import pandas as pd

    verify_output_set(set_output or path, missing_ok=True)
    frame = pd.read_csv(path, dtype={c: str for c in string_columns}, keep_default_na=False, na_values=[""])
    frame.columns = [csv_unescape(c) for c in frame.columns]
    for col in frame.columns:
        if frame[col].dtype == object or str(frame[col].dtype).startswith("str"):
            frame[col] = frame[col].map(csv_unescape)
    return frame
