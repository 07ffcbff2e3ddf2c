"""Packaging promises: pinned requirements mirrored in environment.yml, CI runs the README's test command."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[name.lower()] = version
    return out


def test_requirements_are_pinned():
    for name in ("requirements.txt", "requirements-dev.txt"):
        assert all(v for v in pins(ROOT / name).values()), name


def test_environment_yml_mirrors_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    from_env = {}
    for spec in pip_section:
        if spec.startswith("-"):
            continue
        name, _, version = spec.partition("==")
        from_env[name.lower()] = version
    wanted = pins(ROOT / "requirements.txt") | pins(ROOT / "requirements-dev.txt")
    assert from_env == wanted
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python == "python=3.11"


def test_pyproject_reads_the_same_requirements():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dyn = meta["tool"]["setuptools"]["dynamic"]
    assert dyn["dependencies"]["file"] == ["requirements.txt"]
    assert meta["project"]["requires-python"] == ">=3.11"
    assert meta["project"]["scripts"]["dlm"] == "dlm.cli:main"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"```(?:bash|sh)?\n(?:.*\n)*?(make test)\n", readme)
    assert command, "README quickstart must show `make test`"
    assert "make test" in (ROOT / ".ci/run").read_text()


def test_setuptools_ships_the_subpackages():
    from setuptools import find_packages

    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert {"dlm", "dlm.sortition"} <= set(find_packages(str(ROOT), include=find["include"]))


def test_make_lab_starts_jupyterlab_also_as_root(tmp_path):
    """`make lab` starts a server (as root too, where Jupyter needs --allow-root); stopped once it listens."""
    if shutil.which("make") is None or not (ROOT / ".venv" / "bin" / "jupyter").exists():
        pytest.skip("make lab needs make and the project's .venv (make install)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = f"--no-browser --port={port} --ServerApp.ip=127.0.0.1 --ServerApp.token='' --ServerApp.open_browser=False"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg")}
    proc = subprocess.Popen(["make", "-s", "-o", ".venv/.installed", "lab", f"LAB_ARGS={args}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline, seen = time.monotonic() + 90, ""
        while time.monotonic() < deadline and proc.poll() is None:
            seen += proc.stdout.readline()
            if f":{port}/" in seen and "running" in seen.lower():
                break
        assert proc.poll() is None, seen[-2000:]
        assert f":{port}/" in seen, seen[-2000:]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
