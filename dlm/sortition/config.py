"""Panel configuration: panel size, pool filter and per-category [min, max] quotas from YAML."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dlm.errors import DLMError

PROPORTION_SLACK = 0.01

@dataclass
class Attribute:
    """One quota attribute: its survey column and, per category, the allowed count range."""

    name: str
    column: str
    categories: list[str]
    lo: dict[str, int]
    hi: dict[str, int]
    proportions: dict[str, float] | None = None
    slack_categories: list[str] = field(default_factory=list)


@dataclass
class PanelConfig:
    """A panel's size, pool filter and quotas, as read from `panel_config.yaml`."""

    panel_size: int
    tolerance: float
    tolerance_mode: str
    locale_filter: list[str] | None
    include_survey_only: bool
    attributes: list[Attribute]
    raw: dict[str, Any]
    path: str = ""


def load_panel_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PanelConfig:
    """Read and validate a panel config YAML; `overrides` replace top-level keys (e.g. panel_size)."""
    path = Path(path)
    if not path.is_file():
        raise DLMError(f"panel config {path} not found")
    try:
        raw = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DLMError(f"{path}: byte offset {exc.start} is not UTF-8; re-save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        raise DLMError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise DLMError(f"{path}: expected a mapping with panel_size, tolerance and attributes")
    raw = {**raw, **(overrides or {})}
    return parse_panel_config(raw, str(path))


def parse_panel_config(raw: dict[str, Any], where: str = "panel config") -> PanelConfig:
    """Validate a panel config mapping and compute each category's [min, max] count."""
    for key in ("panel_size", "attributes"):
        if key not in raw:
            raise DLMError(f"{where}: missing '{key}'")
    k = raw["panel_size"]
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise DLMError(f"{where}: panel_size must be a positive integer, got {k!r}")
    tol = raw.get("tolerance", 0.05)
    mode = raw.get("tolerance_mode", "relative")
    if mode not in ("relative", "absolute"):
        raise DLMError(f"{where}: tolerance_mode must be 'relative' or 'absolute', got {mode!r}")
    locale = raw.get("locale_filter")
    locales = None if locale in (None, "", []) else ([locale] if isinstance(locale, str) else list(locale))
    if not isinstance(raw["attributes"] or [], list):
        raise DLMError(f"{where}: 'attributes' must be a list of attributes, got {raw['attributes']!r}")
    attrs = [_parse_attribute(a, i, k, tol, mode, where) for i, a in enumerate(raw["attributes"] or [])]
    if not attrs:
        raise DLMError(f"{where}: 'attributes' is empty; give at least one quota attribute")
    _check_tolerance(tol, where)
    return PanelConfig(k, float(tol), mode, locales, bool(raw.get("include_survey_only", False)), attrs, raw, where)


def _check_tolerance(tol: Any, where: str) -> None:
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or tol < 0 or not math.isfinite(tol):
        raise DLMError(f"{where}: tolerance must be a number >= 0, got {tol!r}")


def _parse_attribute(a: dict, i: int, k: int, tol: float, mode: str, where: str) -> Attribute:
    """Validate one attribute entry and turn proportions or explicit quotas into count bounds."""
    if not isinstance(a, dict) or "name" not in a:
        raise DLMError(f"{where}: attributes[{i}] needs at least 'name'")
    name = a["name"]
    column = a.get("column", name) + (f".{a['nested_key']}" if a.get("nested_key") else "")
    atol = a.get("tolerance", tol)
    _check_tolerance(atol, f"{where}: attribute '{name}'")
    slack = list(a.get("slack_categories") or [])
    if a.get("quotas"):
        lo, hi = {}, {}
        if not isinstance(a["quotas"], dict):
            raise DLMError(f"{where}: attribute '{name}' quotas must map each category to [min, max]")
        for cat, bounds in a["quotas"].items():
            if not (isinstance(bounds, (list, tuple)) and len(bounds) == 2 and all(_is_number(b) for b in bounds)
                    and 0 <= bounds[0] <= bounds[1]):
                raise DLMError(f"{where}: attribute '{name}' quota for '{cat}' must be [min, max] with 0 <= min <= max")
            lo[str(cat)], hi[str(cat)] = int(bounds[0]), min(int(bounds[1]), k)
        cats = list(lo)
        props = None
    elif a.get("population_proportions"):
        given = a["population_proportions"]
        if not isinstance(given, dict) or not all(_is_number(p) for p in given.values()):
            raise DLMError(f"{where}: attribute '{name}' population_proportions must map each category to a number")
        props = {str(c): float(p) for c, p in given.items()}
        total = sum(props.values())
        if abs(total - 1) > PROPORTION_SLACK:
            raise DLMError(f"{where}: attribute '{name}' population_proportions sum to {total:.3f}, not 1 (±0.01)")
        if any(p < 0 for p in props.values()):
            raise DLMError(f"{where}: attribute '{name}' has a negative proportion")
        cats = list(props)
        lo, hi = {}, {}
        for c, p in props.items():
            lo[c], hi[c] = quota_range(p, k, atol, mode)
    else:
        raise DLMError(f"{where}: attribute '{name}' needs population_proportions or quotas")
    for c in slack:
        if c not in cats:
            raise DLMError(f"{where}: attribute '{name}' slack category '{c}' is not one of its categories")
        lo[c], hi[c] = 0, k  # slack categories carry no quota: they absorb people whatever their share
    return Attribute(name, column, cats, lo, hi, props, slack)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def quota_range(p: float, k: int, tol: float, mode: str) -> tuple[int, int]:
    """[min, max] panel seats for a category of population share p, rounded outward."""
    if mode == "relative":
        lo, hi = p * k * (1 - tol), p * k * (1 + tol)
    else:
        lo, hi = (p - tol) * k, (p + tol) * k
    eps = 1e-9  # keeps e.g. 0.1*30 = 3.0000000000000004 from rounding up to 4
    return max(0, math.floor(lo + eps)), min(k, math.ceil(hi - eps))

