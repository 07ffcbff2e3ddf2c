"""One writer per output (a lock held for the whole write, `dlm.io.locks`) and sets of files committed as a unit."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from dlm.errors import DLMError
from dlm.io.files import _UMASK, ensure_writable_dir, fsync_dir, fsync_file, json_default, write_text_atomic
from dlm.io.fingerprints import sha256_file
from dlm.io.locks import Busy, acquire

# (lock file, thread) of every lock held: a thread may re-enter its own lock; another thread, like another
# process, takes its own, and finds it held (here: fails at once).
_HELD: set[tuple[Path, int]] = set()


def lock_path(output: str | Path) -> Path:
    """The lock file of an output file or folder: `<output>.lock` beside it (empty while nobody holds it)."""
    output = Path(output).absolute()
    return output.parent / f"{output.name}.lock"


@contextlib.contextmanager
def output_lock(output: str | Path, what: str = "output") -> Iterator[Path]:
    """Hold an exclusive lock on `output` for the block; a second holder fails at once, naming the first.

    The lock is on `<output>.lock` beside the output (`dlm.io.locks`): `fcntl.flock` by default, lock
    files with an owner and a heartbeat where flock is missing or `DLM_LOCK_MODE=file` asks for them
    (network file systems). A killed run never leaves a lock that stops the next one; a finished holder
    deletes the file. On acquiring, temporary files left beside the output by a killed write are
    removed and an interrupted output-set commit is completed.
    """
    output = Path(output).absolute()
    path = lock_path(output)
    key = (path, threading.get_ident())
    if key in _HELD:  # re-entered: the outer block holds the lock and releases it
        yield path
        return
    ensure_writable_dir(path.parent)
    try:
        lock = acquire(path)
    except Busy as exc:
        raise DLMError(f"{what} {output} is being written by another run ({exc.holder}); wait for it to finish, "
                       "or write to another path") from None
    try:
        _HELD.add(key)
        recover_output_set(output)
        remove_stale_temps(output)
        yield path
    finally:
        _HELD.discard(key)
        lock.release()


def holds_lock(output: str | Path) -> bool:
    """Whether this thread holds the lock of `output`."""
    return (lock_path(output), threading.get_ident()) in _HELD


def remove_stale_temps(output: str | Path) -> list[Path]:
    """Delete temporary files of `output` (and, for a folder, those directly inside it) left by a killed write."""
    output = Path(output).absolute()
    name = glob_escape(output.name)
    # `..name.*.tmp`: a temp file written inside a temp file's own atomic write (prepare's rows)
    stale = list(output.parent.glob(f".{name}.*.tmp")) + list(output.parent.glob(f"..{name}.*.tmp"))
    if output.is_dir():
        stale += list(output.glob(".*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def glob_escape(name: str) -> str:
    """`name` with glob metacharacters escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


# ----------------------------------------------------------------------------- output sets


def set_manifest_path(output: str | Path) -> Path:
    """The manifest of the output set whose main file is `output`: `<output>.manifest.json`."""
    return Path(f"{output}.manifest.json")


def _journal_path(output: Path) -> Path:
    return output.parent / f".{output.name}.commit"


def commit_output_set(output: str | Path, writers: dict[str | Path, Callable[[Path], None]], record: dict) -> dict:
    """Write several files and their manifest so that readers see the old set or the new one, never a mix.

    Each writer fills a temporary file (fsynced); `record` gets `files` (name -> SHA-256 of every
    sibling) and becomes `<output>.manifest.json`. A journal listing the renames is written
    before the first rename: a run killed between renames is completed ("rolled forward") by the
    next writer or reader, and `verify_output_set` refuses any set whose files do not match.
    Call it while holding `output_lock(output)`.
    """
    output = Path(output).absolute()
    manifest_path = set_manifest_path(output)
    temps: list[tuple[Path, Path]] = []
    try:
        hashes = {}
        for target, write in writers.items():
            target = Path(target).absolute()
            tmp = _new_temp(target)
            temps.append((tmp, target))
            write(tmp)
            fsync_file(tmp)
            hashes[os.path.relpath(target, output.parent)] = sha256_file(tmp)
        tmp = _new_temp(manifest_path)
        temps.append((tmp, manifest_path))
        text = json.dumps({**record, "files": hashes}, sort_keys=True, ensure_ascii=False, indent=2,
                          default=json_default)
        tmp.write_text(text + "\n", encoding="utf-8", newline="\n")
        fsync_file(tmp)
        write_text_atomic(_journal_path(output), json.dumps([[str(t), str(f)] for t, f in temps]))
        _apply_renames(temps)
        _journal_path(output).unlink()
        fsync_dir(output.parent)
    finally:
        if not _journal_path(output).exists():
            for t, _ in temps:
                t.unlink(missing_ok=True)
    return hashes


def _new_temp(target: Path) -> Path:
    ensure_writable_dir(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)
    return Path(tmp)


def _apply_renames(pairs: list[tuple[Path, Path]]) -> None:
    for tmp, final in pairs:
        if tmp.exists():  # done already by an earlier, interrupted attempt
            os.replace(tmp, final)
    for folder in {final.parent for _, final in pairs}:
        fsync_dir(folder)


def recover_output_set(output: str | Path) -> bool:
    """Finish a commit that was interrupted between its renames (the journal lists them); True if one was."""
    output = Path(output).absolute()
    journal = _journal_path(output)
    if not journal.exists():
        return False
    try:
        pairs = [(Path(t), Path(f)) for t, f in json.loads(journal.read_text(encoding="utf-8"))]
    except (OSError, ValueError):
        journal.unlink(missing_ok=True)  # torn journal: written before any rename, so the old set is intact
        return False
    _apply_renames(pairs)
    journal.unlink(missing_ok=True)
    fsync_dir(output.parent)
    return True


def verify_output_set(output: str | Path, missing_ok: bool = False) -> dict | None:
    """The manifest of `output`'s set after checking every listed file's SHA-256; DLMError if any differs.

    An interrupted commit is completed first (taking the output's lock, so never while a writer
    is at work). Returns None when `output` has no set manifest and `missing_ok`.
    """
    output = Path(output).absolute()
    manifest_path = set_manifest_path(output)
    if _journal_path(output).exists():
        with output_lock(output, "output set"):
            pass  # acquiring the lock completes the commit
    if not manifest_path.exists():
        if missing_ok:
            return None
        raise DLMError(f"{manifest_path} not found: {output} has no manifest; rerun the command that wrote it")
    try:
        record = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError:
        raise DLMError(f"{manifest_path} is not valid JSON; rerun the command that wrote {output}") from None
    for name, digest in (record.get("files") or {}).items():
        path = output.parent / name
        if not path.exists() or sha256_file(path) != digest:
            state = "is missing" if not path.exists() else "does not match its SHA-256"
            raise DLMError(f"{path} {state} in {manifest_path.name}: the set was changed or half-written; "
                           "rerun the command that wrote it")
    return record


# ----------------------------------------------------------------------------- YAML and CSV
