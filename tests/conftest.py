"""Shared fixtures: generated samples, a hand-made PRISM folder with every quirk, CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).parent))


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m dlm ARGS` as a user would; return the completed process."""
    return subprocess.run([sys.executable, "-m", "dlm", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture(scope="session")
def demo_sample(tmp_path_factory) -> Path:
    """The `demo`-scale generated sample (seed 0), shared read-only by tests."""
    from dlm.synth import generate_sample

    out = tmp_path_factory.mktemp("demo_sample")
    generate_sample(out, "demo", 0)
    return out


@pytest.fixture(scope="session")
def paper_sample(tmp_path_factory) -> Path:
    """The `paper`-scale generated sample (seed 0)."""
    from dlm.synth import generate_sample

    out = tmp_path_factory.mktemp("paper_sample")
    generate_sample(out, "paper", 0)
    return out


@pytest.fixture()
def tiny_prism(tmp_path) -> Path:
    """A hand-made PRISM folder with ties, identical A/B texts, EMPTY STRING, multi-turn, shuffled keys."""
    from prism_tiny import write_tiny_prism

    return write_tiny_prism(tmp_path / "prism")
