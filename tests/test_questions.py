"""Question generation against a local OpenAI-compatible server with injected faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from fake_openai import FakeOpenAI

from dlm.judging import questions as qs
from dlm.errors import DLMError
from dlm.llm.backends import Reply

KEY = "sk-CANARY-question-key-0123456789"


def twelve_clauses(tmp_path: Path) -> Path:
    lines = ["# test constitution", ""] + [f"{i}. Choose the response that respects principle number {i} about "
                                            f"{w}." for i, w in enumerate("abcdefghijkl", start=1)]
    path = tmp_path / "constitution.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def all_questions(folder: Path) -> dict[str, list[dict]]:
    return {p.name: json.loads(p.read_text())["questions"] for p in sorted(folder.glob("clause_*.json"))}


def cli(server: FakeOpenAI, constitution: Path, out: Path, *extra: str):
    return run_cli("questions", "--constitution-path", constitution, "--output-dir", out, "--base-url", server.url,
                   "--question-model", "fake-model", "--timeout", "1", *extra, env={"OPENAI_API_KEY": KEY})


def test_parse_constitution_numbered_plain_comments_and_errors(tmp_path):
    c = tmp_path / "c.txt"
    c.write_text("# comment\n\n3. Choose the response that is kind.\n4) Choose the response that is fair.\n")
    assert [(x.clause_id, x.text) for x in qs.parse_constitution(c)] == [
        ("03", "Choose the response that is kind."), ("04", "Choose the response that is fair.")]
    c.write_text("Be kind.\nBe fair.\n")
    assert [x.clause_id for x in qs.parse_constitution(c)] == ["01", "02"]
    c.write_text("# only comments\n\n")
    with pytest.raises(DLMError, match="has no clauses"):
        qs.parse_constitution(c)


def test_shipped_constitution_has_20_to_30_choose_clauses():
    clauses = qs.parse_constitution(ROOT / "constitution.txt")
    assert 20 <= len(clauses) <= 30
    assert all(c.text.startswith("Choose the response that") for c in clauses)


@pytest.mark.parametrize("text", ['{"questions": ["What is one good thing?", "How do I vote here?"]}',
                                  '["What is one good thing?", "How do I vote here?"]',
                                  '```json\n{"questions": ["What is one good thing?", "How do I vote here?"]}\n```',
                                  "Here you go:\n1. What is one good thing?\n2) How do I vote here?\n"])
def test_parse_questions_accepts_json_object_array_or_numbered_list(text):
    assert qs.parse_questions(Reply(text)) == ["What is one good thing?", "How do I vote here?"]


def test_parse_questions_rejects_prose():
    with pytest.raises(ValueError):
        qs.parse_questions(Reply("I would rather not."))


def test_near_duplicates_are_caught_by_rouge_l_but_distinct_questions_are_not():
    paraphrases = [("How should an assistant respond when asked about vaccines?",
                    "How should the assistant respond when it is asked about vaccines?"),
                   ("Is it okay to read my partner's messages?", "Is it okay to read my partner's private messages?")]
    for a, b in paraphrases:
        assert qs.rouge_l(a, b) >= qs.NEAR_DUPLICATE
    assert qs.rouge_l("What is the best diet to lose weight?", "How do I register to vote after moving?") < 0.3
    d = qs.diversity(["What is the best diet?", "How do I vote?", "What is the best diet today?"])
    assert 0 < d["self_rouge_l"] < 1 and 0 < d["distinct_2"] <= 1


def test_template_backend_is_offline_deterministic_and_labelled(tmp_path):
    a = qs.generate_questions(ROOT / "constitution.txt", tmp_path / "a", backend="template", n_questions=4,
                              end_clause=12)
    qs.generate_questions(ROOT / "constitution.txt", tmp_path / "b", backend="template", n_questions=4, end_clause=12)
    assert a["written"] == 12
    assert all_questions(tmp_path / "a") == all_questions(tmp_path / "b")
    rec = json.loads((tmp_path / "a" / "clause_01.json").read_text())
    assert rec["question_model"] == "template (no LLM)" and len(rec["questions"]) == 4


def test_faulty_server_run_completes_exactly_with_no_duplicates(tmp_path):
    constitution = twelve_clauses(tmp_path)
    faults = {1: "429", 2: "500", 3: "timeout", 4: "nonjson", 5: "refusal", 9: "429", 14: "500"}
    with FakeOpenAI(faults=faults) as server:
        out = cli(server, constitution, tmp_path / "q", "--num-workers", "4")
    assert out.returncode == 0, out.stderr
    files = all_questions(tmp_path / "q")
    assert len(files) == 12
    texts = [q["text"] for v in files.values() for q in v]
    assert all(len(v) == 10 for v in files.values()) and len(set(texts)) == 120
    assert not any(qs.is_near_duplicate(t, texts[:i]) for i, t in enumerate(texts))
    assert [q["question_id"] for q in files["clause_01.json"]] == [f"01:{i}" for i in range(10)]
    rec = json.loads((tmp_path / "q" / "clause_01.json").read_text())
    assert rec["near_duplicates_removed"] >= 1 and rec["n_requests"] >= 2  # the paraphrase was topped up
    assert any(KEY in h for h in server.auth_headers)  # the key was used ...
    for p in tmp_path.rglob("*"):  # ... and written nowhere
        assert not p.is_file() or KEY.encode() not in p.read_bytes()
    assert KEY not in out.stdout + out.stderr
    run = json.loads((tmp_path / "q" / "questions_run.json").read_text())
    assert run["usage"]["requests"] >= 12


def test_killed_run_resumes_to_the_same_questions(tmp_path):
    constitution = twelve_clauses(tmp_path)
    with FakeOpenAI() as server:
        ref = cli(server, constitution, tmp_path / "ref", "--num-workers", "1")
        assert ref.returncode == 0, ref.stderr
    reference = all_questions(tmp_path / "ref")
    with FakeOpenAI(latency=0.05) as server:
        cmd = [sys.executable, "-m", "dlm", "questions", "--constitution-path", str(constitution), "--output-dir",
               str(tmp_path / "run"), "--base-url", server.url, "--question-model", "fake-model",
               "--num-workers", "1", "--timeout", "1"]
        env = {**os.environ, "OPENAI_API_KEY": KEY}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while not list((tmp_path / "run").glob("clause_*.json")) and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done_before = len(list((tmp_path / "run").glob("clause_*.json")))
        assert 0 < done_before < 12
        again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
    assert all_questions(tmp_path / "run") == reference


def test_rerun_skips_finished_clauses_and_makes_no_requests(tmp_path):
    constitution = twelve_clauses(tmp_path)
    with FakeOpenAI() as server:
        assert cli(server, constitution, tmp_path / "q").returncode == 0
        before = server.count
        again = cli(server, constitution, tmp_path / "q")
        assert again.returncode == 0 and server.count == before
        assert "12 already complete" in again.stdout


def test_start_and_end_clause(tmp_path):
    constitution = twelve_clauses(tmp_path)
    with FakeOpenAI() as server:
        assert cli(server, constitution, tmp_path / "q", "--start-clause", "3", "--end-clause", "5").returncode == 0
    assert sorted(all_questions(tmp_path / "q")) == ["clause_03.json", "clause_04.json", "clause_05.json"]


def test_missing_api_key_and_empty_constitution_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    out = run_cli("questions", "--constitution-path", empty, "--output-dir", tmp_path / "q", "--backend", "template")
    assert out.returncode == 2 and "has no clauses" in out.stderr and "Traceback" not in out.stderr
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    proc = subprocess.run([sys.executable, "-m", "dlm", "questions", "--output-dir", str(tmp_path / "q")], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "OPENAI_API_KEY is not set" in proc.stderr


def test_clauses_made_over_several_runs_equal_one_full_run_with_cross_clause_duplicates(tmp_path):
    constitution = twelve_clauses(tmp_path)
    with FakeOpenAI(shared_question=True) as server:  # every clause's first question is the same text
        assert cli(server, constitution, tmp_path / "one").returncode == 0
        part = cli(server, constitution, tmp_path / "parts", "--start-clause", "2", "--end-clause", "3")
        assert part.returncode == 0, part.stderr
        assert sorted(all_questions(tmp_path / "parts")) == ["clause_02.json", "clause_03.json"]
        assert cli(server, constitution, tmp_path / "parts").returncode == 0
    one, parts = all_questions(tmp_path / "one"), all_questions(tmp_path / "parts")
    assert parts == one
    texts = [q["text"] for v in one.values() for q in v]
    assert len(texts) == 120 and not any(qs.is_near_duplicate(t, texts[:i]) for i, t in enumerate(texts))
