"""Reliability: a corpus of bad inputs (one clear line, non-zero exit, nothing earlier overwritten),
and SIGKILL at random, seeded moments of prepare, questions and evaluate (rerun = uninterrupted run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli
from fake_openai import FakeOpenAI

EARLIER = "EARLIER OUTPUT\n"


def pairs_file(path: Path, weights) -> Path:
    rows = [{"prompt": [{"role": "user", "content": "Hi?"}], "chosen": [{"role": "assistant", "content": "Hello."}],
             "rejected": [{"role": "assistant", "content": "Go away."}], "weight": w, "split": "train"} for w in weights]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def case_truncated_jsonl(p: Path):
    lines = (p / "prism/utterances.jsonl").read_text().splitlines()
    (p / "prism/utterances.jsonl").write_text("\n".join(lines[:3] + [lines[3][:25]]) + "\n")
    return ["prepare", "--mode", "full", "--survey", p / "prism/survey.jsonl", "--utterances",
            p / "prism/utterances.jsonl", "--output", p / "out.jsonl"], p / "out.jsonl", "line 4 is not valid JSON"


def case_lfs_pointer(p: Path):
    (p / "prism/survey.jsonl").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    return ["prepare", "--mode", "us_rep", "--survey", p / "prism/survey.jsonl", "--utterances",
            p / "prism/utterances.jsonl", "--output", p / "out.jsonl"], p / "out.jsonl", "Git LFS pointer"


def case_missing_column(p: Path):
    rows = [json.loads(x) for x in (p / "prism/utterances.jsonl").read_text().splitlines()]
    del rows[2]["score"]
    (p / "prism/utterances.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ["prepare", "--mode", "full", "--survey", p / "prism/survey.jsonl", "--utterances",
            p / "prism/utterances.jsonl", "--output", p / "out.jsonl"], p / "out.jsonl", "lacks required field 'score'"


def case_unknown_category(p: Path):
    (p / "cfg.yaml").write_text("panel_size: 1\nattributes:\n  - {name: gender, population_proportions: "
                                "{Female: 0.5, Male: 0.5}, slack_categories: [Martian]}\n")
    return ["sortition", "--survey", p / "prism/survey.jsonl", "--panel-config", p / "cfg.yaml", "--output",
            p / "out.csv"], p / "out.csv", "slack category 'Martian'"


def case_infeasible_quotas(p: Path):
    (p / "cfg.yaml").write_text("panel_size: 2\nlocale_filter: us\nattributes:\n  - {name: gender, quotas: "
                                "{Female: [2, 2], Male: [0, 2]}}\n")
    return ["sortition", "--survey", p / "prism/survey.jsonl", "--panel-config", p / "cfg.yaml", "--output",
            p / "out.csv"], p / "out.csv", "meets the quotas"


def case_empty_constitution(p: Path):
    (p / "c.txt").write_text("\n# nothing here\n")
    (p / "q").mkdir()
    return ["questions", "--constitution-path", p / "c.txt", "--output-dir", p / "q", "--backend", "template"], \
        p / "q" / "questions_run.json", "has no clauses"


def case_nan_weight(p: Path):
    return ["train", "--dataset", pairs_file(p / "d.jsonl", [1.0, float("nan")]), "--output-dir", p / "ck",
            "--config", "configs/train/tiny.yaml"], p / "ck" / "training_summary.json", "line 2 has weight nan"


def case_negative_weight(p: Path):
    return ["train", "--dataset", pairs_file(p / "d.jsonl", [-1.0, 1.0]), "--output-dir", p / "ck",
            "--config", "configs/train/tiny.yaml"], p / "ck" / "training_summary.json", "line 1 has weight -1.0"


def case_missing_model(p: Path):
    return ["train", "--dataset", pairs_file(p / "d.jsonl", [1.0]), "--output-dir", p / "ck", "--config",
            "configs/train/tiny.yaml", "--model-id", p / "no-model"], p / "ck" / "training_summary.json", "does not exist"


def case_unwritable_output(p: Path):
    (p / "blocker").write_text("a file where a folder should be")
    return ["prepare", "--mode", "full", "--survey", p / "prism/survey.jsonl", "--utterances",
            p / "prism/utterances.jsonl", "--output", p / "blocker/sub/out.jsonl"], p / "blocker", \
        "cannot create output folder"


CASES = [case_truncated_jsonl, case_lfs_pointer, case_missing_column, case_unknown_category, case_infeasible_quotas,
         case_empty_constitution, case_nan_weight, case_negative_weight, case_missing_model, case_unwritable_output]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__[5:])
def test_bad_input_is_one_clear_line_and_keeps_earlier_output(case, tiny_prism, tmp_path):
    args, earlier, message = case(tmp_path)
    if not earlier.exists():
        earlier.parent.mkdir(parents=True, exist_ok=True)
        earlier.write_text(EARLIER)
    before = earlier.read_bytes()
    out = run_cli(*args)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr
    assert earlier.read_bytes() == before


# ----------------------------------------------------------------------------- SIGKILL trials


def kill_and_resume(cmd: list[str], moment: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """Start `cmd`, SIGKILL it after `moment` seconds, then run it again to completion."""
    env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(moment)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)


TRIALS = 5


@pytest.mark.slow
def test_prepare_killed_at_random_moments_reruns_to_identical_output(demo_sample, tmp_path):
    base = [sys.executable, "-m", "dlm", "prepare", "--mode", "soft", "--survey", str(demo_sample / "survey.jsonl"),
            "--utterances", str(demo_sample / "utterances.jsonl"), "--panel-config", "configs/panels/small.yaml",
            "--num-panel-samples", "300", "--eval-ratio", "0.1"]
    ref = subprocess.run(base + ["--output", str(tmp_path / "ref.jsonl")], cwd=ROOT, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    rng = np.random.default_rng(42)
    for trial in range(TRIALS):
        out = tmp_path / f"t{trial}.jsonl"
        again = kill_and_resume(base + ["--output", str(out)], float(rng.uniform(0.3, 3.0)))
        assert again.returncode == 0, again.stderr
        assert out.read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
        assert not list(tmp_path.glob(f".t{trial}.jsonl.*"))


@pytest.mark.slow
def test_questions_killed_at_random_moments_rerun_to_identical_files(tmp_path):
    rng = np.random.default_rng(7)
    key = {"OPENAI_API_KEY": "sk-test"}
    with FakeOpenAI(latency=0.05) as server:
        def cmd(out):
            return [sys.executable, "-m", "dlm", "questions", "--output-dir", str(out), "--base-url", server.url,
                    "--question-model", "fake", "--num-workers", "2", "--end-clause", "12", "--timeout", "2"]
        ref = subprocess.run(cmd(tmp_path / "ref"), cwd=ROOT, env={**os.environ, **key}, capture_output=True, text=True)
        assert ref.returncode == 0, ref.stderr
        expected = {p.name: p.read_bytes() for p in (tmp_path / "ref").glob("clause_*.json")}
        for trial in range(TRIALS):
            out = tmp_path / f"t{trial}"
            again = kill_and_resume(cmd(out), float(rng.uniform(0.5, 3.0)), key)
            assert again.returncode == 0, again.stderr
            assert {p.name: p.read_bytes() for p in out.glob("clause_*.json")} == expected


@pytest.mark.slow
def test_evaluate_killed_at_random_moments_reruns_to_identical_file(tmp_path):
    from dlm.judging.questions import generate_questions
    from dlm.training.tiny_model import make_tiny_model

    models = [str(make_tiny_model(tmp_path / f"m{i}", seed=i, warmup_steps=10)) for i in range(2)]
    generate_questions(ROOT / "constitution.txt", tmp_path / "q", backend="template", n_questions=3, end_clause=6)
    rng = np.random.default_rng(11)
    key = {"OPENAI_API_KEY": "sk-test"}
    with FakeOpenAI(latency=0.02) as server:
        def cmd(out):
            return [sys.executable, "-m", "dlm", "evaluate", "--questions-dir", str(tmp_path / "q"), "--models",
                    *models, "--output", str(out / "e.jsonl"), "--max-new-tokens", "8", "--judge-model", "fake",
                    "--judge-base-url", server.url, "--batch-size", "2"]
        ref = subprocess.run(cmd(tmp_path / "ref"), cwd=ROOT, env={**os.environ, **key}, capture_output=True, text=True)
        assert ref.returncode == 0, ref.stderr
        for trial in range(TRIALS):
            out = tmp_path / f"t{trial}"
            again = kill_and_resume(cmd(out), float(rng.uniform(2.0, 9.0)), key)
            assert again.returncode == 0, again.stderr
            assert (out / "e.jsonl").read_bytes() == (tmp_path / "ref" / "e.jsonl").read_bytes()
            assert (out / "e.summary.csv").read_bytes() == (tmp_path / "ref" / "e.summary.csv").read_bytes()


# ----------------------------------------------------------------------------- one writer, whole sets, usage


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not predicate() and time.time() < deadline:
        time.sleep(0.02)
    assert predicate(), "timed out"


@pytest.mark.slow
def test_two_concurrent_questions_runs_on_one_folder_the_second_stops_naming_the_first(tmp_path):
    from dlm.io import lock_path

    key = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    with FakeOpenAI() as server:
        server.gate.clear()  # the first run stays in flight until the second has been answered
        def cmd(model, n):
            return [sys.executable, "-m", "dlm", "questions", "--output-dir", str(tmp_path / "q"), "--base-url",
                    server.url, "--question-model", model, "--n-questions", n, "--end-clause", "3"]
        first = subprocess.Popen(cmd("m1", "3"), cwd=ROOT, env=key, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        wait_for(lambda: lock_path(tmp_path / "q").exists() and lock_path(tmp_path / "q").read_text())
        second = subprocess.run(cmd("m2", "1"), cwd=ROOT, env=key, capture_output=True, text=True)
        server.gate.set()
        assert first.wait(timeout=120) == 0, first.stderr.read()
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"is being written by another run (pid {first.pid}" in lines[0] and "m1" in lines[0]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "q").glob("clause_*.json"))]
    assert [r["question_model"] for r in records] == ["m1"] * 3 and all(len(r["questions"]) == 3 for r in records)


@pytest.mark.slow
def test_two_concurrent_evaluate_runs_on_one_output_the_second_stops(tmp_path, monkeypatch):
    import threading

    from dlm.errors import DLMError
    from dlm.judging.evaluation import evaluate
    from dlm.io import lock_path
    from dlm.judging.questions import generate_questions

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    generate_questions(ROOT / "constitution.txt", tmp_path / "q", backend="template", n_questions=2, end_clause=2)
    out = tmp_path / "e.jsonl"
    with FakeOpenAI() as server:
        server.gate.clear()  # the first evaluation stays in flight until the second has stopped
        def run(judge):
            return evaluate(tmp_path / "q", ["m1", "m2"], out, [judge], judge_base_url=server.url,
                            answer_backend="openai", answer_base_url=server.url, batch_size=2)
        results: dict[str, object] = {}
        first = threading.Thread(target=lambda: results.update(j1=run("j1")))
        first.start()
        wait_for(lambda: lock_path(out).exists() and lock_path(out).read_text())
        with pytest.raises(DLMError, match="is being written by another run"):
            run("j2")
        server.gate.set()
        first.join()
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(records) == 4 * 2 and {r["judge_model"] for r in records} == {"j1"}


@pytest.mark.parametrize("fail_at", ["before_journal", "between_renames"])
def test_a_crash_while_committing_a_dataset_leaves_the_old_set_or_the_new_one(fail_at, tiny_prism, tmp_path,
                                                                               monkeypatch):
    from dlm import io
    from dlm.preferences.build import PrepareOptions, prepare
    from dlm.training.train_dpo import load_preference_rows

    out = tmp_path / "soft.jsonl"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("panel_size: 1\nattributes:\n  - {name: gender, population_proportions: {Female: 0.5, Male: 0.5}}\n")

    def run(seed):
        return prepare(tiny_prism / "survey.jsonl", tiny_prism / "utterances.jsonl", out,
                       PrepareOptions(mode="soft", panel_config=str(cfg), panel_seed=seed, num_panel_samples=50))

    def snapshot():
        return {p.name: p.read_bytes() for p in tmp_path.glob("soft.jsonl*") if not p.name.endswith(".lock")}

    run(0)
    old = snapshot()
    real_replace = os.replace
    calls = []

    def crashing_replace(src, dst):
        calls.append(dst)
        if fail_at == "between_renames" and str(dst).endswith("probabilities.csv") or \
                fail_at == "before_journal" and ".commit" in str(dst):
            raise SystemExit("killed")  # what a SIGKILL at this instant leaves behind
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crashing_replace)
    with pytest.raises(SystemExit):
        run(1)
    monkeypatch.setattr(os, "replace", real_replace)
    load_preference_rows(out)  # the next reader completes or ignores the interrupted commit, then verifies
    after = snapshot()
    run(1)
    new = snapshot()
    assert old != new and after in (old, new)
    assert after == (old if fail_at == "before_journal" else new)
    run(1)  # the next writer removes what the crash left behind
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".soft.jsonl")]


def test_a_crash_between_the_renames_of_a_selection_leaves_the_new_set_and_readers_check_it(tiny_prism, tmp_path,
                                                                                          monkeypatch):
    from dlm import cli, io
    from dlm.errors import DLMError
    from dlm.sortition import read_selection

    (tmp_path / "cfg.yaml").write_text("panel_size: 1\nattributes:\n  - {name: gender, population_proportions: "
                                       "{Female: 0.5, Male: 0.5}}\n")
    probs, panel = tmp_path / "probs.csv", tmp_path / "panel.csv"

    def run(seed):
        return cli.main(["sortition", "--survey", str(tiny_prism / "survey.jsonl"), "--panel-config",
                         str(tmp_path / "cfg.yaml"), "--output", str(probs), "--panel-output", str(panel),
                         "--num-panel-samples", "20", "--panel-seed", str(seed)])

    assert run(0) == 0
    real_replace = os.replace

    def crash_before_manifest(src, dst):
        if str(dst).endswith("probs.csv.manifest.json"):
            raise SystemExit("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_before_manifest)
    with pytest.raises(SystemExit):
        run(1)
    monkeypatch.setattr(os, "replace", real_replace)
    read_selection(probs)  # completes the interrupted commit, then checks every file of the set
    crashed = {p.name: p.read_bytes() for p in (probs, panel, Path(f"{probs}.manifest.json"))}
    assert run(1) == 0
    assert crashed == {p.name: p.read_bytes() for p in (probs, panel, Path(f"{probs}.manifest.json"))}
    panel.write_text(panel.read_text() + '"someone else"\n')
    with pytest.raises(DLMError, match="panel.csv does not match its SHA-256 in probs.csv.manifest.json"):
        read_selection(probs)


def question_cmd(server: FakeOpenAI, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dlm", "questions", "--output-dir", str(out), "--base-url", server.url,
            "--question-model", "gpt-4o-mini", "--num-workers", "1", "--end-clause", "8", *extra]


@pytest.mark.slow
def test_usage_after_kill_and_resume_equals_the_uninterrupted_runs(tmp_path):
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    counted = ("requests", "prompt_tokens", "completion_tokens", "failures", "cost_usd")
    with FakeOpenAI(latency=0.05) as server:
        ref = subprocess.run(question_cmd(server, tmp_path / "ref"), cwd=ROOT, env=env, capture_output=True, text=True)
        assert ref.returncode == 0, ref.stderr
        proc = subprocess.Popen(question_cmd(server, tmp_path / "run"), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        wait_for(lambda: len(list((tmp_path / "run").glob("clause_*.json"))) >= 2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        again = subprocess.run(question_cmd(server, tmp_path / "run"), cwd=ROOT, env=env, capture_output=True,
                               text=True)
        assert again.returncode == 0, again.stderr
    expected = json.loads((tmp_path / "ref" / "questions_run.json").read_text())["usage"]
    got = json.loads((tmp_path / "run" / "questions_run.json").read_text())
    assert {k: got["usage"][k] for k in counted} == {k: expected[k] for k in counted}
    assert expected["requests"] > 8 and expected["cost_usd"] > 0
    assert [r["status"] for r in got["runs"]] == ["running", "ok"]  # the killed run is on record too


def test_malformed_and_refused_replies_end_byte_identical_to_a_fault_free_run(tmp_path, monkeypatch):
    from dlm.judging.evaluation import evaluate
    from dlm.judging.questions import generate_questions

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    outputs = {}
    # Faults on question and judge requests (a malformed answer is still an answer: only refusals there).
    phases = {"clean": ({}, {}), "faulty": ({2: "nonjson", 3: "refusal", 5: "nonjson"},
                                            {1: "refusal", 5: "429", 9: "500", 26: "nonjson", 30: "refusal"})}
    with FakeOpenAI() as server:
        for name, (q_faults, e_faults) in phases.items():
            server.faults = {server.count + k: v for k, v in q_faults.items()}
            generate_questions(ROOT / "constitution.txt", tmp_path / name / "q", model="gpt-4o-mini",
                               n_questions=3, end_clause=3, temperature=0.7, base_url=server.url, num_workers=2)
            server.faults = {server.count + k: v for k, v in e_faults.items()}
            evaluate(tmp_path / name / "q", ["m1", "m2"], tmp_path / name / "e.jsonl", ["fake-judge"],
                     judge_base_url=server.url, answer_backend="openai", answer_base_url=server.url, batch_size=4)
            outputs[name] = {p.relative_to(tmp_path / name).as_posix(): p.read_bytes()
                             for p in sorted((tmp_path / name).rglob("*")) if p.is_file() and ".cache" not in p.parts
                             and p.suffix in (".json", ".jsonl", ".csv") and not p.name.startswith(".")
                             and p.name not in ("questions_run.json", "e.summary.json")}
    assert outputs["clean"] == outputs["faulty"] and len(outputs["clean"]) == 7
    faulty = json.loads((tmp_path / "faulty" / "q" / "questions_run.json").read_text())["usage"]
    clean = json.loads((tmp_path / "clean" / "q" / "questions_run.json").read_text())["usage"]
    assert faulty["requests"] > clean["requests"]  # billed: the bad replies are counted
    assert faulty["errors"].get("malformed reply", 0) + faulty["errors"].get("refusal", 0) >= 1


def test_a_401_costs_one_request_and_stops_with_the_servers_message(tmp_path, monkeypatch):
    from dlm.errors import DLMError
    from dlm.judging.questions import generate_questions

    monkeypatch.setenv("OPENAI_API_KEY", "bad")
    with FakeOpenAI(faults={n: "401" for n in range(1, 200)}) as server:
        with pytest.raises(DLMError) as exc:
            generate_questions(ROOT / "constitution.txt", tmp_path / "q", model="gpt-4o-mini", n_questions=2,
                               end_clause=8, base_url=server.url, num_workers=8)
        assert server.count == 1
    assert "authentication, HTTP 401: injected 401: Incorrect API key provided" in str(exc.value)
    assert "\n" not in str(exc.value)
    run = json.loads((tmp_path / "q" / "questions_run.json").read_text())
    assert run["runs"][-1]["status"].startswith("failed") and run["usage"]["requests"] == 1


def test_a_server_that_always_fails_costs_the_retry_budget_and_names_the_cause(tmp_path, monkeypatch):
    from dlm.llm import backends as llm
    from dlm.errors import DLMError
    from dlm.judging.questions import generate_questions

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setattr(llm, "DEFAULT_MAX_RETRIES", 2)  # what --max-retries 2 sets
    with FakeOpenAI(faults={n: "500" for n in range(1, 200)}) as server:
        with pytest.raises(DLMError, match=r"8 request\(s\) failed \(1 server error, 7 not sent\)"):
            generate_questions(ROOT / "constitution.txt", tmp_path / "q", model="gpt-4o-mini", n_questions=2,
                               end_clause=8, base_url=server.url, num_workers=8)
        assert server.count == 3


def test_credentials_in_urls_are_not_stored_and_the_cache_is_per_endpoint(tmp_path, monkeypatch):
    from dlm.errors import DLMError
    from dlm.judging.questions import generate_questions

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeOpenAI() as server:
        url = server.url.replace("http://", "http://alice:s3cret-pw@")
        generate_questions(ROOT / "constitution.txt", tmp_path / "q", model="gpt-4o-mini", n_questions=2,
                           end_clause=2, base_url=url, cache_dir=tmp_path / "cache")
    for p in tmp_path.rglob("*"):
        assert not p.is_file() or b"s3cret-pw" not in p.read_bytes()
    assert "http://***@127.0.0.1" in (tmp_path / "q" / "questions_run.json").read_text()
    # The same request against another (dead) endpoint is not answered from the first one's cache.
    from dlm.llm import backends as llm

    monkeypatch.setattr(llm, "DEFAULT_MAX_RETRIES", 0)
    with pytest.raises(DLMError, match="connection"):
        generate_questions(ROOT / "constitution.txt", tmp_path / "q2", model="gpt-4o-mini", n_questions=2,
                           end_clause=2, base_url="http://127.0.0.1:9/v1", cache_dir=tmp_path / "cache")
