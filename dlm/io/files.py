"""Atomic file writes (temporary file, fsync, rename), canonical JSON and checked JSON lines, plain YAML."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from dlm.errors import DLMError

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
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=json_default)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write pretty, key-sorted JSON atomically."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, indent=2, default=json_default)
    write_text_atomic(path, text + "\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict]) -> int:
    """Write rows as JSON Lines atomically; return the number written."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=json_default) + "\n")
            n += 1
    return n


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


def json_default(obj: Any) -> Any:
    """Serialise numpy scalars and paths that json does not know."""
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


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
