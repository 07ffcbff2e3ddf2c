"""Where things live: the project root and the artifacts root, found the same way from any working directory.

The project root is `DLM_ROOT` if set, else the checkout this package belongs to (the folder holding
`pyproject.toml` above `dlm/`), else the first folder holding `pyproject.toml` above the working
directory. The artifacts root is `DLM_ARTIFACTS` if set (relative values against the project root),
else `<root>/artifacts`. Relative paths in notebooks, profiles, configs and CLI defaults resolve
against these: `artifacts/…` under the artifacts root, anything else under the project root. Paths a
user types on the command line stay relative to the working directory, as in any CLI.
"""

from __future__ import annotations

import os
from pathlib import Path

from dlm.errors import DLMError

ROOT_ENV = "DLM_ROOT"
ARTIFACTS_ENV = "DLM_ARTIFACTS"
ARTIFACTS = "artifacts"
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def _is_project(folder: Path) -> bool:
    return (folder / "pyproject.toml").is_file() and (folder / "dlm").is_dir()


def project_root() -> Path:
    """The project root: DLM_ROOT, else the checkout holding this package, else the nearest pyproject.toml above cwd."""
    env = os.environ.get(ROOT_ENV)
    if env:
        root = Path(env).expanduser().resolve()
        if not root.is_dir():
            raise DLMError(f"{ROOT_ENV}={env} is not a folder: point it at the democratic-llm checkout or unset it")
        return root
    if _is_project(_PACKAGE_ROOT):
        return _PACKAGE_ROOT
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    raise DLMError(f"no project root: run inside the democratic-llm checkout or set {ROOT_ENV} to it")


def artifacts_root() -> Path:
    """The folder every profile's outputs live under: DLM_ARTIFACTS, else <root>/artifacts."""
    env = os.environ.get(ARTIFACTS_ENV)
    if env:
        path = Path(env).expanduser()
        return path if path.is_absolute() else project_root() / path
    return project_root() / ARTIFACTS


def _is_hub(value: str) -> bool:
    return value == "hub" or value.startswith("hub:")


def resolve(value: str | Path) -> str:
    """A project path as an absolute path: `artifacts/…` under the artifacts root, other relative paths under the root.

    Empty values, absolute paths and PRISM's `hub`/`hub:ID` sources come back unchanged.
    """
    text = str(value)
    if not text or _is_hub(text) or Path(text).is_absolute():
        return text
    parts = Path(text).parts
    if parts and parts[0] == ARTIFACTS:
        return str(artifacts_root().joinpath(*parts[1:]))
    return str(project_root() / text)


def model(value: str) -> str:
    """A model given as a project path (resolved like `resolve`) or a Hub id (unchanged)."""
    if not value or Path(value).is_absolute():
        return value
    if Path(value).parts[0] == ARTIFACTS or (project_root() / value).exists():
        return resolve(value)
    return value
