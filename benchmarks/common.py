"""Shared helpers for the benchmark scripts: the paper-scale sample and peak-RSS measurement."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "artifacts" / "bench" / "paper_sample"


def paper_sample() -> Path:
    """The `paper`-scale generated sample (seed 0), generated once."""
    if not (SAMPLE / "utterances.jsonl").exists():
        from dlm.data.synth import generate_sample

        generate_sample(SAMPLE, "paper", 0)
    return SAMPLE


RSS_LINE = "\nimport json as _j, resource as _r\nprint(_j.dumps({'peak_rss_mb': _r.getrusage(_r.RUSAGE_SELF).ru_maxrss / 1024}))\n"


def measure(code: str) -> dict:
    """Run `code` in a fresh interpreter (it prints one JSON object); add wall seconds and its own peak RSS (MiB)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code + RSS_LINE], cwd=ROOT, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t0
    *_, result, rss = out.stdout.strip().splitlines()
    return {**json.loads(result), "process_seconds": round(seconds, 2),
            "peak_rss_mb": round(json.loads(rss)["peak_rss_mb"], 1)}
