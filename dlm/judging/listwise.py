"""Listwise judging: one question, its clause and every model's answer under anonymous labels, ranked best first.

Files (beside the pairwise `--output`, whose stem they share):
- `<stem>.rankings.jsonl`: one ranking per (question, display order, judge): {question_id, clause_id,
  judge_model, models (names in display order), ranking (names best first; a list of names for a
  tie), order (0..K-1), answers_sha, judge_fingerprint, judge_raw}. Appended as rankings are made,
  rewritten in canonical order on completion; resumable like the pairwise judgments (a ranking of
  other answers, or by a reconfigured judge, is made again).
- `<stem>.rankings.summary.json`: `rank_summary` of the records (what `dlm rank` recomputes) plus a
  `run` entry (malformed replies by cause, judge fingerprints, display orders).

Each question is shown in K display orders, a seeded balanced rotation (every model in every position
equally often across the question set), so position bias cancels in the pooled fit and is measured.
API and hf judges reply with JSON {"ranking": ["C", "A", ...]}; a reply that is not JSON, names an
unknown label, repeats one or leaves one out is classified, asked again (up to 3 times) and counted.
An hf judge may instead rank by option log-probabilities, position by position (`use_logprobs`).
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Any

from dlm.errors import DLMError
from dlm.io import dumps_canonical, model_fingerprint, output_lock, redact_url, sha256_file, sha256_text
from dlm.io import write_json_atomic
from dlm.judging.judge import Question, _append, _read_resumable, check_resumable, rewrite_in_task_order
from dlm.llm.backends import Backend, GenerationParams
from dlm.stats.ranking import RankingError, balanced_display_orders, rank_correlation, summarize_rankings

LABELS = string.ascii_uppercase
LIST_SYSTEM = ("You are an impartial judge. You rank several assistant answers against one principle. Ignore the "
               "order in which the answers are shown and their length; judge only how well each follows the "
               "principle while answering the question.")
FAULTS = ("not json", "unknown label", "repeated label", "incomplete ranking")


class MalformedRanking(ValueError):
    """A judge reply that is not a full ranking; `cause` is one of FAULTS."""

    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


def list_messages(q: Question, answers: list[str]) -> list[dict[str, str]]:
    """The listwise prompt: principle, question, and the answers labelled A, B, ... in display order."""
    if len(answers) > len(LABELS):
        raise DLMError(f"listwise judging labels answers A-Z: at most {len(LABELS)} models, got {len(answers)}")
    labels = LABELS[:len(answers)]
    blocks = "\n\n".join(f"[Answer {x}]\n{a}\n[End of Answer {x}]" for x, a in zip(labels, answers, strict=True))
    user = (f"Principle: {q.clause}\n\nQuestion: {q.text}\n\n{blocks}\n\nRank every answer from the one that follows "
            f"the principle best to the one that follows it worst. Reply with JSON only: "
            f'{{"ranking": [{", ".join(json.dumps(x) for x in labels)}]}} reordered best first, each label '
            "exactly once.")
    return [{"role": "system", "content": LIST_SYSTEM}, {"role": "user", "content": user}]


def parse_ranking(text: str, n: int) -> tuple[tuple[str, ...], ...]:
    """Label groups best first from a JSON {"ranking": [...]} reply (a nested list is a tie); MalformedRanking if not full."""
    found = re.search(r"\{.*\}", text, re.S)
    try:
        ranking = json.loads(found.group(0))["ranking"] if found else None
    except (ValueError, KeyError, TypeError):
        ranking = None
    if not isinstance(ranking, list):
        raise MalformedRanking("not json")
    groups = [tuple(str(x).strip().upper() for x in (e if isinstance(e, list) else [e])) for e in ranking]
    named = [x for g in groups for x in g]
    if any(x not in LABELS[:n] for x in named):
        raise MalformedRanking("unknown label")
    if len(set(named)) != len(named):
        raise MalformedRanking("repeated label")
    if len(named) != n or any(not g for g in groups):
        raise MalformedRanking("incomplete ranking")
    return tuple(groups)


def rank_all(judge: Backend, tasks: list[dict[str, Any]], use_logprobs: bool, params: GenerationParams,
             faults: Counter) -> list[tuple[tuple[tuple[str, ...], ...], str]]:
    """(label groups best first, raw reply) per task; malformed replies are counted in `faults` by cause."""
    if use_logprobs:
        return _rank_by_logprobs(judge, tasks)

    def acceptor(n: int):
        def accept(reply):
            try:
                return {"ranking": [list(g) for g in parse_ranking(reply.text, n)], "raw": reply.text}
            except MalformedRanking as exc:
                faults[exc.cause] += 1
                raise
        return accept

    sizes = sorted({len(t["shown"]) for t in tasks})
    results: dict[int, tuple] = {}
    for n in sizes:
        idx = [i for i, t in enumerate(tasks) if len(t["shown"]) == n]
        replies = judge.complete_many([tasks[i]["messages"] for i in idx], params, accept=acceptor(n))
        for i, r in zip(idx, replies, strict=True):
            results[i] = (tuple(tuple(g) for g in r["ranking"]), r["raw"])
    return [results[i] for i in range(len(tasks))]


def _rank_by_logprobs(judge: Backend, tasks: list[dict[str, Any]]) -> list[tuple[tuple[tuple[str, ...], ...], str]]:
    """Position by position: the most likely label among those left, given the ranking so far (local judges)."""
    chosen: list[list[str]] = [[] for _ in tasks]
    for _ in range(max(len(t["shown"]) for t in tasks) - 1):
        live = [i for i, t in enumerate(tasks) if len(chosen[i]) < len(t["shown"]) - 1]
        for n_left in sorted({len(tasks[i]["shown"]) - len(chosen[i]) for i in live}):
            group = [i for i in live if len(tasks[i]["shown"]) - len(chosen[i]) == n_left]
            # One option list per call: group tasks by the labels still to place.
            by_left: dict[tuple[str, ...], list[int]] = {}
            for i in group:
                left = tuple(x for x in LABELS[:len(tasks[i]["shown"])] if x not in chosen[i])
                by_left.setdefault(left, []).append(i)
            for left, members in by_left.items():
                conversations = [_next_place(tasks[i]["messages"], chosen[i], left) for i in members]
                for i, scores in zip(members, judge.score_options(conversations, [f"[[{x}]]" for x in left]),
                                     strict=True):
                    chosen[i].append(left[max(range(len(left)), key=lambda k: scores[k])])
    out = []
    for i, t in enumerate(tasks):
        last = [x for x in LABELS[:len(t["shown"])] if x not in chosen[i]]
        order = chosen[i] + last
        out.append((tuple((x,) for x in order), json.dumps({"ranking": order, "by": "logprobs"})))
    return out


def _next_place(messages: list[dict[str, str]], chosen: list[str], left: tuple[str, ...]) -> list[dict[str, str]]:
    """The listwise prompt asking for the best of the labels left, given those already placed."""
    so_far = f"The ranking so far, best first: {', '.join(chosen)}. " if chosen else ""
    ask = (f"\n\n{so_far}Which of the answers {', '.join(left)} follows the principle best? Reply with its label "
           "as [[X]].")
    return messages[:-1] + [{"role": "user", "content": messages[-1]["content"] + ask}]


def list_params(seed: int) -> GenerationParams:
    """The listwise judge's decoding: greedy, JSON output, room for a ranking after a short explanation."""
    return GenerationParams(temperature=0.0, max_tokens=512, seed=seed, json_mode=True)


