"""Both lock kinds of dlm.io.locks behave as one writer per output: flock, and lock files with an owner and a
heartbeat for file systems without flock (DLM_LOCK_MODE=file, or auto when flock fails)."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT

from dlm.errors import DLMError
from dlm.io import lock_path, output_lock
from dlm.io import locks

HOLD = """
import sys, time
from dlm.io import output_lock
with output_lock(sys.argv[1], "test output"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_in_another_process(output, seconds: float, env: dict) -> subprocess.Popen:
    """A second process holding `output`'s lock for `seconds` (returns once it holds it)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(output), str(seconds)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("mode", ["flock", "file"])
def test_a_second_writer_stops_naming_the_first_and_the_lock_goes_with_it(tmp_path, monkeypatch, mode):
    monkeypatch.setenv(locks.LOCK_MODE_ENV, mode)
    out = tmp_path / "out.csv"
    proc = hold_in_another_process(out, 30, {**os.environ})
    try:
        with pytest.raises(DLMError, match=rf"test2 .*out.csv is being written by another run \(pid {proc.pid} on "):
            with output_lock(out, "test2"):
                pass
    finally:
        proc.kill()
        proc.wait()
    with output_lock(out):  # flock: released by the kernel; a lock file: its owner is dead, taken over
        pass
    assert not lock_path(out).exists()


def test_a_lock_file_left_by_a_dead_process_on_this_host_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.setenv(locks.LOCK_MODE_ENV, "file")
    out = tmp_path / "out.csv"
    proc = hold_in_another_process(out, 30, {**os.environ})
    proc.kill()  # killed: no chance to remove its lock file
    proc.wait()
    assert lock_path(out).exists()
    with output_lock(out) as path:
        assert f"pid {os.getpid()} on {socket.gethostname()}" in path.read_text()
    assert not lock_path(out).exists()


def test_a_lock_file_from_another_host_is_honoured_while_renewed_and_taken_over_when_not(tmp_path, monkeypatch):
    monkeypatch.setenv(locks.LOCK_MODE_ENV, "file")
    out = tmp_path / "out.csv"
    lock_path(out).write_text("pid 4242 on node17, started 2026-12-07 06:00:00: dlm train\n")
    with pytest.raises(DLMError, match=r"pid 4242 on node17, .*\(lock file, renewed 0 s ago\)"):
        with output_lock(out):
            pass
    old = time.time() - locks.STALE_S - 5  # its host stopped renewing it
    os.utime(lock_path(out), (old, old))
    with output_lock(out):
        pass
    assert not lock_path(out).exists()


def test_the_heartbeat_keeps_a_long_held_lock_file_fresh(tmp_path, monkeypatch):
    monkeypatch.setenv(locks.LOCK_MODE_ENV, "file")
    monkeypatch.setattr(locks, "HEARTBEAT_S", 0.05)
    out = tmp_path / "out.csv"
    with output_lock(out) as path:
        old = time.time() - 3600
        os.utime(path, (old, old))
        time.sleep(0.3)
        assert time.time() - path.stat().st_mtime < 1.0
        with output_lock(out):  # the same thread re-enters its own lock
            pass
        assert path.exists()


def test_auto_falls_back_to_lock_files_where_flock_is_not_available(tmp_path, monkeypatch):
    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    monkeypatch.delenv(locks.LOCK_MODE_ENV, raising=False)
    out = tmp_path / "out.csv"
    with output_lock(out) as path:
        assert path.read_text().startswith(f"pid {os.getpid()} on ")
        with pytest.raises(locks.Busy, match=f"pid {os.getpid()} on "):  # honoured as a lock file
            locks.acquire_file(path)
    monkeypatch.setenv(locks.LOCK_MODE_ENV, "flock")  # asked for flock explicitly: its error is not hidden
    with pytest.raises(OSError, match="No locks available"):
        with output_lock(out):
            pass


def test_an_unknown_lock_mode_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(locks.LOCK_MODE_ENV, "nfs")
    with pytest.raises(DLMError, match="DLM_LOCK_MODE='nfs' is not a lock mode; use one of auto, flock, file"):
        with output_lock(tmp_path / "out.csv"):
            pass
