"""Constitutional evaluation: each model answers each question, a judge compares answers pairwise.

Files (beside `--output`):
- `responses/<model>.jsonl`: {question_id, model, model_fingerprint, answer, decoding,
  settings_fingerprint, question_sha} — one line per question, appended as answers are made and
  reused by later runs only while the model's weights, backend, endpoint, decoding settings and
  the question's text are the same (otherwise answered again).
- `<output>` (JSONL): one judgment per (question, pair, order, judge): {question_id, clause_id,
  model_a, model_b, order ("ab": model_a shown first, "ba": model_b first), winner (a model name or
  "tie", never a position), judge_model, judge_raw, len_a, len_b}. Appended as judgments are made;
  on completion rewritten in canonical order, so a resumed run and an uninterrupted one give the
  same file. A torn last line (from a kill) is dropped on resume. Each record carries
  `judge_fingerprint` (judge, backend, endpoint, prompt, decoding) and `answers_sha`: a judgment
  made with other settings or of other answers is made again, never reused.
- Questions are exactly the clauses listed in the questions folder's `questions_run.json`, each
  checked against the SHA-256 recorded there.
- Locks: one writer per judgments file and per responses file (`<file>.lock`); a second run on the
  same file stops at once naming the first. `.<stem>.usage.jsonl` is the usage ledger (requests,
  tokens, failures per cause, per model), accumulated across runs; the summary reports it.
- `<output stem>.summary.json` and `<output stem>.summary.csv`: dlm.stats.winrates.summarise.

The judge sees the clause, the question and two anonymised answers. API judges reply with a
[[A]] / [[B]] / [[C]] tag (C = tie), parsed robustly; local (hf) judges compare the
log-probabilities of the three tags, so every judgment yields a verdict.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from dlm.errors import DLMError
from dlm.judging.calibration import check_judges
from dlm.judging.judge import (Question, VERDICTS, _append, _read_resumable, check_resumable, judge_all,
                               judge_messages, load_questions, make_judge, partial_questions, rewrite_in_task_order,
                               slug)
from dlm.judging.listwise import (check_list_size, check_rankings, compare_modes, judge_rankings, list_fingerprint,
                                  list_params, rankings_path)
from dlm.llm.backends import Backend, GenerationParams, UsageLedger
from dlm.llm.batch_api import check_backend
from dlm.llm.factory import make_backend
from dlm.stats.winrates import json_ready, model_pairs, summarise
from dlm.io import (atomic_path, dumps_canonical, ensure_writable_dir, manifest, model_fingerprint, output_lock,
                    redact_url, sha256_file, sha256_text, write_csv, write_json_atomic)

BATCH_MAX_REQUESTS = 50_000  # requests per OpenAI batch (the API's limit)
MODES = ("pairwise", "listwise", "both")


def answer_settings(model: str, params: GenerationParams, backend: str = "hf", base_url: str | None = None) -> str:
    """Fingerprint of everything besides the question that determines a model's answer (weights, backend, decoding)."""
    return sha256_text(dumps_canonical({"model": model_fingerprint(model), "backend": backend,
                                        "endpoint": redact_url(base_url), "decoding": params.__dict__}))[:16]


def answer_decoding(max_new_tokens: int, seed: int) -> GenerationParams:
    """The decoding every model answers with (greedy, one length budget); `evaluate` and answer jobs share it."""
    return GenerationParams(temperature=0.0, max_tokens=max_new_tokens, seed=seed)


def unanswered(model: str, questions: list[Question], responses_dir: Path, params: GenerationParams,
               backend: str = "hf", base_url: str | None = None) -> list[str]:
    """Question ids without a reusable answer of `model` in `responses/` (what `answer_questions` would ask)."""
    path = responses_dir / f"{slug(model)}.jsonl"
    if not path.exists():
        return [q.question_id for q in questions]
    fingerprint, settings = model_fingerprint(model), answer_settings(model, params, backend, base_url)
    sha = {q.question_id: sha256_text(q.text)[:16] for q in questions}
    have = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a line torn by a kill: that answer is made again
        if (r.get("model_fingerprint") == fingerprint and r.get("settings_fingerprint") == settings
                and sha.get(r.get("question_id")) == r.get("question_sha")):
            have.add(r["question_id"])
    return [q.question_id for q in questions if q.question_id not in have]


