"""Pool files: PRISM's survey, any CSV/JSONL table of people, and the Sortition Foundation's two CSVs.

One reader (`load_pool_source`) serves `dlm sortition` and notebook 02, so both accept the same
formats. The Sortition Foundation format is `categories.csv` with `category,name,min,max`
(stratification-app), `category,feature,min,max` (the replication code of Flanigan et al., Nature
2021) or `feature,value,min,max` (the `sortition-algorithms` library): the first column is our
attribute, the second our category, and the header says which. `respondents.csv` has one column per
category, and an id column if present (else people are numbered by their row).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dlm.data.prism import flatten_survey, read_prism_jsonl, records_to_frame
from dlm.errors import DLMError
from dlm.sortition.config import PanelConfig, load_panel_config, parse_panel_config
from dlm.sortition.pool import Pool, build_pool
from dlm.data.prism import load_prism  # the Hub client is imported only for this

# (attribute column, category column) of each categories.csv header convention
CATEGORY_HEADERS = (("category", "name"), ("category", "feature"), ("feature", "value"))
ROW_ID = "row"  # the id column added when respondents.csv has none: the data row number, from 1


@dataclass
class PoolSource:
    """A pool as read from files: its rows (the input's own columns), its quotas, its id column."""

    table: pd.DataFrame
    config: PanelConfig
    id_column: str
    inputs: list[str]  # files read, for the manifest's hashes
    format: str  # prism | csv | jsonl | sortition_foundation

    def build(self) -> Pool:
        """Encode the rows into a Pool (filters, categories, checks)."""
        return build_pool(self.table, self.config, self.id_column)

    def pool_flags(self) -> list[str] | None:
        """`dlm sortition` flags that read this pool beside a YAML `--panel-config`; None when none can (respondents
        numbered by row: their ids exist only in the order read)."""
        if self.format == "sortition_foundation":
            pool = self.inputs[1]
            if self.id_column == ROW_ID:
                return None
        else:
            pool = self.inputs[0] if len(self.inputs) > 1 else "hub"
        return ["--survey", pool] + ([] if self.id_column == "user_id" else ["--id-column", self.id_column])


def load_pool_source(survey: str | Path | None = None, panel_config: str | Path | None = None, *,
                     categories: str | Path | None = None, respondents: str | Path | None = None,
                     panel_size: int | None = None, id_column: str | None = None) -> PoolSource:
    """Read a pool and its quotas: a pool file + panel YAML, or the Sortition Foundation's two CSVs.

    Args:
        survey: PRISM's survey.jsonl (or its folder, or "hub"), or any CSV/JSONL pool.
        panel_config: the panel YAML (quotas, panel size); unused with `categories`.
        categories: the Sortition Foundation's categories.csv (with `respondents`).
        respondents: the Sortition Foundation's respondents.csv (with `categories`).
        panel_size: the panel size; required with `categories`, otherwise it overrides the YAML's.
        id_column: the column naming people (default `user_id`; respondents.csv without it are
            numbered by row in an added `row` column).
    """
    if categories is not None or respondents is not None:
        if categories is None or respondents is None:
            raise DLMError("the Sortition Foundation format needs both --categories and --respondents")
        if panel_size is None:
            raise DLMError(f"{categories}: categories.csv does not give the panel size; pass --panel-size")
        config = read_categories(categories, panel_size)
        table, column = read_respondents(respondents, config, id_column)
        return PoolSource(table, config, column, [str(categories), str(respondents)], "sortition_foundation")
    if survey is None or panel_config is None:
        raise DLMError("give a pool (--survey) and its quotas (--panel-config), or --categories and --respondents")
    config = load_panel_config(panel_config, None if panel_size is None else {"panel_size": panel_size})
    table, fmt, path = read_pool_table(survey)
    return PoolSource(table, config, id_column or "user_id", ([path] if path else []) + [str(panel_config)], fmt)


def read_pool_table(source: str | Path) -> tuple[pd.DataFrame, str, str | None]:
    """A table of people, its format and the file read: PRISM survey (file, folder or "hub"), CSV or JSONL.

    JSONL records with PRISM's `survey_only` field are validated as PRISM's survey; others are
    read as they are, nested objects flattened to dotted columns (`a.b`) as for PRISM.
    """
    if str(source) == "hub":
        return load_prism("hub", tables=("survey",)).survey, "prism", None
    path = Path(source)
    if path.is_dir():
        path = path / "survey.jsonl"
    if not path.is_file():
        raise DLMError(f"{path}: pool file not found; give PRISM's survey.jsonl or a CSV/JSONL pool")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv_table(path), "csv", str(path)
    if suffix in (".jsonl", ".ndjson", ".json"):
        rows, lines = read_prism_jsonl(path)
        if "survey_only" in rows[0]:
            return records_to_frame(rows, "survey", str(path), lines), "prism", str(path)
        return flatten_survey(rows), "jsonl", str(path)
    raise DLMError(f"{path}: unknown pool format '{path.suffix}'; give a .csv or .jsonl file")


def read_csv_table(path: str | Path) -> pd.DataFrame:
    """Every cell as the text it holds (ids such as 007 stay as written); quoted commas, quotes and newlines allowed."""
    header = _csv_rows(path)[0]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise DLMError(f"{path}: line 1 repeats column '{repeated[0]}'; column names must be unique")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, ValueError) as exc:
        raise DLMError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None


