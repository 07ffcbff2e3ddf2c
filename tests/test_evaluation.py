"""Evaluation: answers, judging in both orders, canonical resumable output, summaries."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from fake_openai import FakeOpenAI

from dlm.judging.judge import parse_verdict

pytestmark = pytest.mark.filterwarnings("ignore")
KEY = "sk-CANARY-judge-key-987654321"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from dlm.judging.questions import generate_questions
    from dlm.training.tiny_model import make_tiny_model

    root = tmp_path_factory.mktemp("eval")
    models = [str(make_tiny_model(root / f"m{i}", seed=i, warmup_steps=20)) for i in range(3)]
    generate_questions(ROOT / "constitution.txt", root / "q", backend="template", n_questions=2, end_clause=4)
    return root, models


def evaluate_cli(root, models, out, server=None, *extra):
    judge = ["--judge-model", "fake-judge", "--judge-base-url", server.url] if server else []
    return run_cli("evaluate", "--questions-dir", root / "q", "--models", *models, "--output", out,
                   "--max-new-tokens", "12", *judge, *extra, env={"OPENAI_API_KEY": KEY})


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.parametrize("text, verdict", [("Reasoning... [[A]]", "A"), ("[[B]] no wait [[C]]", "C"),
                                           ('{"reasoning": "x", "winner": "B"}', "B"), ('{"winner": "tie"}', "C")])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def test_first_position_judge_gives_exactly_half_with_full_inconsistency(setup, tmp_path):
    root, models = setup
    with FakeOpenAI(judge="first") as server:
        out = evaluate_cli(root, models[:2], tmp_path / "e.jsonl", server)
    assert out.returncode == 0, out.stderr
    recs = lines(tmp_path / "e.jsonl")
    assert len(recs) == 8 * 2  # 8 questions, both orders
    assert {r["order"] for r in recs} == {"ab", "ba"}
    assert all(r["winner"] in models[:2] for r in recs)  # a model name, never a position
    assert set(recs[0]) >= {"question_id", "clause_id", "model_a", "model_b", "order", "winner", "judge_model",
                            "judge_raw", "len_a", "len_b"}
    summary = json.loads((tmp_path / "e.summary.json").read_text())
    pair = next(iter(summary["pairs"].values()))
    assert pair["win_rate"] == 0.5 and pair["inconsistency_rate"] == 1.0
    assert pair["uninformative"] and pair["ci_low"] is None and pair["p_value"] is None  # all ties: no finding
    assert (tmp_path / "e.summary.csv").exists()
    assert (tmp_path / "responses").is_dir() and len(list((tmp_path / "responses").glob("*.jsonl"))) == 2
    for p in tmp_path.rglob("*"):
        assert not p.is_file() or KEY.encode() not in p.read_bytes()


def test_single_order_judges_each_question_once(setup, tmp_path):
    root, models = setup
    with FakeOpenAI(judge="first") as server:
        out = evaluate_cli(root, models[:2], tmp_path / "s.jsonl", server, "--single-order")
    assert out.returncode == 0, out.stderr
    recs = lines(tmp_path / "s.jsonl")
    assert len(recs) == 8 and {r["order"] for r in recs} == {"ab", "ba"}  # first-shown varies per question


def test_three_models_every_pair_bradley_terry_and_primary(setup, tmp_path):
    root, models = setup
    with FakeOpenAI(judge="second") as server:
        out = evaluate_cli(root, models, tmp_path / "t.jsonl", server, "--primary", f"{models[2]}:{models[0]}")
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "t.summary.json").read_text())
    assert len(summary["pairs"]) == 3 and set(summary["bradley_terry"]) == set(models)
    flags = [p["primary"] for p in summary["pairs"].values()]
    assert flags.count(True) == 1
    assert summary["pairs"][f"{models[2]} vs {models[0]}"]["primary"]  # oriented as declared
    assert all("p_holm_secondary" in p for p in summary["pairs"].values() if not p["primary"])


def test_hf_judge_gives_a_verdict_for_every_judgment_offline(setup, tmp_path):
    root, models = setup
    out = run_cli("evaluate", "--questions-dir", root / "q", "--model-a", models[0], "--model-b", models[1],
                  "--output", tmp_path / "h.jsonl", "--use-hf-judge", "--judge-model", models[2],
                  "--max-new-tokens", "12", "--questions-per-clause", "1")
    assert out.returncode == 0, out.stderr
    recs = lines(tmp_path / "h.jsonl")
    assert len(recs) == 4 * 2 and all("logprobs" in r["judge_raw"] for r in recs)


def test_killed_run_resumes_to_the_same_file(setup, tmp_path):
    root, models = setup
    # One server for both runs: the judge's endpoint is part of every judgment's fingerprint.
    with FakeOpenAI(judge="first", latency=0.03) as server:
        ref = evaluate_cli(root, models, tmp_path / "ref.jsonl", server)
        assert ref.returncode == 0, ref.stderr
        cmd = [sys.executable, "-m", "dlm", "evaluate", "--questions-dir", str(root / "q"), "--models", *models,
               "--output", str(tmp_path / "run" / "e.jsonl"), "--max-new-tokens", "12", "--judge-model",
               "fake-judge", "--judge-base-url", server.url, "--batch-size", "2"]
        env = {**os.environ, "OPENAI_API_KEY": KEY}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = tmp_path / "run" / "e.jsonl"
        deadline = time.time() + 120
        while (not target.exists() or len(target.read_bytes().splitlines()) < 10) and time.time() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with open(target, "ab") as fh:
            fh.write(b'{"question_id": "01:0", "torn')  # a half-written last line, as a kill can leave
        again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
    assert target.read_bytes() == (tmp_path / "ref.jsonl").read_bytes()


def test_nonexistent_model_is_a_clear_error(setup, tmp_path):
    root, models = setup
    out = run_cli("evaluate", "--questions-dir", root / "q", "--model-a", models[0], "--model-b",
                  str(tmp_path / "missing-model"), "--output", tmp_path / "x.jsonl")
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr


def test_a_model_retrained_at_the_same_path_is_answered_and_judged_again(setup, tmp_path):
    root, models = setup
    target = tmp_path / "arm"
    shutil.copytree(models[0], target)
    args = ("--questions-dir", root / "q", "--model-a", f"arm={target}", "--model-b", models[1], "--use-hf-judge",
            "--judge-model", models[2], "--max-new-tokens", "12", "--questions-per-clause", "1")
    assert run_cli("evaluate", *args, "--output", tmp_path / "e.jsonl").returncode == 0
    before = lines(tmp_path / "e.jsonl")
    shutil.rmtree(target)
    shutil.copytree(models[2], target)  # the arm was retrained: same path, other weights
    assert run_cli("evaluate", *args, "--output", tmp_path / "e.jsonl").returncode == 0
    assert run_cli("evaluate", *args, "--output", tmp_path / "fresh" / "e.jsonl").returncode == 0
    after, fresh = lines(tmp_path / "e.jsonl"), lines(tmp_path / "fresh" / "e.jsonl")
    assert after == fresh and after != before  # nothing from the old weights survives
    slug = next((tmp_path / "fresh" / "responses").glob("*arm.jsonl")).name
    assert lines(tmp_path / "responses" / slug) == lines(tmp_path / "fresh" / "responses" / slug)


def test_replicates_flag_judges_matched_runs_and_pools_them_per_arm(setup, tmp_path):
    root, models = setup
    out = run_cli("evaluate", "--questions-dir", root / "q", "--models", f"base={models[0]}", f"hard={models[1]}",
                  f"hard-r1={models[2]}", f"soft={models[0]}", "--replicates", "--primary", "soft:hard",
                  "--use-hf-judge", "--judge-model", models[2], "--max-new-tokens", "8", "--questions-per-clause", "1",
                  "--output", tmp_path / "r.jsonl")
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "r.summary.json").read_text())
    assert set(summary["pairs"]) == {"base vs hard", "base vs hard-r1", "base vs soft", "soft vs hard", "soft vs hard-r1"}
    arms = summary["arms"]
    assert set(arms) == {"base vs hard", "base vs soft", "soft vs hard"}
    assert arms["soft vs hard"]["primary"] and arms["soft vs hard"]["runs"] == 2
    assert "pooled over 2 replicate runs" in out.stdout
    assert arms["soft vs hard"]["conditional_on"] == ["soft"]  # one soft model: the interval is conditional on it
    # Re-analysis from the records alone gives the run's statistics (its settings block aside).
    again = run_cli("summarize", "--records", tmp_path / "r.jsonl", "--primary", "soft:hard", "--replicates",
                    "--output", tmp_path / "again.json")
    assert again.returncode == 0, again.stderr
    recomputed = json.loads((tmp_path / "again.json").read_text())
    # the run's own settings, its usage ledger and its questions folder's state are bookkeeping the records do not carry
    own = ("settings", "usage", "partial_questions")
    assert {k: v for k, v in recomputed.items() if k not in own} == {k: v for k, v in summary.items() if k not in own}
    bad = run_cli("summarize", "--records", tmp_path / "missing.jsonl", "--output", tmp_path / "x.json")
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
