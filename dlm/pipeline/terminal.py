"""The terminal's closing table of a run (`run_all.py`): each interval with its estimand and units.

Win rates are judged questions scored 1 / ½ / 0, clustered by constitution clause; held-out
accuracy is the share of held-out raters' pairs a model ranks as the rater chose, clustered by
rater. Each interval says what it averages over: conditional on the trained models, over draws,
over seeds, or over draws and seeds (the `scope` 06 and 07 write beside every interval).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dlm.pipeline.report import Headline, accuracy_scope, accuracy_text, contrast_text, planted_text

CONDITIONAL = "conditional on the trained models"


def scope_text(result: dict[str, Any], what: str) -> str:
    """'interval over draws and seeds, 4 units (model groups); WHAT' — the estimand and units of one result."""
    scope = result.get("scope") or CONDITIONAL
    units = result.get("units")
    count = f", {units} independent units of trained models" if units else ""
    return f"interval {scope}{count}; {what}"


def _primary_record(h: Headline) -> dict[str, Any]:
    """06's summary entry of the primary contrast (its scope and units), read from the headline's sources."""
    for source in h.sources:
        if not source.endswith(".summary.json"):
            continue
        try:
            summary = json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for group in ("arms", "pairs"):
            for entry in (summary.get(group) or {}).values():
                if entry.get("primary"):
                    return entry
    return {}


def results_table(h: Headline, report: Path | None = None) -> str:
    """The terminal's closing summary: primary contrast, accuracy per arm, planted verdict, each with its estimand."""
    lines = [f"results of run {h.run_id} ({h.profile}, {h.status})"]
    lines += [f"  known answer       {k.text()}" for k in h.known_answer]
    lines.append(f"  primary contrast   {contrast_text(h.primary)}")
    if h.primary and h.primary.get("win_rate") is not None and not h.primary.get("uninformative"):
        lines.append("                     " + scope_text(_primary_record(h), "units: win rate of judged questions "
                                                                              "(1 win, ½ tie), clustered by clause"))
    if h.accuracy:
        lines.append(f"  held-out accuracy  ({accuracy_scope(h.accuracy)}; units: share of held-out raters' pairs "
                     "ranked as the rater chose)")
        lines += [f"    {arm:<16} {accuracy_text(v)}" for arm, v in h.accuracy.items()]
    lines.append(f"  planted effect     {planted_text(h)}")
    if h.planted and h.planted.get("ci_low") is not None:
        p = h.planted
        lines.append(f"                     difference {p['difference']:+.3f} [{p['ci_low']:+.3f}, {p['ci_high']:+.3f}] "
                     f"in the share preferring the planted style, {p.get('raters')} held-out raters, "
                     f"interval {p.get('estimand') or CONDITIONAL}")
    if report:
        lines.append(f"  report             {report}")
    return "\n".join(lines)