def answer_questions(model: str, questions: list[Question], responses_dir: Path, params: GenerationParams,
                     backend: str = "hf", base_url: str | None = None, batch_size: int = 8,
                     cache_dir: Path | None = None, ledger: UsageLedger | None = None) -> dict[str, str]:
    """question_id -> answer for one model, reusing `responses/<model>.jsonl` and appending new answers.

    An answer is reused only while everything that determines it is the same: the model's
    weights (a content hash of a local folder, the id itself for a Hub or server model), the
    backend and endpoint, the decoding settings, and the question's text. Rows made otherwise
    are dropped from the file and answered again.
    """
    path = responses_dir / f"{slug(model)}.jsonl"
    fingerprint = model_fingerprint(model)
    settings = answer_settings(model, params, backend, base_url)
    question_sha = {q.question_id: sha256_text(q.text)[:16] for q in questions}
    with output_lock(path, "answers file"):  # one writer per model's answers
        rows = _read_resumable(path)
        fresh = [r for r in rows if r.get("model_fingerprint") == fingerprint and r.get("settings_fingerprint") == settings
                 and question_sha.get(r["question_id"], r.get("question_sha")) == r.get("question_sha")]
        if len(fresh) < len(rows):
            with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
                fh.writelines(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in fresh)
        done = {r["question_id"]: r["answer"] for r in fresh}
        todo = [q for q in questions if q.question_id not in done]
        if params.temperature == 0:  # greedy: longest first, batches of similar length pad less, same answers
            todo.sort(key=lambda q: -len(q.text))
        if todo:
            llm = make_backend(backend, model, cache_dir, base_url=base_url, batch_size=batch_size,
                               max_in_flight=batch_size, ledger=ledger)
            for start in range(0, len(todo), batch_size):
                chunk = todo[start:start + batch_size]
                answers = llm.complete_many([[{"role": "user", "content": q.text}] for q in chunk], params,
                                            accept=lambda r: r.text.strip())
                _append(path, [{"question_id": q.question_id, "model": model, "model_fingerprint": fingerprint,
                                "settings_fingerprint": settings, "question_sha": question_sha[q.question_id],
                                "answer": a, "decoding": params.__dict__}
                               for q, a in zip(chunk, answers, strict=True)])
                done.update({q.question_id: a for q, a in zip(chunk, answers, strict=True)})
    return {q.question_id: done[q.question_id] for q in questions}


