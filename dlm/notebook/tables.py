"""Tables for people: a few formatted columns per row; uninformative rows collapsed into one line that says why."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import pandas as pd
from IPython.display import HTML

from dlm.pipeline.report import estimand_text

UNINFORMATIVE_WHY = "all ties, all one way, or too few clauses: no interval to report"


def _interval(low: Any, high: Any) -> str:
    return "" if low is None or high is None or pd.isna(low) or pd.isna(high) else f"[{low:.3f}, {high:.3f}]"


@dataclass(frozen=True)
class ContrastTable:
    """06's contrasts for reading: informative rows formatted, the rest named in one sentence."""

    table: pd.DataFrame  # contrast, win rate, 95% interval, p, units, estimand, flag
    uninformative: tuple[str, ...]

    def note(self) -> str:
        """The collapsed rows in one line ("" when every contrast is informative)."""
        if not self.uninformative:
            return ""
        return (f"{len(self.uninformative)} contrast(s) uninformative ({UNINFORMATIVE_WHY}): "
                + ", ".join(self.uninformative) + ".")


def contrast_table(contrasts: dict[str, dict[str, Any]]) -> ContrastTable:
    """Format a summary's `arms` (or `pairs`): estimate, interval, p (Holm for secondaries), units, estimand, flag."""
    rows, dropped = [], []
    for name, v in contrasts.items():
        label = name + (" (primary)" if v.get("primary") else "")
        if v.get("uninformative") or v.get("ci_low") is None:
            dropped.append(label)
            continue
        p = v.get("p_value") if v.get("primary") else v.get("p_holm_secondary", v.get("p_value"))
        rows.append({"contrast": label, "win rate": f"{v['win_rate']:.3f}",
                     "95% interval": _interval(v.get("ci_low"), v.get("ci_high")),
                     "p": "" if p is None or pd.isna(p) else f"{p:.3g}" + ("" if v.get("primary") else " (Holm)"),
                     "units": v.get("units", ""), "estimand": estimand_text(v.get("estimand"), v.get("units")),
                     "flag": "primary" if v.get("primary") else "secondary"})
    columns = ["contrast", "win rate", "95% interval", "p", "units", "estimand", "flag"]
    return ContrastTable(pd.DataFrame(rows, columns=columns).set_index("contrast"), tuple(dropped))


def _with_interval(value: Any, low: Any, high: Any) -> str:
    """'0.620 [0.540, 0.700]', or the value alone with why there is no interval."""
    if value is None or pd.isna(value):
        return "n/a"
    interval = _interval(low, high)
    return f"{value:.3f} {interval}" if interval else f"{value:.3f} (no interval: uninformative)"


def modes_table(pairs: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """06's pairwise and listwise side by side (`listwise.compare_modes`), one row per declared contrast."""
    rows = {key: {"pairwise win rate": _with_interval(p["direct"], p["direct_low"], p["direct_high"]),
                  "ranked above (listwise)": _with_interval(p["ranked_above"], p["ranked_above_low"],
                                                            p["ranked_above_high"]),
                  "implied by Plackett–Luce": _with_interval(p["implied"], p["implied_low"], p["implied_high"]),
                  "flag": "primary" if p["primary"] else "secondary"} for key, p in pairs.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def without_empty_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The table without its columns that hold no value (NaN in every row: what this design cannot estimate)."""
    return table.loc[:, table.notna().any()]


def variance_details(table: pd.DataFrame, title: str) -> HTML | None:
    """Technical columns for readers who want them: an expandable section, or None when none holds a value."""
    shown = without_empty_columns(table)
    if shown.empty:
        return None
    return HTML(f"<details><summary>{html.escape(title)}</summary>{shown.round(4).to_html()}</details>")


def accuracy_table(accuracy: pd.DataFrame) -> pd.DataFrame:
    """07's accuracy per arm (accuracy_by_arm) for reading: estimate, interval, runs, between-model SD."""
    out = pd.DataFrame({"accuracy": accuracy["estimate"].map("{:.3f}".format),
                        "95% interval": [_interval(lo, hi) for lo, hi in zip(accuracy["ci_low"], accuracy["ci_high"],
                                                                               strict=True)],
                        "runs": accuracy["runs"],
                        "estimand": ["conditional on the trained model" if r < 2 else f"over {r} trained models"
                                     for r in accuracy["runs"]]})
    out.index = accuracy["arm"] if "arm" in accuracy else accuracy.index
    return out
