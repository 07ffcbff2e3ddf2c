"""PRISM data layer: load survey, conversations and utterances from a folder or the Hub, validated.

The schema follows the PRISM codebook (shared/prism/SCHEMA.md). Nested survey objects
(`ethnicity`, `religion`, `location`, `lm_usecases`, `stated_prefs`) are flattened into dotted
columns such as `ethnicity.simplified` and `location.reside_countryISO`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dlm.errors import DLMError
from dlm.io import parse_json_line

HUB_DATASET_ID = "HannahRoseKirk/prism-alignment"
DEFAULT_PRISM_DIR = "prism-alignment"
FILES = ("survey", "conversations", "utterances")
LFS_POINTER_PREFIX = "version https://git-lfs.github.com/spec/v1"
SYNTHETIC_MARKER = "SYNTHETIC.md"

# field -> (allowed types, nullable). Only fields the pipeline reads are required; any others,
# in any key order, are accepted and kept.
_STR, _INT, _BOOL, _DICT, _LIST = (str,), (int,), (bool,), (dict,), (list,)
SCHEMAS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "survey": {
        "user_id": (_STR, False),
        "survey_only": (_BOOL, False),
        "num_completed_conversations": (_INT, False),
        "age": (_STR, False),
        "gender": (_STR, False),
        "education": (_STR, False),
        "employment_status": (_STR, False),
        "marital_status": (_STR, False),
        "english_proficiency": (_STR, False),
        "study_locale": (_STR, False),
        "ethnicity": (_DICT, False),
        "religion": (_DICT, False),
        "location": (_DICT, False),
        "included_in_US_REP": (_BOOL, False),
        "included_in_UK_REP": (_BOOL, False),
        "included_in_balanced_subset": (_BOOL, False),
    },
    "conversations": {
        "conversation_id": (_STR, False),
        "user_id": (_STR, False),
        "conversation_type": (_STR, False),
        "opening_prompt": (_STR, False),
        "conversation_turns": (_INT, False),
        "conversation_history": (_LIST, False),
    },
    "utterances": {
        "utterance_id": (_STR, False),
        "interaction_id": (_STR, False),
        "conversation_id": (_STR, False),
        "user_id": (_STR, False),
        "turn": (_INT, False),
        "within_turn_id": (_INT, False),
        "conversation_type": (_STR, False),
        "user_prompt": (_STR, False),
        "model_response": (_STR, False),
        "model_name": (_STR, False),
        "model_provider": (_STR, False),
        "score": (_INT, False),
        "if_chosen": (_BOOL, False),
    },
}
# Keys each nested survey object must have (the rest are optional).
# Fields that identify a record: a second record with the same value is an error, not a second person.
UNIQUE_KEYS = {"survey": "user_id", "conversations": "conversation_id", "utterances": "utterance_id"}
SCORE_RANGE = (1, 100)  # PRISM's rating slider
NESTED_REQUIRED = {"ethnicity": ("simplified",), "religion": ("simplified",), "location": ("reside_countryISO",)}
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true/false", dict: "an object", list: "a list"}


@dataclass
class PrismData:
    """The PRISM tables as DataFrames, with where they came from."""

    survey: pd.DataFrame | None = None
    conversations: pd.DataFrame | None = None
    utterances: pd.DataFrame | None = None
    source: str = ""
    files: dict[str, str] = field(default_factory=dict)
    synthetic: bool = False


def load_prism(source: str | Path = DEFAULT_PRISM_DIR, tables: Iterable[str] = FILES) -> PrismData:
    """Load PRISM tables from a local folder, or from the Hub when `source` is `hub` or `hub:<repo>`.

    Args:
        source: a folder with `survey.jsonl`, `conversations.jsonl`, `utterances.jsonl`;
            or `hub` / `hub:<dataset id>` for the Hugging Face dataset (token from `HF_TOKEN`).
        tables: which of the three tables to load.
    """
    tables = tuple(tables)
    source = str(source)
    if source == "hub" or source.startswith("hub:"):
        repo_id = source.partition(":")[2] or HUB_DATASET_ID
        return load_prism_hub(repo_id, tables)
    folder = Path(source)
    if not folder.is_dir():
        raise DLMError(
            f"PRISM folder {folder} not found: download the dataset there "
            f"(git lfs install && git clone https://huggingface.co/datasets/{HUB_DATASET_ID}) "
            "or load it from the Hub: `prism_source: hub` in a profile or notebook (`dlm sortition --survey hub`)"
        )
    data = PrismData(source=str(folder), synthetic=(folder / SYNTHETIC_MARKER).exists())
    for name in tables:
        path = folder / f"{name}.jsonl"
        setattr(data, name, load_table(path, name))
        data.files[name] = str(path)
    return data


def load_table(path: str | Path, table: str) -> pd.DataFrame:
    """Read and validate one PRISM JSONL file (`table` is survey, conversations or utterances)."""
    rows, line_numbers = read_prism_jsonl(path)
    return records_to_frame(rows, table, str(path), line_numbers)


def load_survey(path: str | Path) -> pd.DataFrame:
    """Read and validate `survey.jsonl`."""
    return load_table(path, "survey")


def read_prism_jsonl(path: str | Path) -> tuple[list[dict], list[int]]:
    """Parse a JSONL file, naming the file and line of the first problem."""
    path = Path(path)
    if not path.is_file():
        raise DLMError(f"{path}: file not found; expected PRISM's {path.name} there")
    with open(path, "rb") as fh:
        first = fh.readline()
        if first.startswith(LFS_POINTER_PREFIX.encode()):
            raise DLMError(
                f"{path} is a Git LFS pointer, not data: run `git lfs install && git lfs pull` "
                f"in {path.parent}, or load it from the Hub: `prism_source: hub` in a profile or notebook "
                "(`dlm sortition --survey hub`)"
            )
        fh.seek(0)
        rows, line_numbers = [], []
        offset = 0
        for i, line in enumerate(fh, start=1):
            start, offset = offset, offset + len(line)
            if not line.strip():
                continue
            row = parse_json_line(line, path, i, start)
            if not isinstance(row, dict):
                raise DLMError(f"{path}: line {i} is not a JSON object; each line must be one record")
            rows.append(row)
            line_numbers.append(i)
    if not rows:
        raise DLMError(f"{path}: file is empty; expected one JSON object per line")
    return rows, line_numbers


def records_to_frame(rows: list[dict], table: str, where: str, line_numbers: list[int] | None = None) -> pd.DataFrame:
    """Validate parsed records against the schema and build the table's DataFrame."""
    validate_records(rows, table, where, line_numbers)
    if table == "survey":
        return flatten_survey(rows)
    return pd.DataFrame.from_records(rows)