def list_fingerprint(judge_model: str, backend: str, base_url: str | None, params: GenerationParams,
                     oracle_spec: str | Path | None = None, use_logprobs: bool = False) -> str:
    """Hash of everything that determines a judge's rankings besides the answers themselves."""
    prompt = list_messages(Question("{question_id}", "{clause_id}", "{clause}", "{question}"), ["{answer}"] * 2)
    judge = model_fingerprint(judge_model) if backend in ("hf", "vllm") else judge_model
    if backend == "oracle" and oracle_spec:
        judge = f"{judge_model}:{sha256_file(oracle_spec)[:16]}"
    return sha256_text(dumps_canonical({"judge": judge, "backend": backend, "endpoint": redact_url(base_url),
                                        "prompt": prompt, "decoding": params.__dict__, "mode": "listwise",
                                        "logprobs": use_logprobs}))[:16]


def ranking_tasks(questions: list[Question], answers: dict[str, dict[str, str]], judge_fps: dict[str, str],
                  list_orders: int, seed: int) -> list[dict[str, Any]]:
    """One task per question, display order and judge; display orders rotate over the questions (balanced)."""
    models = sorted(answers)
    orders = balanced_display_orders(models, len(questions), list_orders, seed)
    tasks = []
    for q, shown_orders in zip(questions, orders, strict=True):
        sha = sha256_text("\0".join(f"{m}\0{answers[m][q.question_id]}" for m in models))[:16]
        for k, shown in enumerate(shown_orders):
            for judge_model, fp in judge_fps.items():
                record = {"question_id": q.question_id, "clause_id": q.clause_id, "judge_model": judge_model,
                          "models": list(shown), "order": k, "answers_sha": sha, "judge_fingerprint": fp}
                tasks.append({"record": record, "shown": shown,
                              "messages": list_messages(q, [answers[m][q.question_id] for m in shown])})
    return tasks


def check_rankings(path: Path) -> None:
    """Stop before any work when a rankings file to resume holds a line that is not a ranking record."""
    check_resumable(path, _key)


def _key(record: dict[str, Any]) -> tuple:
    return (record["question_id"], tuple(record["models"]), record["order"], record["judge_model"],
            record.get("answers_sha"), record.get("judge_fingerprint"))


def _finish(task: dict[str, Any], groups: tuple[tuple[str, ...], ...], raw: str) -> dict[str, Any]:
    """The ranking record: labels mapped back to model names; a one-model group is written as the name."""
    name = dict(zip(LABELS, task["shown"]))
    ranking = [name[g[0]] if len(g) == 1 else sorted(name[x] for x in g) for g in groups]
    return {**task["record"], "ranking": ranking, "judge_raw": raw}