def parse_model_specs(specs: list[str]) -> dict[str, str]:
    """`name=path` or a bare path/id (named by itself) -> {name: path}."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        name, path = (name, path) if sep else (spec, spec)
        if not name or not path:
            raise DLMError(f"model '{spec}': use NAME=PATH or a path")
        if name in out:
            raise DLMError(f"model name '{name}' given twice")
        out[name] = path
    return out


def first_shown(seed: int, question_id: str, a: str, b: str) -> str:
    """Which order a single-order run shows: decided per question from the seed."""
    h = hashlib.sha256(f"{seed}|{question_id}|{a}|{b}".encode()).digest()[0]
    return "ab" if h % 2 == 0 else "ba"


def evaluate(questions_dir: str | Path, models: list[str], output: str | Path, judge_models: list[str],
             judge_backend: str = "openai", judge_base_url: str | None = None, answer_backend: str = "hf",
             answer_base_url: str | None = None, both_orders: bool = True, questions_per_clause: int | None = None,
             max_new_tokens: int = 256, batch_size: int = 8, seed: int = 0,
             primary: tuple[str, str] | None = None, pairs: list[tuple[str, str]] | None = None,
             arms: dict[str, str] | None = None, oracle_spec: str | Path | None = None,
             judge_base_urls: dict[str, str] | None = None, calibration: str | Path | None = None,
             min_calibration_accuracy: float | None = None, openai_batch: bool = False,
             allow_partial: bool = False, mode: str = "pairwise", list_orders: int = 2) -> dict[str, Any]:
    """Answer, judge every pair of models and/or rank them all, write records and their summaries; resumable.

    Args:
        questions_dir: folder of clause files (`dlm questions`).
        models: two or more models as NAME=PATH or PATH: folders (full or LoRA adapter), Hub ids,
            or model names on --answer-base-url. Records and summaries use the names.
        output: judgments JSONL; responses/ and the summary files go beside it.
        judge_models: one or more judges; with several, each judges and a majority is reported.
        judge_backend: openai (any compatible server), hf (log-prob verdicts, local) or oracle (the generated
            sample's own rule, judging as `oracle:GROUP`; one oracle judge per call, see dlm.judging.oracle).
        both_orders: judge each pair in both orders (MT-Bench's conservative rule).
        primary: the comparison declared in advance; the rest are secondary (Holm-adjusted).
        pairs: the model pairs to judge (default: every pair), e.g. `replicates.matched_pairs`.
        arms: model name → arm, when several replicate runs per arm are pooled (see stats.arm_contrasts);
            `primary` then names arms.
        oracle_spec: the generated sample's `oracle_spec.json` (oracle judges only).
        judge_base_urls: judge model → its OpenAI-compatible server, overriding `judge_base_url` per judge.
        calibration: a calibration set (dlm.judging.calibration) each judge is scored on before any model is judged.
        min_calibration_accuracy: stop with an error when a judge's calibration accuracy is below this.
        openai_batch: judge through the OpenAI Batch API (dlm.llm.batch_api): the same records, half the price.
        allow_partial: judge the finished clauses of a questions folder whose run failed or is unfinished
            (refused otherwise); the summary's `partial_questions` says what was missing.
        mode: pairwise, listwise (every model's answer ranked at once, dlm.judging.listwise) or both; listwise
            records and their summary go beside `output` (`<stem>.rankings.jsonl`), and with both the summary
            compares the two (`listwise_vs_pairwise`).
        list_orders: display orders per question in listwise judging (a balanced rotation).
    """
    if mode not in MODES:
        raise DLMError(f"--mode {mode}: use one of {', '.join(MODES)}")
    if mode != "pairwise" and list_orders < 1:
        raise DLMError(f"--list-orders must be at least 1, got {list_orders}")
    if openai_batch:
        check_backend(judge_backend, openai_batch)
    paths = parse_model_specs(models)
    models = list(paths)
    if len(models) < 2:
        raise DLMError("evaluation needs at least two distinct models")
    for m, path in paths.items():
        if answer_backend == "hf" and path.startswith((".", "/", "~")) and not Path(path).expanduser().exists():
            raise DLMError(f"model folder {path} does not exist")
    arm = (arms or {}).get
    if primary and not set(primary) <= {arm(m, m) for m in models}:
        raise DLMError(f"--primary {primary[0]}:{primary[1]} names a model that is not being evaluated")
    output = Path(output)
    ensure_writable_dir(output.parent)
    with output_lock(output, "judgments file"):  # one writer per judgments file: a second run stops at once
        return _evaluate_locked(questions_dir, paths, output, judge_models, judge_backend, judge_base_url,
                                answer_backend, answer_base_url, both_orders, questions_per_clause, max_new_tokens,
                                batch_size, seed, primary, pairs, arms, oracle_spec, judge_base_urls, calibration,
                                min_calibration_accuracy, openai_batch, allow_partial, mode, list_orders)


def _evaluate_locked(questions_dir, paths, output, judge_models, judge_backend, judge_base_url, answer_backend,
                     answer_base_url, both_orders, questions_per_clause, max_new_tokens, batch_size, seed, primary,
                     pairs, arms, oracle_spec, judge_base_urls, calibration, min_calibration_accuracy,
                     openai_batch=False, allow_partial=False, mode="pairwise", list_orders=2) -> dict[str, Any]:
    """`evaluate` once it holds the judgments file's lock."""
    models = list(paths)
    if mode != "pairwise":
        check_list_size(len(models))
    arm = (arms or {}).get
    questions = load_questions(questions_dir, questions_per_clause, allow_partial)
    check_resumable(output, _key)  # before any answer: a foreign file is never resumed
    if mode != "pairwise":
        check_rankings(rankings_path(output))
    cache = output.parent / ".cache"
    ledger = UsageLedger(output.parent / f".{output.stem}.usage.jsonl")
    if judge_backend == "oracle" and len(judge_models) > 1:
        raise DLMError("oracle judges are analysed each on their own: judge with one oracle:GROUP per --output")
    judges = {j: make_judge(judge_backend, j, cache, (judge_base_urls or {}).get(j, judge_base_url), batch_size,
                            oracle_spec, seed, ledger, openai_batch) for j in judge_models}
    checked = _calibrate(judges, judge_backend, calibration, min_calibration_accuracy, seed)
    decoding = answer_decoding(max_new_tokens, seed)
    answers = {m: answer_questions(paths[m], questions, output.parent / "responses", decoding, answer_backend,
                                   answer_base_url, batch_size, cache, ledger) for m in models}
    # The declared primary comparison keeps its orientation (its win rate is primary[0]'s).
    pairs = [(b, a) if primary and (arm(b, b), arm(a, a)) == tuple(primary) else (a, b)
             for a, b in (pairs or model_pairs(models))]
    params = GenerationParams(temperature=0.0, max_tokens=512, seed=seed)
    judge_fps = {j: judge_fingerprint(j, judge_backend, (judge_base_urls or {}).get(j, judge_base_url), params,
                                      oracle_spec) for j in judge_models}
    summary: dict[str, Any] = {"pairs": {}, "clauses": [], "judges": judge_models,
                               "primary": list(primary) if primary else None}
    records: list[dict[str, Any]] = []
    if mode != "listwise":
        tasks = _judging_tasks(questions, pairs, answers, judge_models, both_orders, seed, judge_fps)
        done = {_key(r) for r in _read_resumable(output)}
        todo = [t for t in tasks if _key(t["record"]) not in done]
        for judge_model in judge_models:
            mine = [t for t in todo if t["record"]["judge_model"] == judge_model]
            judge = judges[judge_model]
            # Write as we go: a kill loses at most one chunk. A Batch API chunk is one batch (resumed by id after a kill).
            step = BATCH_MAX_REQUESTS if openai_batch else 32
            for start in range(0, len(mine), step):
                chunk = mine[start:start + step]
                verdicts = judge_all(judge, chunk, judge_backend == "hf", params, batch_size)
                _append(output, [_finish(t, v, raw) for t, (v, raw) in zip(chunk, verdicts, strict=True)])
        records = rewrite_in_task_order(output, tasks, _key, "judgments")
        summary = summarise(pd.DataFrame(records), primary, seed=seed, arms=arms)
    if mode != "pairwise":
        list_fps = {j: list_fingerprint(j, judge_backend, (judge_base_urls or {}).get(j, judge_base_url), list_params(seed),
                                        oracle_spec, judge_backend == "hf") for j in judge_models}
        list_primary = tuple(primary) if primary and set(primary) <= set(models) else None
        summary["listwise"] = judge_rankings(questions, answers, rankings_path(output), judges, list_fps,
                                             judge_backend == "hf", list_orders, seed, list_primary,
                                             chunk=BATCH_MAX_REQUESTS if openai_batch else 32)
        if mode == "both":
            summary["listwise_vs_pairwise"] = compare_modes(summary, summary["listwise"])
    totals = ledger.totals()
    summary["usage"] = {"judges": {j: totals[j] for j in judge_models if j in totals},
                        "answers": {m: totals[paths[m]] for m in models if paths[m] in totals}}
    summary["settings"] = manifest("evaluation", config={
        "models": paths, "judge_models": judge_models, "judge_backend": judge_backend, "both_orders": both_orders,
        "questions_per_clause": questions_per_clause, "max_new_tokens": max_new_tokens,
        "answer_backend": answer_backend, "judge_base_url": redact_url(judge_base_url),
        "judge_base_urls": {j: redact_url(u) for j, u in (judge_base_urls or {}).items()} or None,
        "answer_base_url": redact_url(answer_base_url), "judge_fingerprints": judge_fps,
        "oracle_spec": str(oracle_spec) if oracle_spec else None, "mode": mode,
        "list_orders": list_orders if mode != "pairwise" else None}, seed=seed,
        n_questions=len(questions), n_judgments=len(records))
    if checked:
        summary["calibration"] = checked
    summary["partial_questions"] = partial_questions(questions_dir)  # None: every selected clause was judged
    if mode != "listwise":  # a listwise-only run has no pairwise records: its summary is `<stem>.rankings.summary.json`
        write_summary(output, summary)
    return summary


def judge_fingerprint(judge_model: str, backend: str, base_url: str | None, params: GenerationParams,
                      oracle_spec: str | Path | None = None) -> str:
    """Hash of everything that determines a judge's verdicts besides the answers themselves."""
    prompt = judge_messages(Question("{question_id}", "{clause_id}", "{clause}", "{question}"), "{first}", "{second}")
    judge = model_fingerprint(judge_model) if backend in ("hf", "vllm") else judge_model
    if backend == "oracle" and oracle_spec:  # the oracle's verdicts follow the spec's rule: a new rule, new verdicts
        judge = f"{judge_model}:{sha256_file(oracle_spec)[:16]}"
    return sha256_text(dumps_canonical({
        "judge": judge, "backend": backend, "endpoint": redact_url(base_url), "prompt": prompt,
        "decoding": params.__dict__}))[:16]


def _calibrate(judges: dict[str, Backend], kind: str, calibration: str | Path | None, threshold: float | None,
               seed: int) -> dict[str, Any] | None:
    """Score each judge on the calibration set first; stop before any model is judged if one is below threshold."""
    if not calibration:
        return None

    return {j: r.__dict__ for j, r in check_judges(judges, kind == "hf", calibration, threshold, seed).items()}


def _judging_tasks(questions, pairs, answers, judge_models, both_orders, seed, judge_fps) -> list[dict[str, Any]]:
    tasks = []
    for a, b in pairs:
        for q in questions:
            orders = ["ab", "ba"] if both_orders else [first_shown(seed, q.question_id, a, b)]
            for order in orders:
                first, second = (a, b) if order == "ab" else (b, a)
                for judge_model in judge_models:
                    answer_a, answer_b = answers[a][q.question_id], answers[b][q.question_id]
                    record = {"question_id": q.question_id, "clause_id": q.clause_id, "model_a": a, "model_b": b,
                              "order": order, "judge_model": judge_model, "len_a": len(answer_a),
                              "len_b": len(answer_b), "answers_sha": sha256_text(answer_a + "\0" + answer_b)[:16],
                              "judge_fingerprint": judge_fps[judge_model]}
                    tasks.append({"record": record, "shown": (first, second),
                                  "messages": judge_messages(q, answers[first][q.question_id],
                                                             answers[second][q.question_id])})
    return tasks


def _finish(task: dict[str, Any], verdict: str, raw: str) -> dict[str, Any]:
    """The judgment record: the verdict letter mapped back to a model name (or tie)."""
    shown = task["shown"]
    winner = "tie" if verdict == "C" else shown[VERDICTS[verdict]]
    return {**task["record"], "winner": winner, "judge_raw": raw}


def _key(record: dict[str, Any]) -> tuple:
    # The answers' hash and the judge's settings are part of the key: a judgment of answers since
    # replaced, or by a judge since reconfigured, is not reused.
    return (record["question_id"], record["model_a"], record["model_b"], record["order"], record["judge_model"],
            record.get("answers_sha"), record.get("judge_fingerprint"))


def write_summary(output: Path, summary: dict[str, Any]) -> None:
    """`<stem>.summary.json` and a per-pair `<stem>.summary.csv`."""
    stem = output.with_suffix("")
    write_json_atomic(f"{stem}.summary.json", json_ready(summary))  # NaN (not estimable) → null
    with atomic_path(f"{stem}.summary.csv") as tmp:
        write_csv(tmp, pd.DataFrame([{"pair": k, **v} for k, v in summary["pairs"].items()]))
