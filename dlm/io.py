"""Small file helpers shared by every stage: atomic writes, hashes, manifests, JSONL.

Integrity pieces: `output_lock` (one writer per output file, an advisory `fcntl.flock`),
`commit_output_set` / `verify_output_set` (several files made visible as a unit, checked by every
reader), `load_yaml` (plain data only), `write_csv_atomic` / `read_csv_checked` (quoted, formula-safe
CSV that round-trips any id), and `parse_json_line` (one clear line for every malformed JSON line).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import fcntl
import hashlib
import json
import os
import platform
import re
import shlex
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from dlm import __version__
from dlm.errors import DLMError

# Packages whose versions go into every manifest: the ones that change numbers.
TRACKED_PACKAGES = ("numpy", "pandas", "scipy", "torch", "transformers", "trl", "peft", "datasets", "openai")


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    ensure_writable_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        fsync_file(tmp_path)  # the bytes reach the disk before the name does: no empty file after a crash
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def fsync_file(path: str | Path) -> None:
    """Flush a file's contents (or a folder's entries) to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (renames) to stable storage; a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError):
        fsync_file(folder)


def ensure_writable_dir(folder: str | Path) -> Path:
    """Create `folder` if needed and fail with a clear message when it cannot be written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DLMError(f"cannot create output folder {folder}: {exc.strerror}; choose a writable path") from None
    if not os.access(folder, os.W_OK):
        raise DLMError(f"output folder {folder} is not writable; choose a writable path")
    return folder


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically (UTF-8, no platform newline translation)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")


def dumps_canonical(obj: Any) -> str:
    """JSON with sorted keys: the same object always gives the same bytes."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=_json_default)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write pretty, key-sorted JSON atomically."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, indent=2, default=_json_default)
    write_text_atomic(path, text + "\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict]) -> int:
    """Write rows as JSON Lines atomically; return the number written."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> list[dict]:
    """Read JSON Lines (verified against its output-set manifest, if any); a bad line is a DLMError naming it."""
    path = Path(path)
    verify_output_set(path, missing_ok=True)
    rows: list[dict] = []
    with open(path, "rb") as fh:
        lines = fh.readlines()
    offset = 0
    for i, raw in enumerate(lines, start=1):
        if raw.strip():
            # NaN stays readable here: each stage's own check names the field (e.g. a NaN weight).
            rows.append(parse_json_line(raw, path, i, offset, allow_nan=True))
        offset += len(raw)
    return rows


MAX_INT = 2**63 - 1  # integers beyond int64 overflow pandas and numpy columns


def parse_json_line(raw: bytes, path: str | Path, line: int, offset: int = 0, allow_nan: bool = False) -> Any:
    """One JSON value from a line of bytes; every way it can be malformed is one DLMError naming file and line.

    Rejects non-UTF-8 bytes (with the byte offset in the file), invalid JSON, NaN/Infinity (unless
    `allow_nan`), integers outside int64, floats that overflow, and nesting too deep to parse.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DLMError(f"{path}: line {line} has a byte that is not UTF-8 (0x{raw[exc.start]:02x} at byte offset "
                       f"{offset + exc.start} of the file); re-save the file as UTF-8") from None
    try:
        value = json.loads(text, parse_constant=float if allow_nan else _reject_constant, parse_int=_checked_int,
                           parse_float=_checked_float)
    except json.JSONDecodeError as exc:
        raise DLMError(f"{path}: line {line} is not valid JSON ({exc.msg}); fix or remove that line") from None
    except RecursionError:
        raise DLMError(f"{path}: line {line} is nested too deeply to be a record; fix or remove that line") from None
    except ValueError as exc:
        raise DLMError(f"{path}: line {line} {exc}; fix or remove that line") from None
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"has {name}, which is not a number JSON allows")


def _checked_int(text: str) -> int:
    if len(text) > 19 or abs(int(text)) > MAX_INT:
        raise ValueError(f"has the number {text[:40]}, out of range (integers must fit in 64 bits)")
    return int(text)


