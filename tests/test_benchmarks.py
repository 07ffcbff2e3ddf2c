"""Benchmark scripts stay runnable: the GPU DPO benchmark's dry run works on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_dpo_benchmark_dry_run_on_cpu(tmp_path):
    out = subprocess.run([sys.executable, "benchmarks/bench_dpo_gpu.py", "--dry-run", "--out", str(tmp_path / "r.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["stock"]["tokens_per_s"] > 0 and result["ours"]["tokens_per_s"] > 0
    assert result["ours"]["params"] == result["stock"]["params"]
