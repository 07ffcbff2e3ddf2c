"""Quoted, formula-safe CSV that round-trips any id, written atomically and read with checks."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from dlm.io.files import atomic_path

_FORMULA = re.compile(r"^'*[=+\-@\t\r]")


def csv_escape(value: Any) -> Any:
    """A string a spreadsheet would run as a formula (`=`, `+`, `-`, `@`) gets a leading `'`; reversible."""
    if isinstance(value, str) and _FORMULA.match(value):
        try:
            float(value)
            return value  # a negative number is data, not a formula
        except ValueError:
            return "'" + value
    return value


def csv_unescape(value: Any) -> Any:
    """Undo `csv_escape`."""
    if isinstance(value, str) and value.startswith("'") and _FORMULA.match(value):
        return value[1:]
    return value


def write_csv_atomic(path: str | Path, frame: Any, float_format: str | None = None) -> None:
    """Write a DataFrame as CSV (quoted where needed, formula-like strings escaped) atomically."""
    with atomic_path(path) as tmp:
        write_csv(tmp, frame, float_format)


def write_csv(path: str | Path, frame: Any, float_format: str | None = None) -> None:
    """Write a DataFrame as CSV: fields with commas, quotes or newlines quoted; formula-like strings escaped."""
    safe = frame.copy()
    for col in safe.columns:
        if safe[col].dtype == object or str(safe[col].dtype).startswith("str"):
            safe[col] = safe[col].map(csv_escape)
    safe.columns = [csv_escape(str(c)) for c in safe.columns]
    safe.to_csv(path, index=False, float_format=float_format, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
