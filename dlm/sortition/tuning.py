"""Quota tuning without widgets: sum-preserving proportion edits, a readable feasibility verdict, a run, a saved YAML.

Notebook 02's tuner (`dlm.notebook.tuner.QuotaTuner`) is a thin face over these functions, so each
behaviour is tested here without a browser.
"""

from __future__ import annotations

import copy
import shlex
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from dlm.errors import DLMError
from dlm.io import Progress, write_text_atomic
from dlm.sortition import select
from dlm.sortition.config import PanelConfig, load_panel_config, parse_panel_config
from dlm.sortition.feasibility import feasibility_report
from dlm.sortition.leximin import Leximin
from dlm.sortition.pool import Pool, build_pool
from dlm.sortition.results import ProbabilitySummary

DIGITS = 4  # proportions are kept to 4 decimals, so a saved YAML reads back exactly


def renormalise(proportions: dict[str, float], changed: str, value: float,
                digits: int = DIGITS) -> dict[str, float]:
    """Set one category's share and rescale the others so the shares still sum to 1.

    The others keep their ratios to one another (equal shares if they were all 0); the rounding
    residue goes to the largest of them, so the result sums to 1 exactly at `digits` decimals.
    """
    if changed not in proportions:
        raise DLMError(f"unknown category '{changed}'; one of {', '.join(proportions)}")
    if not np.isfinite(value):
        raise DLMError(f"the share of '{changed}' must be a number between 0 and 1, got {value!r}")
    others = [c for c in proportions if c != changed]
    value = 1.0 if not others else min(max(float(value), 0.0), 1.0)
    rest = 1.0 - value
    total = sum(max(proportions[c], 0.0) for c in others)
    out = {changed: round(value, digits)}
    for c in others:
        share = max(proportions[c], 0.0) / total if total > 0 else 1 / len(others)
        out[c] = round(rest * share, digits)
    if others:
        largest = max(others, key=lambda c: out[c])
        out[largest] = round(out[largest] + 1.0 - sum(out.values()), digits)
    return {c: out[c] for c in proportions}


@dataclass
class QuotaCheck:
    """The tuner's verdict on one setting: the pool it built (if any), feasibility, binding quotas, fixes."""

    feasible: bool
    panel_size: int
    pool_size: int | None = None
    binding: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    error: str | None = None  # a setting that could not be read (no pool was built)
    warnings: list[str] = field(default_factory=list)
    pool: Pool | None = field(default=None, repr=False)

    @property
    def headline(self) -> str:
        """One sentence: feasible, infeasible, or why the setting could not be checked."""
        if self.error:
            return f"Cannot check this setting: {self.error}"
        verdict = "Feasible" if self.feasible else "Infeasible"
        meets = "meets" if self.feasible else "can meet"
        return (f"{verdict}: {'a' if self.feasible else 'no'} panel of {self.panel_size} from this pool of "
                f"{self.pool_size} {meets} every quota.")

    def text(self) -> str:
        """The verdict as plain text, one item per line."""
        lines = [self.headline]
        if self.binding:
            lines += ["Binding quotas:", *(f"- {b}" for b in self.binding)]
        if self.fixes:
            lines += ["Smallest fixes:", *(f"- {f}" for f in self.fixes)]
        lines += [f"Note: {w}" for w in self.warnings]
        return "\n".join(lines)

    def html(self) -> str:
        """The verdict as a small HTML block (a coloured headline, then lists)."""
        import html

        colour = "#1b7f3b" if self.feasible and not self.error else "#b00020"
        parts = [f'<p class="dlm-verdict" style="color:{colour};font-weight:bold;margin:0 0 .4em">'
                 f"{html.escape(self.headline)}</p>"]
        for title, items, css in (("Binding quotas", self.binding, "dlm-binding"),
                                  ("Smallest fixes", self.fixes, "dlm-fixes"),
                                  ("Notes", self.warnings, "dlm-notes")):
            if items:
                rows = "".join(f"<li>{html.escape(i)}</li>" for i in items)
                parts.append(f'<div class="{css}"><b>{title}</b><ul style="margin:.2em 0 .5em 1.2em;'
                             f'padding:0">{rows}</ul></div>')
        return f'<div class="dlm-quota-check" style="line-height:1.4">{"".join(parts)}</div>'


