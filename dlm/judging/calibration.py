"""Calibration of a judge on known answers: hand-written pairs (follows / clearly violates) per clause.

The set (`constitution_calibration.yaml` beside `constitution.txt`; schema in its header) holds at
least two pairs for every clause. Each pair is shown to the judge with the same prompt as in 06, in
both orders. Reported per judge:
- `accuracy`: share of the 2N judgments that pick the answer that follows the clause (a tie ½);
- `accuracy_both_orders`: share of pairs the following answer wins in both orders (06's rule);
  this is what `min_accuracy` is compared with;
- `first_shown_rate`: share of decided judgments that pick the answer shown first (0.5: no
  position bias; 1.0: always the first);
- `tie_rate` and `inconsistency_rate` (pairs whose two verdicts differ).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dlm.errors import DLMError
from dlm.io import load_yaml
from dlm.judging.judge import Question, judge_all, judge_messages
from dlm.judging.questions import parse_constitution
from dlm.llm.backends import Backend, GenerationParams

DEFAULT_PATH = "constitution_calibration.yaml"
MIN_PAIRS_PER_CLAUSE = 2


@dataclass(frozen=True)
class CalibrationPair:
    """One known answer: for a question, an answer that follows the clause and one that violates it."""

    clause_id: str
    clause: str
    question: str
    follows: str
    violates: str


@dataclass(frozen=True)
class CalibrationResult:
    """How one judge did on the calibration set."""

    judge: str
    n_pairs: int
    accuracy: float
    accuracy_both_orders: float
    first_shown_rate: float | None
    tie_rate: float
    inconsistency_rate: float
    missed: tuple[str, ...]  # clause ids whose pairs the judge did not get right in both orders


def load_calibration(path: str | Path, constitution: str | Path = "constitution.txt") -> list[CalibrationPair]:
    """Read the calibration set and check it against the constitution: every clause covered, no strays."""
    path = Path(path)
    if not path.is_file():
        raise DLMError(f"calibration set {path} not found (the default is {DEFAULT_PATH} beside constitution.txt)")
    items = load_yaml(path, "calibration set")
    if not isinstance(items, list):
        raise DLMError(f"{path}: expected a list of items with clause, question, follows, violates")
    clauses = {int(c.clause_id): c for c in parse_constitution(constitution)}
    pairs = []
    for i, item in enumerate(items, start=1):
        where = f"{path} item {i}"
        if not isinstance(item, dict) or set(item) != {"clause", "question", "follows", "violates"}:
            raise DLMError(f"{where}: needs exactly the fields clause, question, follows, violates")
        if item["clause"] not in clauses:
            raise DLMError(f"{where}: clause {item['clause']} is not in {constitution}")
        texts = [item[k] for k in ("question", "follows", "violates")]
        if not all(isinstance(t, str) and t.strip() for t in texts) or item["follows"] == item["violates"]:
            raise DLMError(f"{where}: question, follows and violates must be non-empty and the answers different")
        c = clauses[item["clause"]]
        pairs.append(CalibrationPair(c.clause_id, c.text, *(t.strip() for t in texts)))
    short = [n for n in clauses if sum(p.clause_id == clauses[n].clause_id for p in pairs) < MIN_PAIRS_PER_CLAUSE]
    if short:
        raise DLMError(f"{path}: clause(s) {', '.join(map(str, short))} of {constitution} have fewer than "
                       f"{MIN_PAIRS_PER_CLAUSE} pairs; write more for them")
    return pairs


def score_judge(judge: Backend, pairs: list[CalibrationPair], use_logprobs: bool = False,
                seed: int = 0) -> CalibrationResult:
    """Judge every pair in both orders with 06's prompt and rule; accuracy, position bias, ties."""
    tasks = []
    for k, p in enumerate(pairs):
        q = Question(f"calibration-{k}", p.clause_id, p.clause, p.question)
        tasks.append({"messages": judge_messages(q, p.follows, p.violates)})  # follows shown first
        tasks.append({"messages": judge_messages(q, p.violates, p.follows)})
    verdicts = [v for v, _ in judge_all(judge, tasks, use_logprobs, GenerationParams(0.0, 512, seed))]
    right = {"A": [], "B": []}  # per order: 1 follows chosen, ½ tie, 0 violates chosen
    for k in range(len(pairs)):
        first, second = verdicts[2 * k], verdicts[2 * k + 1]
        right["A"].append({"A": 1.0, "C": 0.5, "B": 0.0}[first])
        right["B"].append({"B": 1.0, "C": 0.5, "A": 0.0}[second])
    n = len(pairs)
    decided = [v for v in verdicts if v != "C"]
    both = [right["A"][k] == 1.0 and right["B"][k] == 1.0 for k in range(n)]
    return CalibrationResult(
        judge=judge.model, n_pairs=n, accuracy=(sum(right["A"]) + sum(right["B"])) / (2 * n),
        accuracy_both_orders=sum(both) / n,
        first_shown_rate=decided.count("A") / len(decided) if decided else None,
        tie_rate=verdicts.count("C") / len(verdicts),
        inconsistency_rate=sum(verdicts[2 * k] != verdicts[2 * k + 1] for k in range(n)) / n,
        missed=tuple(sorted({pairs[k].clause_id for k in range(n) if not both[k]})))


def check_judges(judges: dict[str, Backend], use_logprobs: bool, path: str | Path, min_accuracy: float | None,
                 seed: int = 0, constitution: str | Path | None = None) -> dict[str, CalibrationResult]:
    """Score each judge; raise DLMError naming every judge below `min_accuracy` (both-orders accuracy)."""
    constitution = constitution or Path(path).with_name("constitution.txt")
    pairs = load_calibration(path, constitution)
    results = {name: score_judge(judge, pairs, use_logprobs, seed) for name, judge in judges.items()}
    low = [r for r in results.values() if min_accuracy is not None and r.accuracy_both_orders < min_accuracy]
    if low:
        raise DLMError("judge calibration failed before judging any model: " + "; ".join(
            f"{r.judge} picks the answer that follows the clause in both orders on {r.accuracy_both_orders:.0%} of "
            f"{r.n_pairs} known pairs (threshold {min_accuracy:.0%}; first-shown rate "
            + (f"{r.first_shown_rate:.2f}" if r.first_shown_rate is not None else "n/a") + ")" for r in low)
            + ". Use a stronger judge, or lower the threshold (calibration_min_accuracy / --min-calibration-accuracy)")
    return results
