"""The pool: the people who can be selected, their quota categories encoded for the solvers."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dlm.errors import DLMError
from dlm.sortition.config import PanelConfig

MISSING = "<missing>"
FORMULA_STARTS = ("=", "+", "-", "@")  # cells a spreadsheet may evaluate as formulas


@dataclass
class PoolReport:
    """How the input's rows became the pool: each filter's survivors and the unmatched values."""

    input_rows: int
    after_locale_filter: int | None = None
    after_dropping_survey_only: int | None = None
    filters_skipped: list[str] = field(default_factory=list)  # PRISM filters whose column the input lacks
    reassigned_to_slack: dict[str, int] = field(default_factory=dict)
    excluded_unmatched: dict[str, int] = field(default_factory=dict)
    pool_size: int = 0
    empty_categories: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for manifests and tables."""
        return asdict(self)


@dataclass
class Pool:
    """The people who can be selected, with their categories encoded for the solvers."""

    user_ids: np.ndarray  # (n,) str
    codes: np.ndarray  # (n, A) int: category index within each attribute
    config: PanelConfig
    report: PoolReport
    table: pd.DataFrame | None = None  # the pool's rows in the input's own columns (for organisers' outputs)
    id_column: str = "user_id"

    @property
    def n(self) -> int:
        return len(self.user_ids)

    @property
    def k(self) -> int:
        return self.config.panel_size

    @property
    def offsets(self) -> np.ndarray:
        """Start of each attribute's block in the flat list of categories."""
        return np.cumsum([0] + [len(a.categories) for a in self.config.attributes])

    @property
    def membership(self) -> np.ndarray:
        """(n, C) bool: person i belongs to flat category c."""
        m = np.zeros((self.n, self.offsets[-1]), dtype=bool)
        for j in range(self.codes.shape[1]):
            m[np.arange(self.n), self.offsets[j] + self.codes[:, j]] = True
        return m

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat (lo, hi) count bounds over all categories."""
        lo = [a.lo[c] for a in self.config.attributes for c in a.categories]
        hi = [a.hi[c] for a in self.config.attributes for c in a.categories]
        return np.array(lo), np.array(hi)

    @property
    def category_labels(self) -> list[tuple[str, str]]:
        return [(a.name, c) for a in self.config.attributes for c in a.categories]


def build_pool(table: pd.DataFrame, config: PanelConfig, id_column: str = "user_id") -> Pool:
    """Select the pool from a table of people (PRISM's survey or any pool) and encode categories.

    PRISM's filters apply when their columns exist: the config's locale filter (`study_locale`)
    and dropping survey-only participants (`survey_only`, `num_completed_conversations`).
    Rule for values that are not a configured category: the person counts in the attribute's
    first slack category if it has one, and is otherwise excluded from the pool (counted).
    """
    if id_column not in table.columns:
        shown = ", ".join(map(str, list(table.columns)[:8]))
        raise DLMError(f"the pool has no id column '{id_column}' (its columns: {shown}); name it with --id-column")
    df = table
    report = PoolReport(input_rows=len(df))
    if config.locale_filter:
        if "study_locale" in df.columns:
            df = df[df["study_locale"].isin(config.locale_filter)]
            report.after_locale_filter = len(df)
        else:
            report.filters_skipped.append("locale_filter (no study_locale column)")
    if not config.include_survey_only and "survey_only" in df.columns:
        keep_rows = ~_truthy(df["survey_only"])
        if "num_completed_conversations" in df.columns:
            keep_rows &= pd.to_numeric(df["num_completed_conversations"], errors="coerce").fillna(0).to_numpy() > 0
        df = df[keep_rows]
        report.after_dropping_survey_only = len(df)
    codes = np.zeros((len(df), len(config.attributes)), dtype=np.int64)
    keep = np.ones(len(df), dtype=bool)
    for j, attr in enumerate(config.attributes):
        if attr.column not in df.columns:
            raise DLMError(f"{config.path}: attribute '{attr.name}' column '{attr.column}' is not in the survey")
        values = df[attr.column].astype(object).where(df[attr.column].notna(), MISSING).astype(str).to_numpy()
        index = {c: i for i, c in enumerate(attr.categories)}
        col = np.array([index.get(v, -1) for v in values], dtype=np.int64)
        unmatched = col < 0
        if unmatched.any():
            if attr.slack_categories:
                col[unmatched] = index[attr.slack_categories[0]]
                report.reassigned_to_slack[attr.name] = int(unmatched.sum())
            else:
                keep &= ~unmatched
                report.excluded_unmatched[attr.name] = int(unmatched.sum())
        codes[:, j] = col
    rows = df[keep].reset_index(drop=True)
    ids = rows[id_column].astype(object).where(rows[id_column].notna(), "").astype(str).to_numpy()
    _check_ids(ids, id_column)
    pool = Pool(ids, codes[keep], config, report, rows, id_column)
    report.pool_size = pool.n
    report.empty_categories = [f"{a}={c}" for (a, c), m in zip(pool.category_labels, pool.membership.sum(0),
                                                                strict=True) if m == 0]
    for label in report.empty_categories:
        warnings.warn(f"configured category {label} has nobody in the pool", stacklevel=2)
    if config.panel_size > pool.n:
        raise DLMError(f"{config.path}: panel_size {config.panel_size} is larger than the pool ({pool.n} people)")
    return pool


def _truthy(values: pd.Series) -> np.ndarray:
    """Booleans from JSON (true/false) or CSV text (true/false/1/0/yes/no, any case)."""
    if values.dtype == bool:
        return values.to_numpy()
    return values.astype(str).str.strip().str.lower().isin(["true", "1", "yes", "1.0"]).to_numpy()


def _check_ids(ids: np.ndarray, id_column: str) -> None:
    """Ids name people in every output, so each must be present and unique."""
    if (ids == "").any():
        raise DLMError(f"the pool's id column '{id_column}' is empty in {int((ids == '').sum())} row(s); "
                       "give every person an id (or pass --id-column)")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise DLMError(f"the pool's id column '{id_column}' repeats id '{uniq[counts > 1][0]}'; ids must be unique")
    risky = [i for i in ids if i[:1] in FORMULA_STARTS]
    if risky:
        # Output CSVs keep ids unchanged (quoted) so they round-trip; a spreadsheet opened by
        # double-click may still evaluate them, so the organiser is told once.
        warnings.warn(f"{len(risky)} id(s) in '{id_column}' begin with =, +, - or @ (e.g. {risky[0]!r}): the CSVs "
                      "keep them unchanged; import them into a spreadsheet as text, not by opening them", stacklevel=3)