def check_quotas(table: pd.DataFrame, raw: dict[str, Any], id_column: str = "user_id",
                 where: str = "tuned quotas") -> QuotaCheck:
    """Build the pool under a panel-config mapping and check feasibility exactly; errors become the verdict."""
    size = raw.get("panel_size", 0)
    try:
        config = parse_panel_config(raw, where)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pool = build_pool(table, config, id_column)
    except DLMError as exc:
        return QuotaCheck(False, size, error=str(exc))
    notes = [str(w.message) for w in caught]
    report = feasibility_report(pool)
    return QuotaCheck(report.feasible, pool.k, pool.n, report.binding, report.suggestions, warnings=notes, pool=pool)


@dataclass
class TunedRun:
    """LEGACY or LEXIMIN under tuned quotas: every person's π and its summary (minimum, Gini)."""

    algorithm: str
    probabilities: np.ndarray
    summary: ProbabilitySummary
    seconds: float
    failure_rate: float | None = None
    leximin: Leximin | None = None  # kept so that the next run after a quota change starts from its panels

    def text(self) -> str:
        """One line: the fairness cost of these quotas under this algorithm."""
        s = self.summary
        fail = f", failed draws {self.failure_rate:.1%}" if self.failure_rate is not None else ""
        return (f"{self.algorithm.upper()}: minimum π {s.min:.4f} (k/n {s.panel_size / len(self.probabilities):.4f}), "
                f"maximum π {s.max:.4f}, Gini {s.gini:.3f}{fail}; {self.seconds:.1f} s")


def run_algorithm(pool: Pool, algorithm: str, n_samples: int = 2000, seed: int = 0,
                  leximin_time_limit: float = 600.0, reuse: TunedRun | None = None,
                  progress: Progress = False) -> TunedRun:
    """Selection probabilities under the tuned quotas, as `dlm sortition` computes them (no panel drawn).

    `reuse`, the previous run, lends LEXIMIN its panels: a small quota change mostly keeps the
    support, and the result equals a cold start's. `progress` receives a line of text at each step
    (types fixed, panels decomposed, panels drawn).
    """
    if algorithm not in ("legacy", "leximin"):
        raise DLMError(f"the tuner runs legacy or leximin, not '{algorithm}'")
    start = time.perf_counter()
    sel = select(pool, algorithm, n_samples, seed, leximin_time_limit=leximin_time_limit, draw_panel=False,
                 leximin_reuse=None if reuse is None else reuse.leximin, progress=progress)
    p = sel.probabilities["probability"].to_numpy()
    return TunedRun(algorithm, p, sel.diagnostics.summary, time.perf_counter() - start,
                    sel.diagnostics.failure_rate, sel.leximin)


def base_settings(config: str | Path | PanelConfig) -> dict[str, Any]:
    """A panel config's mapping to tune: from a YAML path, or from a config already read (e.g. categories.csv)."""
    if isinstance(config, PanelConfig):
        return copy.deepcopy(config.raw)
    return copy.deepcopy(load_panel_config(config).raw)


def sortition_command(path: str | Path, pool_flags: list[str] | None) -> str:
    """The `dlm sortition` command that selects from the tuned pool under a saved panel config."""
    pool = " ".join(shlex.quote(str(f)) for f in pool_flags or [])
    return f"python -m dlm sortition {pool + ' ' if pool else ''}--panel-config {shlex.quote(str(path))}"


def save_panel_config(raw: dict[str, Any], path: str | Path, source: str = "",
                      pool_flags: list[str] | None = None) -> PanelConfig:
    """Validate tuned quotas, write them as a panel-config YAML (atomically), and read it back as `dlm sortition` does.

    `pool_flags` (`PoolSource.pool_flags()`) name the pool the quotas were tuned on: the header's command
    selects from that pool (without them, `dlm sortition`'s default pool).
    """
    path = Path(path)
    parse_panel_config(raw, str(path))  # an invalid setting never reaches the file
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise DLMError(f"{path}: save the panel config as a .yaml file")
    header = "# Panel config saved by the quota tuner (notebook 02)" + (f" from {source}" if source else "") + ".\n"
    if pool_flags:
        header += f"# Tuned on the pool: {' '.join(pool_flags)}\n"
    header += f"# Use it with: {sortition_command(path, pool_flags)}\n"
    text = header + yaml.safe_dump(_plain(raw), sort_keys=False, allow_unicode=True, default_flow_style=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    return load_panel_config(path)


def _plain(value: Any) -> Any:
    """Builtin types only (numpy numbers become floats/ints), so safe_dump writes plain YAML."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