def validate_records(rows: list[dict], table: str, where: str, line_numbers: list[int] | None = None) -> None:
    """Check required fields and their types; raise DLMError naming file, line and field."""
    line_of = (lambda i: line_numbers[i]) if line_numbers else (lambda i: i + 1)
    for name, (types, nullable) in SCHEMAS[table].items():
        for i, row in enumerate(rows):
            if name not in row:
                raise DLMError(f"{where}: line {line_of(i)} lacks required field '{name}'; this is not a PRISM {table} file")
            value = row[name]
            if value is None and nullable:
                continue
            # bool is a subclass of int in Python; a boolean where an integer belongs is still wrong.
            if not isinstance(value, types) or (types is _INT and isinstance(value, bool)):
                raise DLMError(
                    f"{where}: line {line_of(i)} field '{name}' should be {_TYPE_NAMES[types[0]]}, "
                    f"got {type(value).__name__} {value!r:.40}"
                )
    key = UNIQUE_KEYS[table]
    first_line: dict[str, int] = {}
    for i, row in enumerate(rows):
        seen = first_line.setdefault(row[key], line_of(i))
        if seen != line_of(i):
            raise DLMError(f"{where}: line {line_of(i)} repeats {key} {row[key]!r:.60} of line {seen}; "
                           f"each {key} must appear once (remove the duplicate)")
    if table == "utterances":
        low, high = SCORE_RANGE
        for i, row in enumerate(rows):
            if not low <= row["score"] <= high:
                raise DLMError(f"{where}: line {line_of(i)} field 'score' is {row['score']}, outside "
                               f"{low}-{high}; fix the score or remove the line")
    for name, keys in NESTED_REQUIRED.items() if table == "survey" else ():
        for i, row in enumerate(rows):
            missing = [k for k in keys if k not in row[name]]
            if missing:
                raise DLMError(f"{where}: line {line_of(i)} field '{name}' lacks key '{missing[0]}'")


@dataclass(frozen=True)
class LinkCheck:
    """Utterances whose user or conversation is not in the other tables (dropped only when allowed)."""

    unknown_user: int
    unknown_conversation: int

    @property
    def total(self) -> int:
        """Utterances that are unlinked for either reason."""
        return self.unknown_user + self.unknown_conversation


