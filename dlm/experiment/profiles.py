"""Profiles (configs/profiles/<name>.yaml) and the parameters they give each notebook, checked against its `parameters` cell."""

from __future__ import annotations

import re

from pathlib import Path
from typing import Any

import yaml

from dlm import paths
from dlm.errors import DLMError
from dlm.io import (check_value, int_at_least, load_yaml, non_negative_float, non_negative_int, positive_float,
                    positive_int, probability, share_below_one)

ROOT = paths.project_root()
NOTEBOOKS_DIR = ROOT / "notebooks"
PROFILES_DIR = ROOT / "configs" / "profiles"
# The range of every numeric notebook parameter, checked before any notebook runs (as the CLI's flags are).
PARAMETER_RANGES = {
    "agreement_max_pairs": non_negative_int, "calibration_min_accuracy": probability, "cpus_per_run": non_negative_int,
    "end_clause": non_negative_int, "eval_ratio": share_below_one, "eval_seed": non_negative_int,
    "gpus_per_run": int_at_least(-1), "job_time_min": positive_int, "leximin_time_limit": positive_float,
    "max_new_tokens": positive_int, "max_pairs": non_negative_int, "max_steps": int_at_least(-1),
    "min_raters": positive_int, "n_questions": positive_int, "num_panel_samples": positive_int,
    "panel_draws": positive_int, "panel_seed": non_negative_int, "panel_size": non_negative_int,
    "question_seed": non_negative_int, "question_temperature": non_negative_float,
    "questions_per_clause": non_negative_int, "sample_seed": non_negative_int, "tiny_warmup_steps": non_negative_int,
    "train_seed": non_negative_int, "train_seeds": positive_int, "start_clause": non_negative_int,
    "num_workers": positive_int, "batch_size": positive_int, "max_retries": non_negative_int,
}
SECRET_WORDS = {"token", "secret", "password", "apikey", "key"}  # words of a name (split at _ and -) that mark a secret


def looks_like_secret(name: str) -> bool:
    """Whether a parameter's name says it holds a credential (`HF_TOKEN`, `api_key`; not `max_new_tokens`)."""
    return bool(SECRET_WORDS & set(re.split(r"[_\W]+", name.lower())))


def notebooks(directory: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks, in order."""
    return sorted(p for p in directory.glob("[0-9][0-9]_*.ipynb"))


def load_profile(name_or_path: str) -> dict[str, Any]:
    """Read a profile by name (configs/profiles/<name>.yaml) or path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
        raise DLMError(f"profile {name_or_path} not found; known profiles: {known}")
    profile = load_yaml(path, "profile") or {}
    if not isinstance(profile, dict):
        raise DLMError(f"profile {path}: expected a mapping with `parameters` and `notebooks`")
    for key in ("parameters", "notebooks"):
        profile[key] = profile.get(key) or {}
        if not isinstance(profile[key], dict):
            kind = {list: "a list", str: "a string", int: "a number", float: "a number"}.get(
                type(profile[key]), type(profile[key]).__name__)
            raise DLMError(f"profile {path}: `{key}` must be a mapping of name: value, got {kind}")
    for name, own in profile["notebooks"].items():
        if own is not None and not isinstance(own, dict):
            raise DLMError(f"profile {path}: notebooks.{name} must be a mapping of parameter: value")
    profile["_path"] = str(path)
    return profile


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """Parameter names and defaults of a notebook's `parameters` cell."""
    import papermill  # papermill loads nbclient and jupyter: only when a notebook is inspected

    return {name: info for name, info in papermill.inspect_notebook(str(notebook)).items()}


def _default_value(info: dict[str, Any]) -> Any:
    try:
        return yaml.safe_load(info["default"])  # papermill gives the default as source text
    except yaml.YAMLError:
        return None


def _same_type(value: Any, default: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def resolve_parameters(profile: dict[str, Any], books: list[Path]) -> dict[str, dict[str, Any]]:
    """Parameters to inject per notebook; unknown names and wrong types raise DLMError.

    Names are checked against every notebook, so `--only` does not turn shared names into errors.
    """
    declared = {nb.stem: declared_parameters(nb) for nb in notebooks()}
    all_names = {n for d in declared.values() for n in d}
    shared = profile["parameters"]
    for name in shared:
        if looks_like_secret(name):
            raise DLMError(f"profile parameter '{name}' looks like a secret: set it in the environment instead")
    unknown = sorted(set(shared) - all_names)
    if unknown:
        raise DLMError(f"{profile['_path']}: unknown parameter(s) {', '.join(unknown)}; no notebook declares them")
    out = {}
    for nb in books:
        declared.setdefault(nb.stem, declared_parameters(nb))
        own = profile["notebooks"].get(nb.stem, {}) or {}
        bad = sorted(set(own) - set(declared[nb.stem]))
        if bad:
            raise DLMError(f"{profile['_path']}: notebook {nb.stem} has no parameter(s) {', '.join(bad)}")
        params = {k: v for k, v in shared.items() if k in declared[nb.stem]} | own
        for k, v in params.items():
            default = _default_value(declared[nb.stem][k])
            if not _same_type(v, default):
                raise DLMError(f"{profile['_path']}: parameter {k}={v!r} for {nb.stem} should be "
                               f"{type(default).__name__} like its default {default!r}")
            if k in PARAMETER_RANGES:
                check_value(f"{profile['_path']}: parameter {k} for {nb.stem}", v, PARAMETER_RANGES[k])
        out[nb.stem] = params
    extra = sorted(set(profile["notebooks"]) - set(declared))
    if extra:
        raise DLMError(f"{profile['_path']}: no notebook named {', '.join(extra)}")
    return out


def notebook_params(profile: dict[str, Any], name: str) -> dict[str, Any]:
    return {**profile.get("parameters", {}), **(profile.get("notebooks", {}).get(name) or {})}
