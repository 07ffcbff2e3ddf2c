"""Shared helpers for the benchmark scripts: the paper-scale sample and peak-RSS measurement."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "artifacts" / "bench" / "paper_sample"


def paper_sample() -> Path:
    """The `paper`-scale generated sample (seed 0), generated once."""
    if not (SAMPLE / "utterances.jsonl").exists():
        from dlm.synth import generate_sample

        generate_sample(SAMPLE, "paper", 0)
    return SAMPLE


def measure(code: str) -> dict:
    """Run `code` in a fresh interpreter; it prints one JSON object. Adds wall seconds and peak RSS (MB)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t0
    result = json.loads(out.stdout.strip().splitlines()[-1])
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB -> MiB
    return {**result, "process_seconds": round(seconds, 2), "peak_rss_mb": round(rss, 1)}
