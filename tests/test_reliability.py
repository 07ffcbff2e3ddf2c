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
    from dlm.questions import generate_questions
    from dlm.tiny_model import make_tiny_model

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
