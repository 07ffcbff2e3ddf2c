"""One entry point for every algorithm (`select`), summaries, composition tables, and the files written."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dlm.errors import DLMError
from dlm.io import Progress, atomic_path, commit_output_set, manifest, output_lock, verify_output_set
from dlm.sortition.feasibility import require_feasible
from dlm.sortition.legacy import legacy_panels, random_panels
from dlm.sortition.leximin import Leximin, leximin
from dlm.sortition.pool import Pool
from dlm.sortition.results import ProbabilitySummary, SelectionDiagnostics

ALGORITHMS = ("legacy", "leximin", "random")


@dataclass
class Selection:
    """Selection probabilities for every pool member, optionally one drawn panel, and diagnostics."""

    pool: Pool
    algorithm: str
    probabilities: pd.DataFrame  # <the pool's id column>, probability[, stderr]
    panel: list[str] | None
    diagnostics: SelectionDiagnostics
    leximin: Leximin | None = None  # the LEXIMIN distribution (leximin only), reusable by a later call


def select(pool: Pool, algorithm: str = "legacy", n_samples: int = 2000, seed: int = 0,
           leximin_time_limit: float = 600.0, draw_panel: bool = True, progress: Progress = False,
           legacy_variant: str = "stratification-app", leximin_reuse: Leximin | None = None) -> Selection:
    """Selection probabilities (Monte Carlo for legacy/random, exact for leximin) and one panel.

    The one drawn panel uses `seed` too: for legacy/random it is the first Monte Carlo panel.
    `legacy_variant` picks LEGACY's ranking of categories (`legacy_panels`' `variant`);
    `leximin_reuse` is an earlier LEXIMIN result whose panels start this one (`leximin`'s `reuse`).
    """
    if algorithm not in ALGORITHMS:
        raise DLMError(f"unknown algorithm '{algorithm}'; use one of {', '.join(ALGORITHMS)}")
    if n_samples < 1:
        raise DLMError(f"--num-panel-samples must be at least 1, got {n_samples}")
    if pool.id_column in ("probability", "stderr"):
        raise DLMError(f"the id column is called '{pool.id_column}', a column of the probabilities CSV; rename it")
    require_feasible(pool)
    if algorithm == "leximin":
        lex = leximin(pool, time_limit=leximin_time_limit, progress=progress, reuse=leximin_reuse)
        p = lex.probabilities()
        probs = pd.DataFrame({pool.id_column: pool.user_ids, "probability": p})
        panel_idx = lex.draw(seed) if draw_panel else None
        diag = SelectionDiagnostics(algorithm, seed, pool.report.to_dict(), probability_summary(p, pool.k),
                                    leximin_method=lex.method, leximin_seconds=lex.seconds, levels=lex.levels,
                                    leximin_panel_sources={} if lex.decomposition is None else
                                    {k: float(v) for k, v in vars(lex.decomposition).items()},
                                    final_primal_slack=lex.primal_slack,
                                    panels_in_support=int((lex.weights > 1e-12).sum()), types=len(lex.types.sizes))
    else:
        if algorithm == "legacy":
            mc = legacy_panels(pool, n_samples, seed, progress=progress, variant=legacy_variant)
        else:
            mc = random_panels(pool, n_samples, seed, progress=progress)
        p, se = mc.probabilities(pool.n)
        probs = pd.DataFrame({pool.id_column: pool.user_ids, "probability": p, "stderr": se})
        panel_idx = np.sort(mc.panels[0]) if draw_panel else None
        diag = SelectionDiagnostics(algorithm, seed, pool.report.to_dict(), probability_summary(p, pool.k),
                                    n_samples=n_samples, attempts=mc.attempts, failures=mc.failures,
                                    failure_rate=mc.failure_rate, zero_probability_people=int((p == 0).sum()),
                                    legacy_variant=legacy_variant if algorithm == "legacy" else None)
    panel = [str(u) for u in pool.user_ids[panel_idx]] if panel_idx is not None else None
    return Selection(pool, algorithm, probs, panel, diag, lex if algorithm == "leximin" else None)


def probability_summary(p: np.ndarray, k: int) -> ProbabilitySummary:
    """min / max / mean / Gini of selection probabilities, and Σπ (which must equal k)."""
    return ProbabilitySummary(float(p.min()), float(p.max()), float(p.mean()), gini(p), float(p.sum()), k)


def gini(x: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 = all equal)."""
    x = np.sort(np.asarray(x, dtype=float))
    if x.sum() == 0:
        return 0.0
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def composition(pool: Pool, probabilities: np.ndarray | None = None, panel: list[str] | None = None) -> pd.DataFrame:
    """Per attribute and category: target share, quota range, pool share, expected (Σπ/k) and panel share."""
    M = pool.membership
    lo, hi = pool.bounds
    rows = []
    panel_mask = np.isin(pool.user_ids, panel) if panel is not None else None
    for c, (attr_name, cat) in enumerate(pool.category_labels):
        attr = next(a for a in pool.config.attributes if a.name == attr_name)
        row = {"attribute": attr_name, "category": cat,
               "target": (attr.proportions or {}).get(cat, np.nan), "min": int(lo[c]), "max": int(hi[c]),
               "pool_count": int(M[:, c].sum()), "pool_share": float(M[:, c].mean())}
        if probabilities is not None:
            row["expected_share"] = float(probabilities[M[:, c]].sum() / pool.k)
        if panel_mask is not None:
            row["panel_count"] = int((M[:, c] & panel_mask).sum())
            row["panel_share"] = row["panel_count"] / pool.k
        rows.append(row)
    return pd.DataFrame(rows)


def panel_tables(sel: Selection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The drawn panel and the remaining pool, each in the input's own columns (ids only without them)."""
    if sel.panel is None:
        raise DLMError("no panel was drawn; select with draw_panel=True to write the panel or the remaining pool")
    pool = sel.pool
    table = pool.table if pool.table is not None else pd.DataFrame({pool.id_column: pool.user_ids})
    chosen = np.isin(pool.user_ids, sel.panel)
    return table[chosen].reset_index(drop=True), table[~chosen].reset_index(drop=True)


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a CSV atomically with every text cell quoted, so any id (commas, quotes, newlines) round-trips.

    Cell contents are never altered, so ids read back byte for byte; a spreadsheet may still
    evaluate a cell starting with =, +, - or @, which is why `build_pool` warns about such ids.
    """
    with atomic_path(path) as tmp:
        _write_quoted(frame, tmp)


def _write_quoted(frame: pd.DataFrame, path: str | Path) -> None:
    frame.to_csv(path, index=False, float_format="%.10g", quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")


def write_selection(sel: Selection, output: str | Path, panel_output: str | Path | None = None,
                    inputs: list[str | Path] = (), n_samples: int | None = None,
                    remaining_output: str | Path | None = None) -> None:
    """Write `<id column>,probability[,stderr]`, optionally the drawn panel and the remaining pool, and a manifest.

    The panel and the remaining pool are CSVs in the input's own columns (for organisers: who to
    invite, who stays in reserve). All files are one output set (`dlm.io.commit_output_set`): the
    manifest, written last, lists the SHA-256 of each, and a kill leaves the old set or the new one.
    One writer at a time per `output` (a lock).
    """
    output = Path(output)
    with output_lock(output, "selection probabilities"):
        writers = {output: lambda tmp: _write_quoted(sel.probabilities, tmp)}
        if panel_output or remaining_output:
            panel, remaining = panel_tables(sel)
            if panel_output:
                writers[Path(panel_output)] = lambda tmp: _write_quoted(panel, tmp)
            if remaining_output:
                writers[Path(remaining_output)] = lambda tmp: _write_quoted(remaining, tmp)
        commit_output_set(output, writers, manifest(
            "sortition", config=sel.pool.config.raw, seed=sel.diagnostics.seed, inputs=list(inputs),
            algorithm=sel.algorithm, num_panel_samples=n_samples, id_column=sel.pool.id_column,
            diagnostics=sel.diagnostics.to_dict()))


def read_selection(output: str | Path) -> pd.DataFrame:
    """The probabilities CSV of a `write_selection` set, after checking every file of the set against its manifest."""
    verify_output_set(output)
    frame = pd.read_csv(output, dtype=str, keep_default_na=False)  # ids as written, whatever their column
    return frame.astype({c: float for c in ("probability", "stderr") if c in frame.columns})