def check_links(utterances: pd.DataFrame, survey: pd.DataFrame, conversations: pd.DataFrame | None,
                where: str, allow_unlinked: bool = False) -> tuple[pd.DataFrame, LinkCheck]:
    """Utterances whose user_id is in the survey and conversation_id in conversations (when given).

    An unlinked utterance is an error naming its id, unless `allow_unlinked`: then unlinked
    utterances are dropped and counted (the manifest reports them).
    """
    users = set(survey["user_id"].astype(str))
    unknown_user = ~utterances["user_id"].astype(str).isin(users)
    unknown_conv = pd.Series(False, index=utterances.index)
    if conversations is not None:
        unknown_conv = ~utterances["conversation_id"].astype(str).isin(set(conversations["conversation_id"].astype(str)))
        unknown_conv &= ~unknown_user
    check = LinkCheck(int(unknown_user.sum()), int(unknown_conv.sum()))
    if check.total and not allow_unlinked:
        row = utterances[unknown_user | unknown_conv].iloc[0]
        field_, value = ("user_id", row["user_id"]) if unknown_user[row.name] else ("conversation_id",
                                                                                   row["conversation_id"])
        raise DLMError(f"{where}: utterance {row['utterance_id']!r:.60} has {field_} {value!r:.60}, which is not in "
                       f"the {'survey' if field_ == 'user_id' else 'conversations'} ({check.total} such "
                       "utterance(s)); fix the files or pass --allow-unlinked to drop and count them")
    return utterances[~(unknown_user | unknown_conv)], check


def flatten_survey(rows: list[dict]) -> pd.DataFrame:
    """Flatten nested survey objects into dotted columns (`ethnicity.simplified`, ...)."""
    flat = []
    for row in rows:
        out = {}
        for key, value in row.items():
            if isinstance(value, dict):
                for sub, v in value.items():
                    out[f"{key}.{sub}"] = v
            else:
                out[key] = value
        flat.append(out)
    return pd.DataFrame.from_records(flat)


def load_prism_hub(repo_id: str = HUB_DATASET_ID, tables: Iterable[str] = FILES, revision: str | None = None) -> PrismData:
    """Load PRISM tables through `datasets.load_dataset` (one config per file), validated like local files."""
    try:
        from datasets import load_dataset
    except ImportError:  # pragma: no cover - datasets is a core dependency
        raise DLMError("loading from the Hub needs the `datasets` package: pip install datasets") from None
    token = os.environ.get("HF_TOKEN") or None
    data = PrismData(source=f"hub:{repo_id}")
    for name in tables:
        try:
            ds = load_dataset(repo_id, name, split="train", revision=revision, token=token)
        except Exception as exc:  # datasets raises many types; all mean "could not load"
            raise DLMError(
                f"could not load config '{name}' of {repo_id} from the Hub ({type(exc).__name__}: {str(exc)[:200]}); "
                "check the network, accept the dataset's terms on huggingface.co and set HF_TOKEN, "
                "or download it to a folder"
            ) from None
        rows = [_drop_arrow_nulls(r) for r in ds.to_list()]
        setattr(data, name, records_to_frame(rows, name, f"{repo_id}[{name}]"))
        data.files[name] = f"{repo_id}[{name}]@{ds._fingerprint}"
    return data


def _drop_arrow_nulls(row: dict) -> dict:
    """Arrow unifies nested structs across rows, adding absent keys as None: drop those again."""
    return {k: ({kk: vv for kk, vv in v.items() if vv is not None} if isinstance(v, dict) else v) for k, v in row.items()}


def resolve_column(survey: pd.DataFrame, name: str) -> str:
    """Map a user-facing column name to a survey column; a bare nested name means its `simplified` field."""
    if name in survey.columns:
        return name
    if f"{name}.simplified" in survey.columns:
        return f"{name}.simplified"
    nested = sorted(c for c in survey.columns if c.startswith(f"{name}."))
    hint = f"; pick one of {', '.join(nested)}" if nested else ""
    raise DLMError(f"unknown survey column '{name}'{hint}")


def value_counts(survey: pd.DataFrame, columns: Iterable[str]) -> dict[str, pd.Series]:
    """Unique values and their counts, most frequent first, for each requested column."""
    out = {}
    for name in columns:
        col = resolve_column(survey, name)
        out[name] = survey[col].fillna("<missing>").value_counts().sort_index(kind="stable").sort_values(
            ascending=False, kind="stable"
        )
    return out


def format_value_counts(counts: dict[str, pd.Series]) -> str:
    """Plain-text report of `value_counts` for the terminal."""
    lines = []
    for name, series in counts.items():
        lines.append(f"{name} ({len(series)} values, {int(series.sum())} participants)")
        width = max(len(str(v)) for v in series.index)
        lines += [f"  {str(v):<{width}}  {int(n):>6}" for v, n in series.items()]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
