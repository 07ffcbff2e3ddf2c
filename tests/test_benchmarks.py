"""Benchmark scripts stay runnable: the GPU benchmarks' dry runs work on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_dpo_benchmark_dry_run_on_cpu(tmp_path):
    out = subprocess.run([sys.executable, "benchmarks/bench_dpo_gpu.py", "--dry-run", "--out", str(tmp_path / "r.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["stock"]["tokens_per_s"] > 0 and result["ours"]["tokens_per_s"] > 0
    assert result["ours"]["params"] == result["stock"]["params"]


def test_gpu_recipes_benchmark_dry_run_trains_through_the_cli(tmp_path):
    """The recipe benchmark runs `dlm train --config configs/train/lora.yaml` end to end (tiny model, CPU)."""
    out = subprocess.run([sys.executable, "benchmarks/bench_recipes_gpu.py", "--dry-run", "--out",
                          str(tmp_path / "r.json")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    (run,) = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert run["returncode"] == 0, run.get("stderr_tail")
    assert run["finetune"] == "lora" and run["adapter_saved"] and run["losses_finite"] and len(run["losses"]) == 2


@pytest.mark.slow
def test_answer_throughput_benchmark_dry_run_gives_identical_answers(tmp_path):
    out = subprocess.run([sys.executable, "benchmarks/bench_answers.py", "--dry-run", "--out", str(tmp_path / "a.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "a.json").read_text())
    assert result["identical_answers"] and result["sorted_questions_per_s"] > 0


@pytest.mark.slow
def test_gpu_smoke_dry_run_times_every_stage_on_cpu(tmp_path):
    out = subprocess.run([sys.executable, "benchmarks/gpu_smoke.py", "--dry-run", "--questions", "4", "--pairs", "8",
                          "--out", str(tmp_path / "s.json")], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "s.json").read_text())
    stages = result["stages"]
    assert result["dry_run"] and result["device"] == "cpu"
    arms = stages["train"]["arms"]
    assert [a["steps"] for a in arms] == [4, 4] and all(a["losses_finite"] for a in arms)
    assert stages["answers"]["questions"] == 4 and stages["judge"]["judgments"] == 8 and stages["heldout"]["pairs"] == 8
    # reported on the CPU; on a GPU a failed check exits 1
    assert set(result["checks"]) == {"losses_finite", "verdicts_not_all_ties", "trained_accuracy_differs_from_base",
                                     "trained_margins_differ_from_base"}
    checks = result["checks"]
    assert checks["losses_finite"] and checks["trained_margins_differ_from_base"]  # four steps move the margins
    assert all(isinstance(v, bool) for v in checks.values())
