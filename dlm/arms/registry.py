"""The registry of arms (configs/arms.yaml): how each arm's training data are built, validated on load."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from dlm import paths
from dlm.errors import DLMError
from dlm.preferences.build import DEPRECATED_MODES, MODES, NORMALIZATIONS, PANEL_MODES
from dlm.sortition import ALGORITHMS

ROOT = paths.project_root()
ARMS_FILE = ROOT / "configs" / "arms.yaml"
DRAWN_MODES = ("hard", "size_matched", "soft_resampled")
ARM_FIELDS = {"mode", "panel_config", "panel_algorithm", "drawn", "weight_normalization", "description"}
_ARM_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Arm:
    """One registry entry: how an arm's training data are built."""

    name: str
    mode: str
    panel_config: str | None = None  # "primary" (the design's panel_config), a path, or None (no panel)
    panel_algorithm: str = "legacy"
    drawn: bool = False
    weight_normalization: str | None = None  # None: the design's
    description: str = ""


def load_arms(path: str | Path | None = None) -> dict[str, Arm]:
    """The arms declared in an arms file (default configs/arms.yaml), validated."""
    path = Path(paths.resolve(path)) if path else ARMS_FILE
    if not path.is_file():
        raise DLMError(f"arms file {path} not found (the registry of arms, see configs/arms.yaml)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DLMError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    entries = raw.get("arms") if isinstance(raw, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise DLMError(f"{path}: expected a mapping `arms: {{NAME: {{mode: ...}}, ...}}`")
    arms = {}
    for name, entry in entries.items():
        where = f"{path}: arm {name!r}"
        if not isinstance(name, str) or not _ARM_NAME.fullmatch(name):
            raise DLMError(f"{where}: names are lower-case letters, digits and _ (run names append -rR-sS)")
        if not isinstance(entry, dict) or "mode" not in entry:
            raise DLMError(f"{where}: needs at least `mode: {' | '.join(MODES)}`")
        unknown = sorted(set(entry) - ARM_FIELDS)
        if unknown:
            raise DLMError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(ARM_FIELDS))}")
        mode = DEPRECATED_MODES.get(entry["mode"], entry["mode"])
        if mode not in MODES:
            raise DLMError(f"{where}: mode {entry['mode']!r} is not one of {', '.join(MODES)}")
        algorithm = entry.get("panel_algorithm", "legacy")
        if algorithm not in ALGORITHMS:
            raise DLMError(f"{where}: panel_algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
        norm = entry.get("weight_normalization")
        if norm is not None and norm not in NORMALIZATIONS:
            raise DLMError(f"{where}: weight_normalization {norm!r} is not one of {', '.join(NORMALIZATIONS)}")
        drawn = entry.get("drawn", mode in DRAWN_MODES)
        if not isinstance(drawn, bool):
            raise DLMError(f"{where}: drawn must be true or false, got {drawn!r}")
        panel = entry.get("panel_config", "primary" if mode in PANEL_MODES else None)
        if mode in PANEL_MODES and not panel:
            raise DLMError(f"{where}: mode {mode} needs a panel_config (`primary` or a path)")
        arms[name] = Arm(name, mode, panel if mode in PANEL_MODES else None, algorithm, drawn, norm,
                         str(entry.get("description", "")))
    return arms
