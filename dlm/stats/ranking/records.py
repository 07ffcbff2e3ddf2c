"""Listwise ranking records: the typed record, its validation from dicts, and the array encoding.

A ranking lists model names best first. Ties are written as a list of groups: ``["a", ["b", "c"],
"d"]`` (or every entry a list) means a first, b and c tied second, d last. Internally a ranking is a
tuple of groups, each a tuple of names; a strict ranking has only one-name groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

REQUIRED = ("question_id", "clause_id", "judge_model", "models", "ranking")


class RankingError(Exception):
    """A ranking record or an argument the user can fix; the message says what is wrong."""


@dataclass(frozen=True)
class RankingRecord:
    """One judge's ranking of every answer to one question, shown in one display order."""

    question_id: str
    clause_id: str
    judge_model: str
    models: tuple[str, ...]  # model names in display order (position 0 shown first)
    ranking: tuple[tuple[str, ...], ...]  # groups of model names, best group first; a group >1 is a tie

    @property
    def strict(self) -> bool:
        """Whether the ranking has no ties."""
        return all(len(group) == 1 for group in self.ranking)


@dataclass(frozen=True)
class RankingData:
    """Records as arrays over a fixed model list: levels, display positions and clause of each ranking."""

    models: tuple[str, ...]  # sorted model names: the column order of every array
    clauses: tuple[str, ...]  # sorted clause ids: the values of `clause`
    levels: np.ndarray  # (n, m) int: 0 for the best group, 1 the next...; -1 where the model is absent
    display: np.ndarray  # (n, m) int: display position of each model; -1 where absent
    clause: np.ndarray  # (n,) int index into `clauses`

    @property
    def n(self) -> int:
        """Number of rankings."""
        return self.levels.shape[0]

    @property
    def m(self) -> int:
        """Number of models."""
        return len(self.models)

    def subset(self, rows: np.ndarray) -> RankingData:
        """The same encoding restricted to some rankings (clause labels kept)."""
        return RankingData(self.models, self.clauses, self.levels[rows], self.display[rows], self.clause[rows])


def _groups(ranking: object, where: str) -> tuple[tuple[str, ...], ...]:
    if isinstance(ranking, str) or not isinstance(ranking, Sequence) or len(ranking) == 0:
        raise RankingError(f"{where}: 'ranking' must be a non-empty list of model names (or lists of tied names)")
    groups = []
    for entry in ranking:
        group = (entry,) if isinstance(entry, str) else entry
        if isinstance(group, str) or not isinstance(group, Sequence) or len(group) == 0 \
                or not all(isinstance(name, str) for name in group):
            raise RankingError(f"{where}: ranking entry {entry!r} is neither a model name nor a list of tied names")
        groups.append(tuple(str(name) for name in group))  # str(): numpy strings would leak into JSON
    return tuple(groups)


def parse_record(row: Mapping[str, object], where: str = "record") -> RankingRecord:
    """Validate one record dict (other keys, such as a settings fingerprint, are ignored)."""
    if not isinstance(row, Mapping):
        raise RankingError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [key for key in REQUIRED if key not in row]
    if missing:
        raise RankingError(f"{where}: missing {', '.join(missing)}")
    models = row["models"]
    if isinstance(models, str) or not isinstance(models, Sequence) or not all(isinstance(x, str) for x in models):
        raise RankingError(f"{where}: 'models' must be a list of model names in display order")
    if len(models) < 2 or len(set(models)) != len(models):
        raise RankingError(f"{where}: 'models' needs at least two distinct names, got {list(models)}")
    groups = _groups(row["ranking"], where)
    ranked = [name for group in groups for name in group]
    if len(set(ranked)) != len(ranked):
        raise RankingError(f"{where}: a model appears twice in the ranking {list(ranked)}")
    if set(ranked) != set(models):
        raise RankingError(f"{where}: the ranking {sorted(ranked)} must name exactly the models shown {sorted(models)}")
    return RankingRecord(str(row["question_id"]), str(row["clause_id"]), str(row["judge_model"]),
                         tuple(str(name) for name in models), groups)


def load_rankings(rows: Iterable[Mapping[str, object]]) -> list[RankingRecord]:
    """Validate record dicts (e.g. the lines of a JSONL file); raises RankingError naming the bad record."""
    records = [parse_record(row, f"record {i + 1}") for i, row in enumerate(rows)]
    if not records:
        raise RankingError("no ranking records")
    return records


def to_dict(record: RankingRecord) -> dict[str, object]:
    """The record as a JSON-able dict; a strict ranking is a flat list of names, else a list of groups."""
    ranking: list[object] = ([group[0] for group in record.ranking] if record.strict
                             else [list(group) for group in record.ranking])
    return {"question_id": record.question_id, "clause_id": record.clause_id, "judge_model": record.judge_model,
            "models": list(record.models), "ranking": ranking}


def encode(records: Sequence[RankingRecord], models: Sequence[str] | None = None) -> RankingData:
    """Arrays of the records over `models` (default: every model named, sorted)."""
    if not records:
        raise RankingError("no ranking records")
    names = tuple(sorted({name for r in records for name in r.models})) if models is None else tuple(models)
    column = {name: j for j, name in enumerate(names)}
    unknown = sorted({name for r in records for name in r.models} - set(column))
    if unknown:
        raise RankingError(f"rankings name models outside the model list: {', '.join(unknown)}")
    clauses = tuple(sorted({r.clause_id for r in records}))
    clause_index = {c: i for i, c in enumerate(clauses)}
    levels = np.full((len(records), len(names)), -1, dtype=int)
    display = np.full((len(records), len(names)), -1, dtype=int)
    for i, record in enumerate(records):
        for level, group in enumerate(record.ranking):
            levels[i, [column[name] for name in group]] = level
        display[i, [column[name] for name in record.models]] = np.arange(len(record.models))
    clause = np.array([clause_index[r.clause_id] for r in records], dtype=int)
    return RankingData(names, clauses, levels, display, clause)


def drop_model(data: RankingData, model: int) -> RankingData:
    """The rankings with one model removed and the rest renumbered (its column is kept, all absent)."""
    levels = data.levels.copy()
    levels[:, model] = -1
    # Renumber levels densely so a group emptied by the removal does not leave a gap.
    dense = np.full_like(levels, -1)
    for i in range(levels.shape[0]):
        present = levels[i] >= 0
        _, dense[i, present] = np.unique(levels[i, present], return_inverse=True)
    display = data.display.copy()
    display[:, model] = -1
    return RankingData(data.models, data.clauses, dense, display, data.clause)