def _csv_rows(path: str | Path) -> list[list[str]]:
    """All rows of a small CSV (header first); one clear error if it is missing, empty or malformed."""
    path = Path(path)
    if not path.is_file():
        raise DLMError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            rows = [r for r in csv.reader(fh, strict=True) if any(cell.strip() for cell in r)]
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DLMError(f"{path}: not a readable UTF-8 CSV ({exc})") from None
    if not rows:
        raise DLMError(f"{path}: file is empty; expected a header line and rows")
    return rows


def read_categories(path: str | Path, panel_size: int) -> PanelConfig:
    """A panel config from categories.csv: one row per (attribute, category) with its [min, max] seats."""
    rows = _csv_rows(path)
    header = [h.strip().lower() for h in rows[0]]
    names = next(((a, c) for a, c in CATEGORY_HEADERS if {a, c, "min", "max"} <= set(header)), None)
    if names is None:
        raise DLMError(f"{path}: line 1 must name the columns category,name,min,max (stratification-app), "
                       f"category,feature,min,max (Flanigan et al.'s code) or feature,value,min,max "
                       f"(sortition-algorithms); got {','.join(rows[0])}")
    col = {name: header.index(name) for name in (*names, "min", "max")}
    quotas: dict[str, dict[str, list[int]]] = {}
    for line, row in enumerate(rows[1:], start=2):
        cells = {name: (row[i].strip() if i < len(row) else "") for name, i in col.items()}
        attr, cat = cells[names[0]], cells[names[1]]
        if not attr or not cat:
            raise DLMError(f"{path}: line {line} has an empty '{names[0] if not attr else names[1]}'")
        bounds = []
        for key in ("min", "max"):
            try:
                bounds.append(int(cells[key]))
            except ValueError:
                raise DLMError(f"{path}: line {line} field '{key}' must be a whole number, "
                               f"got {cells[key]!r}") from None
        if not 0 <= bounds[0] <= bounds[1]:
            raise DLMError(f"{path}: line {line} needs 0 <= min <= max, got min {bounds[0]}, max {bounds[1]}")
        if cat in quotas.setdefault(attr, {}):
            raise DLMError(f"{path}: line {line} repeats {attr}={cat}; give each category once")
        quotas[attr][cat] = bounds
    if not quotas:
        raise DLMError(f"{path}: no categories after the header")
    raw = {"panel_size": panel_size,
           "attributes": [{"name": a, "column": a, "quotas": q} for a, q in quotas.items()]}
    return parse_panel_config(raw, str(path))


def read_respondents(path: str | Path, config: PanelConfig,
                     id_column: str | None = None) -> tuple[pd.DataFrame, str]:
    """respondents.csv as a table and its id column: `id_column` (default user_id) if present, else row numbers."""
    table = read_csv_table(path)
    for attr in config.attributes:
        if attr.column not in table.columns:
            raise DLMError(f"{path}: no column '{attr.column}', a category in {config.path}; "
                           "respondents.csv needs one column per category")
    wanted = id_column or "user_id"
    if wanted in table.columns:
        return table, wanted
    if id_column is not None:
        raise DLMError(f"{path}: no id column '{id_column}'; name an existing column with --id-column, "
                       "or leave it out to number people by row")
    if ROW_ID in table.columns:
        raise DLMError(f"{path}: has no user_id column but has a '{ROW_ID}' column; name the id with --id-column")
    return table.assign(**{ROW_ID: [str(i) for i in range(1, len(table) + 1)]})[[ROW_ID, *table.columns]], ROW_ID
