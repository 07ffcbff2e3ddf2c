"""Small file helpers shared by every stage: atomic writes, hashes, manifests, JSONL."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Iterable, Iterator
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
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


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
    """Read JSON Lines; a malformed line is a DLMError naming the file and line."""
    path = Path(path)
    rows: list[dict] = []
    with open(path, encoding="utf-8") as fh:
        lines = fh.readlines()
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise DLMError(f"{path}: line {i} is not valid JSON; fix or remove that line") from None
    return rows


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
