"""Shared fixtures: a temporary artifacts root, generated samples, a PRISM folder with every quirk, CLI runner."""

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
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) >= (os.cpu_count() or 1):
    # Workers fill the cores: one math thread each (torch would take one per core in every worker, and
    # notebook kernels inherit it). make test on 2 cores: 9 min 59 s with torch's default, 8 min 0 s so.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).parent))


SCREENSHOTS = "ci-screenshots"  # under the user's artifacts root: the one folder a test may write there


def _listing(folder: Path) -> list[tuple[str, int, int]]:
    """(path, size, mtime in ns) of everything under `folder`: any write, touch or removal changes it."""
    if not folder.exists():
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        if Path(dirpath) == folder and SCREENSHOTS in dirnames:
            dirnames.remove(SCREENSHOTS)  # the browser test's screenshots (CI artifacts) are meant to land there
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            st = path.lstat()
            out.append((str(path.relative_to(folder)), st.st_size if not path.is_dir() else 0, st.st_mtime_ns))
    return sorted(out)


@pytest.fixture(scope="session", autouse=True)
def artifacts_root(tmp_path_factory) -> Path:
    """Every test writes under a temporary artifacts root (DLM_ARTIFACTS), never the user's `artifacts/`.

    The user's artifacts (the checkout's `artifacts/` and any DLM_ARTIFACTS they set) are listed before
    the suite and compared after it: a test that writes there fails the run. Under xdist each worker
    checks its own share of the suite.
    """
    from dlm import paths

    watched = {paths.project_root() / paths.ARTIFACTS, paths.artifacts_root()}
    before = {folder: _listing(folder) for folder in watched}
    root = tmp_path_factory.mktemp("artifacts")
    saved = os.environ.get(paths.ARTIFACTS_ENV)
    os.environ[paths.ARTIFACTS_ENV] = str(root)
    yield root
    if saved is None:
        os.environ.pop(paths.ARTIFACTS_ENV, None)
    else:
        os.environ[paths.ARTIFACTS_ENV] = saved
    for folder, listing in before.items():
        after = _listing(folder)
        changed = sorted(set(listing) ^ set(after))
        assert after == listing, f"the test suite changed the user's artifacts in {folder}: {changed[:10]}"


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m dlm ARGS` as a user would; return the completed process."""
    return subprocess.run([sys.executable, "-m", "dlm", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture(scope="session")
def demo_sample(tmp_path_factory) -> Path:
    """The `demo`-scale generated sample (seed 0), shared read-only by tests."""
    from dlm.data.synth import generate_sample

    out = tmp_path_factory.mktemp("demo_sample")
    generate_sample(out, "demo", 0)
    return out


@pytest.fixture(scope="session")
def paper_sample(tmp_path_factory) -> Path:
    """The `paper`-scale generated sample (seed 0)."""
    from dlm.data.synth import generate_sample

    out = tmp_path_factory.mktemp("paper_sample")
    generate_sample(out, "paper", 0)
    return out


@pytest.fixture()
def tiny_prism(tmp_path) -> Path:
    """A hand-made PRISM folder with ties, identical A/B texts, EMPTY STRING, multi-turn, shuffled keys."""
    from prism_tiny import write_tiny_prism

    return write_tiny_prism(tmp_path / "prism")

