"""Training recipes (flat YAML in configs/train/) read, and their keys under TRL's names.

Kept apart from `train_dpo`, which imports TRL and torch: `dlm design`, `prepare` and the bill read
recipes without paying for either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlm.errors import DLMError
from dlm.io import load_yaml

# Earlier recipe keys and TRL's names for them: both are accepted.
KEY_ALIASES = {"model_id": "model_name_or_path", "torch_dtype": "dtype"}


def load_recipe(path: str | Path | None) -> dict[str, Any]:
    """A flat YAML recipe (see configs/train/); keys are validated in `train_dpo.split_settings`."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise DLMError(f"training recipe {path} not found")
    data = load_yaml(path, "training recipe") or {}
    if not isinstance(data, dict):
        raise DLMError(f"{path}: a recipe is a mapping of setting: value")
    return data


def canonical_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings under TRL's names (`model_id` → `model_name_or_path`, `torch_dtype` → `dtype`)."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        name = KEY_ALIASES.get(key, key)
        if name in out and out[name] != value:
            raise DLMError(f"training settings {key} and {name} disagree ({value!r} vs {out[name]!r}); keep {name}")
        out[name] = value
    return out