def _checked_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"has the number {text[:30]}, out of range for a float")
    return value


def _json_default(obj: Any) -> Any:
    """Serialise numpy scalars and paths that json does not know."""
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


LARGE_FILE = 50 * 2**20  # files above this are fingerprinted by size and mtime, not content


def output_fingerprint(path: Path) -> str | None:
    """Content hash of a file or folder (hidden files skipped); None when it does not exist."""
    if not path.exists():
        return None
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                 and not any(part.startswith(".") for part in p.relative_to(path).parts))
    for f in files:
        st = f.stat()
        h.update(str(f.relative_to(path.parent)).encode())
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode() if st.st_size > LARGE_FILE else f.read_bytes())
    return h.hexdigest()


def model_fingerprint(model: str) -> str:
    """What identifies a model's weights: a content fingerprint of a local folder, else its id."""
    path = Path(model).expanduser()
    return output_fingerprint(path) if path.exists() else model


def sha256_text(text: str) -> str:
    """Hex SHA-256 of a string's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of `names` (missing ones omitted), plus Python and dlm."""
    versions = {"python": platform.python_version(), "dlm": __version__}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def manifest(kind: str, config: dict, seed: int | None, inputs: Iterable[str | Path] = (), **extra: Any) -> dict:
    """The small provenance record every artifact carries: what, settings, seed, input hashes, versions."""
    return {
        "kind": kind,
        "config": config,
        "seed": seed,
        "inputs": {str(p): sha256_file(p) for p in inputs},
        "versions": package_versions(),
        **extra,
    }


def progress_bar(total: int | None, desc: str, enabled: bool = True):
    """A tqdm bar on a terminal; silent when output is not a terminal or `enabled` is False."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=None if enabled else True, leave=False)


# ----------------------------------------------------------------------------- one writer per output

# (lock file, thread) -> (fd, depth): a thread may re-enter its own lock; another thread, like another
# process, opens its own descriptor, and flock makes it wait its turn (here: fail at once).
_HELD: dict[tuple[Path, int], tuple[int, int]] = {}
_SECRET_FLAGS = ("--hf-token", "--api-key", "--token")


def lock_path(output: str | Path) -> Path:
    """The lock file of an output file or folder: `<output>.lock` beside it (empty while nobody holds it)."""
    output = Path(output).absolute()
    return output.parent / f"{output.name}.lock"


def command_line(argv: list[str] | None = None) -> str:
    """This process's command line with secrets removed (tokens after their flag, credentials in URLs)."""
    argv = list(sys.argv if argv is None else argv)
    out = []
    for i, arg in enumerate(argv):
        out.append("***" if i and argv[i - 1] in _SECRET_FLAGS else redact_url(arg))
    return shlex.join(out)


def redact_url(text: str | None) -> str | None:
    """`scheme://user:key@host/...` -> `scheme://***@host/...`: credentials are never stored."""
    if text is None:
        return None
    return re.sub(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@", r"\1***@", text)


@contextlib.contextmanager
def output_lock(output: str | Path, what: str = "output") -> Iterator[Path]:
    """Hold an exclusive advisory lock on `output` for the block; a second holder fails at once, naming the first.

    The lock is `fcntl.flock` on `<output>.lock` beside the output: the kernel releases it when the
    process dies, so a killed run never leaves a stale lock (its file stays then and means
    nothing); a finished holder deletes the file before releasing it, and a newcomer that locked a
    file deleted under it tries again on the current one. On acquiring, temporary files left beside the output by a killed write are removed
    and an interrupted output-set commit is completed. Advisory locks are unreliable on some
    network file systems (older NFS, some SMB mounts): there, do not start two runs on one output.
    """
    output = Path(output).absolute()
    path = lock_path(output)
    key = (path, threading.get_ident())
    if key in _HELD:
        fd, depth = _HELD[key]
        _HELD[key] = (fd, depth + 1)
        try:
            yield path
        finally:
            fd, depth = _HELD[key]
            _HELD[key] = (fd, depth - 1)
        return
    ensure_writable_dir(path.parent)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = (os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
                      or "a process that has not yet named itself")
            os.close(fd)
            raise DLMError(f"{what} {output} is being written by another run ({holder}); wait for it to finish, "
                           "or write to another path") from None
        if _same_file(fd, path):
            break
        os.close(fd)  # the holder removed this lock file after we opened it: lock the current one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {dt.datetime.now():%Y-%m-%d %H:%M:%S}: {command_line()}\n"
                  .encode(), 0)
        _HELD[key] = (fd, 1)
        recover_output_set(output)
        remove_stale_temps(output)
        yield path
    finally:
        _HELD.pop(key, None)
        with contextlib.suppress(OSError):
            path.unlink()  # removed while still locked, so nobody is left holding a lock on a lost file
        os.close(fd)  # closing the descriptor releases the flock


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (a finished holder unlinks its lock file)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def holds_lock(output: str | Path) -> bool:
    """Whether this thread holds the lock of `output`."""
    return (lock_path(output), threading.get_ident()) in _HELD