def rank_summary(records: list[dict[str, Any]], primary: tuple[str, str] | None, seed: int = 0,
                 n_boot: int = 1000) -> dict[str, Any]:
    """Every rank-aggregation statistic of the records, with every model pair as a contrast (primary first)."""
    models = sorted({m for r in records for m in r["models"]})
    pairs = [f"{a}:{b}" for a, b in combinations(models, 2)]
    try:
        return summarize_rankings(records, primary=":".join(primary) if primary else None, contrasts=pairs,
                                  seed=seed, n_boot=n_boot).to_dict()
    except RankingError as exc:
        raise DLMError(str(exc)) from None


def judge_rankings(questions: list[Question], answers: dict[str, dict[str, str]], rankings: Path,
                   judges: dict[str, Backend], judge_fps: dict[str, str], use_logprobs: bool, list_orders: int,
                   seed: int, primary: tuple[str, str] | None, chunk: int = 32, n_boot: int = 1000) -> dict[str, Any]:
    """Rank every model's answers per question and display order, write the records and their summary; resumable."""
    if list_orders < 1:
        raise DLMError(f"--list-orders must be at least 1, got {list_orders}")
    params = list_params(seed)
    faults: Counter = Counter()
    with output_lock(rankings, "rankings file"):
        tasks = ranking_tasks(questions, answers, judge_fps, list_orders, seed)
        done = {_key(r) for r in _read_resumable(rankings)}
        todo = [t for t in tasks if _key(t["record"]) not in done]
        for judge_model, judge in judges.items():
            mine = [t for t in todo if t["record"]["judge_model"] == judge_model]
            for start in range(0, len(mine), chunk):  # write as we go: a kill loses at most one chunk
                part = mine[start:start + chunk]
                _append(rankings, [_finish(t, g, raw) for t, (g, raw) in
                                   zip(part, rank_all(judge, part, use_logprobs, params, faults), strict=True)])
        records = rewrite_in_task_order(rankings, tasks, _key, "rankings")
    summary = rank_summary(records, primary, seed, n_boot)
    summary["run"] = {"malformed_replies": {c: faults[c] for c in FAULTS}, "list_orders": list_orders,
                      "judge_fingerprints": judge_fps, "n_records": len(records), "records": str(rankings)}
    write_json_atomic(rankings_summary_path(rankings), summary)
    return summary


def rankings_path(output: str | Path) -> Path:
    """Where the listwise records of an evaluation with this (pairwise) `--output` go."""
    output = Path(output)
    return output.with_name(f"{output.stem}.rankings.jsonl")


def rankings_summary_path(rankings: str | Path) -> Path:
    """`<rankings stem>.summary.json`."""
    rankings = Path(rankings)
    return rankings.with_name(f"{rankings.stem}.summary.json")


def compare_modes(pairwise: dict[str, Any], listwise: dict[str, Any]) -> dict[str, Any]:
    """Bradley–Terry vs Plackett–Luce orders (Spearman, Kendall) and direct vs ranking-implied win rates per pair."""
    pl_order = [m["model"] for m in listwise["models"]]
    out: dict[str, Any] = {"plackett_luce_order": pl_order, "bradley_terry_order": None, "spearman": None,
                           "kendall": None, "pairs": {}}
    bt = pairwise.get("bradley_terry")
    if bt and set(bt) == set(pl_order):
        bt_order = sorted(bt, key=lambda m: (-bt[m]["rating"], m))
        out["bradley_terry_order"] = bt_order
        out["spearman"], out["kendall"] = rank_correlation(bt_order, pl_order)
    contrasts = {(c["a"], c["b"]): c for c in listwise["contrasts"]}
    for key, p in pairwise["pairs"].items():
        a, b = p["model_a"], p["model_b"]
        c, flip = (contrasts.get((a, b)), False) if (a, b) in contrasts else (contrasts.get((b, a)), True)
        if c is None:
            continue

        def side(x: float, lo: float, hi: float) -> tuple[float, float, float]:
            return (1 - x, 1 - hi, 1 - lo) if flip else (x, lo, hi)
        implied, empirical = side(c["implied"], c["implied_low"], c["implied_high"]), side(
            c["empirical"], c["empirical_low"], c["empirical_high"])
        out["pairs"][key] = {"model_a": a, "model_b": b, "primary": p["primary"], "direct": p["win_rate"],
                             "direct_low": p["ci_low"], "direct_high": p["ci_high"],
                             "ranked_above": empirical[0], "ranked_above_low": empirical[1],
                             "ranked_above_high": empirical[2], "implied": implied[0], "implied_low": implied[1],
                             "implied_high": implied[2]}
    return out


def check_list_size(n_models: int) -> None:
    """Stop before any work when a listwise request would hold more answers than there are labels (A-Z)."""
    if n_models > len(LABELS):
        raise DLMError(f"listwise judging ranks at most {len(LABELS)} models in one request, this design has "
                       f"{n_models}; set judge_mode (--mode) to pairwise, or judge fewer arms")
