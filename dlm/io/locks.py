"""Exclusive locks on `<output>.lock`: `fcntl.flock`, or lock files created atomically with an owner and a heartbeat.

`flock` is the default: the kernel releases it when its process dies, so a killed run never leaves a
stale lock. Some network file systems (older NFS, some SMB and FUSE mounts) refuse it or ignore it
across machines; there, `DLM_LOCK_MODE=file` takes lock files instead: created with `O_EXCL` (atomic
on NFSv3 and later), holding their owner's host, pid and command line, and touched every
`HEARTBEAT_S` seconds while held. A lock file whose owner is a dead process on this host, or whose
heartbeat is older than `STALE_S` (its host crashed or lost the mount), is stale and taken over.
`DLM_LOCK_MODE=auto` (the default) uses flock and falls back to lock files where flock fails with
"not supported" or "no locks available".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from dlm.errors import DLMError
from dlm.io.files import _UMASK
from dlm.io.fingerprints import command_line

LOCK_MODE_ENV = "DLM_LOCK_MODE"
LOCK_MODES = ("auto", "flock", "file")
HEARTBEAT_S = 10.0  # a held lock file's modification time is renewed this often
STALE_S = 60.0  # a lock file not renewed for this long belongs to a run that is gone
# flock failures that mean "this file system has no flock", not "somebody holds it"
NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class Busy(Exception):
    """The lock is held by another run; `holder` is what its lock file says about it."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


@dataclass
class Lock:
    """A held lock: its file's descriptor, and for a lock file the heartbeat that keeps it fresh."""

    path: Path
    fd: int
    stop: threading.Event = field(default_factory=threading.Event)
    heartbeat: threading.Thread | None = None

    def release(self) -> None:
        """Remove the lock file (while still holding it, so nobody is left locking a lost file), then let go."""
        self.stop.set()
        if self.heartbeat is not None:
            self.heartbeat.join()
        if same_file(self.fd, self.path):  # a lock file taken over as stale is the new owner's
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self.fd)  # closing the descriptor releases a flock


def lock_mode() -> str:
    """The lock mode `DLM_LOCK_MODE` asks for (auto when unset)."""
    mode = os.environ.get(LOCK_MODE_ENV, "auto").strip().lower() or "auto"
    if mode not in LOCK_MODES:
        raise DLMError(f"{LOCK_MODE_ENV}={mode!r} is not a lock mode; use one of {', '.join(LOCK_MODES)}")
    return mode


def owner_line() -> str:
    """What a lock file says about its holder: pid, host, start time and command line (secrets redacted)."""
    return (f"pid {os.getpid()} on {socket.gethostname()}, started {dt.datetime.now():%Y-%m-%d %H:%M:%S}: "
            f"{command_line()}\n")


def acquire(path: Path) -> Lock:
    """Lock `path` in the configured mode; Busy when another run holds it."""
    mode = lock_mode()
    if mode == "file":
        return acquire_file(path)
    try:
        return acquire_flock(path)
    except OSError as exc:
        if mode == "auto" and exc.errno in NO_FLOCK:
            return acquire_file(path)
        raise


def acquire_flock(path: Path) -> Lock:
    """`fcntl.flock` on `path`; a newcomer that locked a file its holder deleted meanwhile locks the current one."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise Busy(holder or "a process that has not yet named itself") from None
        except OSError:  # no flock here: leave no empty file that a lock-file newcomer would take as held
            if os.fstat(fd).st_size == 0 and same_file(fd, path):
                path.unlink(missing_ok=True)
            os.close(fd)
            raise
        if same_file(fd, path):
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, owner_line().encode(), 0)
    return Lock(path, fd)


def acquire_file(path: Path) -> Lock:
    """A lock file created with O_EXCL, its owner written in it and its heartbeat started; stale ones are taken over."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666 & ~_UMASK)
        except FileExistsError:
            holder, stale = inspect(path)
            if stale is None:
                continue  # removed between the two calls: try again
            if not stale:
                raise Busy(holder) from None
            take_over(path, stale)
            continue
        os.write(fd, owner_line().encode())
        os.fsync(fd)
        lock = Lock(path, fd)
        lock.heartbeat = threading.Thread(target=beat, args=(lock,), daemon=True, name=f"heartbeat {path.name}")
        lock.heartbeat.start()
        return lock


def inspect(path: Path) -> tuple[str, os.stat_result | bool | None]:
    """(holder text, the file's stat when stale / False when alive / None when gone) of an existing lock file."""
    try:
        st = path.stat()
        holder = path.read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        return "", None
    age = time.time() - st.st_mtime
    words = holder.split()
    pid = int(words[1]) if len(words) > 3 and words[0] == "pid" and words[1].isdigit() else None
    host = words[3].rstrip(",") if len(words) > 3 and words[2] == "on" else None
    dead = host == socket.gethostname() and pid is not None and not alive(pid)
    if age > STALE_S or dead or (not holder and age > HEARTBEAT_S):  # empty: its creator died before writing
        return holder, st
    return f"{holder or 'a process that has not yet named itself'} (lock file, renewed {age:.0f} s ago)", False


def take_over(path: Path, stale: os.stat_result) -> None:
    """Remove a stale lock file, unless another newcomer replaced it meanwhile (then it is put back)."""
    aside = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if not os.path.samestat(os.stat(aside), stale):  # a fresh lock taken between our look and the rename
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    aside.unlink()


def beat(lock: Lock) -> None:
    """Renew the lock file's modification time every HEARTBEAT_S seconds until released."""
    while not lock.stop.wait(HEARTBEAT_S):
        with contextlib.suppress(OSError):
            os.utime(lock.fd)  # by descriptor: our own file, even if the path now names another


def alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (a finished holder unlinks its lock file)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False