def remove_stale_temps(output: str | Path) -> list[Path]:
    """Delete temporary files of `output` (and, for a folder, those directly inside it) left by a killed write."""
    output = Path(output).absolute()
    stale = list(output.parent.glob(f".{glob_escape(output.name)}.*.tmp"))
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
                          default=_json_default)
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


def load_yaml(path: str | Path, what: str = "file") -> Any:
    """Parse a YAML file as plain data (no Python tags); any problem is one DLMError naming file and line."""
    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DLMError(f"{what} {path}: byte offset {exc.start} is not UTF-8; re-save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "python/" in str(exc):
            problem = "a Python object tag (!!python/...) is not allowed; write plain values"
        raise DLMError(f"{what} {path}{where}: {problem}") from None
    except RecursionError:
        raise DLMError(f"{what} {path}: nested too deeply") from None


_FORMULA = re.compile(r"^'*[=+\-@\t\r]")


def csv_escape(value: Any) -> Any:
    """A string a spreadsheet would run as a formula (`=`, `+`, `-`, `@`) gets a leading `'`; reversible."""
    if isinstance(value, str) and _FORMULA.match(value):
        try:
            float(value)
            return value  # a negative number is data, not a formula
        except ValueError:
            return "'" + value
    return value


def csv_unescape(value: Any) -> Any:
    """Undo `csv_escape`."""
    if isinstance(value, str) and value.startswith("'") and _FORMULA.match(value):
        return value[1:]
    return value


def write_csv_atomic(path: str | Path, frame: Any, float_format: str | None = None) -> None:
    """Write a DataFrame as CSV (quoted where needed, formula-like strings escaped) atomically."""
    with atomic_path(path) as tmp:
        write_csv(tmp, frame, float_format)


def write_csv(path: str | Path, frame: Any, float_format: str | None = None) -> None:
    """Write a DataFrame as CSV: fields with commas, quotes or newlines quoted; formula-like strings escaped."""
    safe = frame.copy()
    for col in safe.columns:
        if safe[col].dtype == object or str(safe[col].dtype).startswith("str"):
            safe[col] = safe[col].map(csv_escape)
    safe.columns = [csv_escape(str(c)) for c in safe.columns]
    safe.to_csv(path, index=False, float_format=float_format, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")


def read_csv_checked(path: str | Path, string_columns: Iterable[str] = (), set_output: str | Path | None = None) -> Any:
    """Read a CSV written by `write_csv`, verified against the manifest of `set_output`'s set (default: its own).

    Columns in `string_columns` (ids) stay strings exactly as written.
    """
    import pandas as pd

    verify_output_set(set_output or path, missing_ok=True)
    frame = pd.read_csv(path, dtype={c: str for c in string_columns}, keep_default_na=False, na_values=[""])
    frame.columns = [csv_unescape(c) for c in frame.columns]
    for col in frame.columns:
        if frame[col].dtype == object or str(frame[col].dtype).startswith("str"):
            frame[col] = frame[col].map(csv_unescape)
    return frame
