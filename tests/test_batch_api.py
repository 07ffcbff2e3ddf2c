"""The OpenAI Batch API path ends with the same records as the synchronous path, also after a kill while pending.

Both paths run against one loopback server (tests/fake_openai.py, with /v1/files and /v1/batches):
the judge's endpoint is part of every judgment's fingerprint. Slow-marked as the issue asks, but
each test takes a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT
from fake_openai import FakeOpenAI

from dlm.llm import batch_api
from dlm.cli import main
from dlm.errors import DLMError
from dlm.judging.evaluation import evaluate
from dlm.llm.backends import LLMError
from dlm.judging.questions import generate_questions

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]
KEY = "sk-CANARY-batch-key-24680"
MODELS = ["a=model-a", "b=model-b"]


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setattr(batch_api, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(batch_api, "MAX_WAIT", 0.0)


@pytest.fixture(scope="module")
def questions(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("q")
    generate_questions(ROOT / "constitution.txt", folder, backend="template", n_questions=2, end_clause=3)
    return folder


def judged(questions: Path, out: Path, server: FakeOpenAI, batch: bool) -> dict:
    return evaluate(questions, MODELS, out, ["gpt-4o-mini"], judge_backend="openai", judge_base_url=server.url,
                    answer_backend="openai", answer_base_url=server.url, max_new_tokens=12, openai_batch=batch)


def test_judging_through_the_batch_api_gives_the_synchronous_records_at_half_the_price(questions, tmp_path):
    with FakeOpenAI(judge="second") as server:
        sync = judged(questions, tmp_path / "sync/e.jsonl", server, batch=False)
        chats = server.count
        batch = judged(questions, tmp_path / "batch/e.jsonl", server, batch=True)
        assert len(server.batches) == 1 and server.count - chats == 12  # judgments in one batch; 2 x 6 answers direct
    assert (tmp_path / "batch/e.jsonl").read_bytes() == (tmp_path / "sync/e.jsonl").read_bytes()
    assert json.dumps(batch["pairs"], sort_keys=True) == json.dumps(sync["pairs"], sort_keys=True)  # NaN-safe
    s, b = sync["usage"]["judges"]["gpt-4o-mini"], batch["usage"]["judges"]["gpt-4o-mini"]
    assert b["prompt_tokens"] == s["prompt_tokens"] > 0 and b["batch_prompt_tokens"] == s["prompt_tokens"]
    assert b["cost_usd"] == pytest.approx(s["cost_usd"] / 2)
    for f in (tmp_path / "batch").rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f  # the key is never written


def test_a_run_stopped_while_its_batch_is_pending_resumes_that_batch(questions, tmp_path, monkeypatch):
    with FakeOpenAI(judge="first") as server:
        judged(questions, tmp_path / "sync/e.jsonl", server, batch=False)
        server.hold_batches = True
        monkeypatch.setattr(batch_api, "MAX_WAIT", 0.3)
        with pytest.raises(LLMError, match="still in_progress.*resume"):
            judged(questions, tmp_path / "batch/e.jsonl", server, batch=True)
        assert len(server.batches) == 1
        server.hold_batches = False
        monkeypatch.setattr(batch_api, "MAX_WAIT", 0.0)
        judged(questions, tmp_path / "batch/e.jsonl", server, batch=True)
        assert len(server.batches) == 1  # resumed by id, not submitted again
    assert (tmp_path / "batch/e.jsonl").read_bytes() == (tmp_path / "sync/e.jsonl").read_bytes()


def test_a_killed_process_resumes_its_batch_by_id(questions, tmp_path):
    out = tmp_path / "batch/e.jsonl"
    with FakeOpenAI(judge="first", hold_batches=True) as server:
        judged(questions, tmp_path / "sync/e.jsonl", server, batch=False)
        cmd = [sys.executable, "-m", "dlm", "evaluate", "--questions-dir", str(questions), "--models", *MODELS,
               "--output", str(out), "--judge-model", "gpt-4o-mini", "--judge-base-url", server.url,
               "--answer-backend", "openai", "--answer-base-url", server.url, "--max-new-tokens", "12",
               "--openai-batch", "--batch-poll-seconds", "0.05"]
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OPENAI_API_KEY": KEY},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while not (server.batches and list((out.parent / ".cache/batches").glob("*.json"))) and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # killed while the batch is pending
        proc.wait()
        assert len(server.batches) == 1
        server.hold_batches = False
        assert main(["evaluate", "--questions-dir", str(questions), "--models", *MODELS, "--output", str(out),
                     "--judge-model", "gpt-4o-mini", "--judge-base-url", server.url, "--answer-backend", "openai",
                     "--answer-base-url", server.url, "--max-new-tokens", "12", "--openai-batch",
                     "--batch-poll-seconds", "0.05"]) == 0
        assert len(server.batches) == 1
    assert out.read_bytes() == (tmp_path / "sync/e.jsonl").read_bytes()


def test_failed_and_malformed_lines_are_asked_again_in_a_smaller_batch(questions, tmp_path):
    # lines 5 and 6 are one question's two orders: identical prompts here (both models answer alike)
    with FakeOpenAI(judge="first", batch_faults={2: "nonjson", 5: "500", 6: "500", 7: "refusal"}) as server:
        judged(questions, tmp_path / "sync/e.jsonl", server, batch=False)
        judged(questions, tmp_path / "batch/e.jsonl", server, batch=True)  # the 500 lines are retried, as sync does
        sizes = [len(server.files[b["input_file_id"]].splitlines()) for b in server.batches.values()]
    assert sizes == [12, 2, 2]  # all; the 500 lines in a follow-up batch; the malformed and refused lines
    assert (tmp_path / "batch/e.jsonl").read_bytes() == (tmp_path / "sync/e.jsonl").read_bytes()


def test_lines_failing_past_the_retry_budget_fail_the_run_and_the_next_run_asks_only_them(questions, tmp_path,
                                                                                         monkeypatch):
    from dlm.llm import backends

    monkeypatch.setattr(backends, "DEFAULT_MAX_RETRIES", 2)
    # lines 5 and 6 (one prompt twice) fail in the first batch, then in each follow-up
    faults = {5: "500", 6: "500", 13: "500", 14: "500", 15: "500", 16: "500"}
    with FakeOpenAI(judge="first", batch_faults=faults) as server:
        judged(questions, tmp_path / "sync/e.jsonl", server, batch=False)
        with pytest.raises(LLMError, match="2 request.*2 server error"):
            judged(questions, tmp_path / "batch/e.jsonl", server, batch=True)
        judged(questions, tmp_path / "batch/e.jsonl", server, batch=True)
        sizes = [len(server.files[b["input_file_id"]].splitlines()) for b in server.batches.values()]
    assert sizes == [12, 2, 2, 2]  # all; two follow-ups; the next run asks only the failed ones
    assert (tmp_path / "batch/e.jsonl").read_bytes() == (tmp_path / "sync/e.jsonl").read_bytes()


@pytest.mark.parametrize("limit", [{"MAX_REQUESTS": 5}, {"MAX_BYTES": 4500}, {"MAX_TOKENS": 3000}])
def test_requests_are_split_into_batches_within_each_limit_and_each_resumes(questions, tmp_path, monkeypatch, limit):
    for name, value in limit.items():
        monkeypatch.setattr(batch_api, name, value)
    with FakeOpenAI(judge="first") as server:
        judged(questions, tmp_path / "sync/e.jsonl", server, batch=False)
        server.hold_batches = True
        monkeypatch.setattr(batch_api, "MAX_WAIT", 0.2)
        with pytest.raises(LLMError, match="still in_progress"):
            judged(questions, tmp_path / "batch/e.jsonl", server, batch=True)
        assert len(server.batches) == 1  # one batch enqueued at a time
        server.hold_batches = False
        monkeypatch.setattr(batch_api, "MAX_WAIT", 0.0)
        judged(questions, tmp_path / "batch/e.jsonl", server, batch=True)
        files = [server.files[b["input_file_id"]] for b in server.batches.values()]
    assert len(files) > 1 and sum(len(f.splitlines()) for f in files) == 12  # the pending one resumed, not resent
    for f in files:
        assert len(f.splitlines()) <= batch_api.MAX_REQUESTS and len(f) <= batch_api.MAX_BYTES
        assert len(batch_api.split_lines([json.loads(x) for x in f.splitlines()])) == 1  # within the token limit
    assert (tmp_path / "batch/e.jsonl").read_bytes() == (tmp_path / "sync/e.jsonl").read_bytes()


def test_one_request_over_the_token_limit_is_a_clear_error():
    line = {"custom_id": "request-0", "body": {"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 10}}
    assert len(batch_api.split_lines([line] * 3)) == 1
    with pytest.raises(DLMError, match="--batch-max-tokens"):
        batch_api.MAX_TOKENS = 50
        try:
            batch_api.split_lines([line])
        finally:
            batch_api.MAX_TOKENS = 2_000_000


def test_question_writing_through_the_batch_api_gives_the_same_questions(tmp_path):
    with FakeOpenAI() as server:  # near-duplicates: top-ups go out as further batches
        for name, batch in (("sync", False), ("batch", True)):
            generate_questions(ROOT / "constitution.txt", tmp_path / name, backend="openai", model="gpt-4o-mini",
                               n_questions=3, end_clause=3, base_url=server.url, openai_batch=batch)
        assert len(server.batches) > 1
    for f in sorted((tmp_path / "sync").glob("clause_*.json")):
        assert json.loads((tmp_path / "batch" / f.name).read_text()) == json.loads(f.read_text())


def test_the_batch_flag_with_a_local_backend_is_a_clear_error(questions, tmp_path):
    with pytest.raises(DLMError, match="--openai-batch needs the openai backend"):
        evaluate(questions, MODELS, tmp_path / "e.jsonl", ["m"], judge_backend="hf", openai_batch=True)
