"""Hashes and provenance: file and folder fingerprints, manifests with package versions, redacted command lines."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shlex
import sys
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from dlm import __version__
from dlm.errors import DLMError

# Packages whose versions go into every manifest: the ones that change numbers.
TRACKED_PACKAGES = ("numpy", "pandas", "scipy", "torch", "transformers", "trl", "peft", "datasets", "openai")
_SECRET_FLAGS = ("--hf-token", "--api-key", "--token")


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


# Where progress goes: True a tqdm bar on a terminal, False nowhere, a callable one line of text per update.
Progress = bool | Callable[[str], None]


class LineProgress:
    """Progress as one line of text handed to `report` on every update (a widget's status line)."""

    def __init__(self, total: int | None, desc: str, report: Callable[[str], None]) -> None:
        self.total, self.desc, self.report, self.n = total, desc, report, 0

    def update(self, n: int = 1) -> None:
        self.n += n
        self.report(f"{self.desc}: {self.n}" + (f" of {self.total}" if self.total else ""))

    def close(self) -> None:
        """Nothing to tear down: the caller's line shows the result next."""


def progress_bar(total: int | None, desc: str, enabled: Progress = True):
    """A tqdm bar on a terminal; silent when output is not a terminal or `enabled` is False; with a
    callable, each update is reported to it as one line (`LineProgress`)."""
    if callable(enabled):
        return LineProgress(total, desc, enabled)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=None if enabled else True, leave=False)


def command_line(argv: list[str] | None = None) -> str:
    """This process's command line with secrets removed (tokens after their flag, credentials in URLs)."""
    argv = list(sys.argv if argv is None else argv)
    out = []
    for i, arg in enumerate(argv):
        out.append("***" if i and argv[i - 1] in _SECRET_FLAGS else redact_url(arg))
    return shlex.join(out)


# Query parameters whose values are credentials (case-insensitive), redacted like a URL's userinfo.
SECRET_QUERY_NAMES = ("api-key", "api_key", "apikey", "key", "token", "access_token", "sig", "signature", "password",
                      "secret")
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s]*@")
_SECRET_QUERY = re.compile(r"([?&;](?:" + "|".join(map(re.escape, SECRET_QUERY_NAMES)) + r")=)[^&;#\s]*", re.I)
REDACTED = "***"
# The side channel that carries real URLs to a notebook kernel: {redacted URL: URL}, JSON, in the
# environment, which papermill does not record (it records the parameters it injects).
URL_SECRETS_ENV = "DLM_URL_SECRETS"


def redact_url(text: str | None) -> str | None:
    """Credentials out of every URL in `text`: userinfo and credential-like query values become `***`."""
    if text is None:
        return None
    text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    return _SECRET_QUERY.sub(rf"\1{REDACTED}", text) if "=" in text else text


def redact_values(value: Any) -> Any:
    """`value` (a mapping, list or string, nested) with every URL redacted, for anything that is recorded."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {k: redact_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_values(v) for v in value)
    return value


def url_secrets(values: Iterable[Any]) -> dict[str, str]:
    """{redacted: real} for every string in `values` that redaction changes; two URLs that redact alike are an error."""
    out: dict[str, str] = {}
    for value in values:
        if not isinstance(value, str) or redact_url(value) == value:
            continue
        hidden = redact_url(value)
        if out.get(hidden, value) != value:
            raise DLMError(f"two URLs differ only in their credentials ({hidden}): give each server its own host "
                           "or path, or pass credentials through the environment (OPENAI_API_KEY)")
        out[hidden] = value
    return out


def reveal_url(url: str | None) -> str | None:
    """The real URL behind a redacted one, from URL_SECRETS_ENV; any other URL unchanged."""
    if not url or REDACTED not in url:
        return url
    try:
        secrets = json.loads(os.environ.get(URL_SECRETS_ENV) or "{}")
    except ValueError:
        secrets = {}
    if url not in secrets:
        raise DLMError(f"the URL {url} has its credentials redacted and {URL_SECRETS_ENV} does not hold them: pass "
                       "the real URL (the pipeline runner passes it to notebooks through that variable)")
    return secrets[url]
