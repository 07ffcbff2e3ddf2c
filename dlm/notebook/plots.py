"""Figures shown inline by the notebooks. Each returns its matplotlib Figure."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dlm.sortition import PanelConfig, Pool, composition


def _grid(n: int, width: float = 4.2, height: float = 3.2, cols: int = 2):
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def shares_vs_targets(survey: pd.DataFrame, config: PanelConfig, locale_pool: pd.DataFrame | None = None):
    """Each quota attribute's shares: all PRISM participants, the configured locale, and the target."""
    fig, axes = _grid(len(config.attributes))
    for ax, attr in zip(axes, config.attributes, strict=False):
        cats = list(attr.categories)
        frame = pd.DataFrame({"PRISM (all)": survey[attr.column].value_counts(normalize=True)})
        if locale_pool is not None:
            frame[f"locale {','.join(config.locale_filter or ['all'])}"] = locale_pool[attr.column].value_counts(
                normalize=True)
        if attr.proportions:
            frame = frame.join(pd.Series(attr.proportions, name="target"), how="outer")
        frame = frame.reindex(cats + [c for c in frame.index if c not in cats]).fillna(0)
        frame.plot.barh(ax=ax, width=0.8)
        ax.invert_yaxis()
        ax.set_title(attr.name)
        ax.set_xlabel("share")
        ax.set_ylabel("")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def subset_vs_pool(pool_df: pd.DataFrame, subset_df: pd.DataFrame, columns: list[str], subset_name: str,
                   pool_name: str):
    """Shares of a subset (e.g. US-REP) against the pool it was drawn from."""
    fig, axes = _grid(len(columns))
    for ax, col in zip(axes, columns, strict=False):
        frame = pd.DataFrame({pool_name: pool_df[col].value_counts(normalize=True),
                              subset_name: subset_df[col].value_counts(normalize=True)}).fillna(0)
        frame.plot.barh(ax=ax, width=0.8)
        ax.invert_yaxis()
        ax.set_title(col)
    fig.tight_layout()
    return fig


def composition_plot(pool: Pool, probabilities: np.ndarray | None = None, panel: list[str] | None = None,
                     label_size: float = 7, panel_width: float = 4.8, panel_height: float = 3.4):
    """Target vs pool vs panel (and expected Σπ/k) per quota category, with the quota range as a band."""
    comp = composition(pool, probabilities, panel)
    attrs = list(dict.fromkeys(comp["attribute"]))
    fig, axes = _grid(len(attrs), width=panel_width, height=panel_height)
    for ax, attr in zip(axes, attrs, strict=False):
        c = comp[comp["attribute"] == attr].reset_index(drop=True)
        y = np.arange(len(c))
        ax.barh(y, (c["max"] - c["min"]) / pool.k, left=c["min"] / pool.k, color="0.85", label="quota range")
        series = [("target", "k", "|"), ("pool_share", "tab:blue", "o")]
        series += [("expected_share", "tab:green", "D")] if "expected_share" in c else []
        series += [("panel_share", "tab:red", "x")] if "panel_share" in c else []
        for col, color, marker in series:
            ax.scatter(c[col], y, color=color, marker=marker, label=col.replace("_", " "), zorder=3)
        ax.set_yticks(y, c["category"], fontsize=label_size)
        ax.invert_yaxis()
        ax.set_title(attr)
        ax.set_xlabel("share of panel / pool")
        ax.tick_params(axis="x", labelsize=label_size)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=label_size, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))  # room for the legend above the panels
    return fig


def probability_distributions(probs: dict[str, np.ndarray], k: int, n: int):
    """Sorted selection probabilities per algorithm: LEGACY's spread against LEXIMIN's floor."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, p in probs.items():
        ax1.plot(np.sort(p), label=f"{name} (min {p.min():.3f})")
        ax2.hist(p, bins=40, alpha=0.5, label=name)
    for ax in (ax1, ax2):
        ax.axhline(k / n, color="k", ls=":", lw=1) if ax is ax1 else ax.axvline(k / n, color="k", ls=":", lw=1)
        ax.legend(fontsize=8)
    ax1.set_xlabel("pool member (sorted)")
    ax1.set_ylabel("selection probability")
    ax1.set_title("sorted selection probabilities (dotted: k/n)")
    ax2.set_xlabel("selection probability")
    ax2.set_title("distribution")
    fig.tight_layout()
    return fig


def dataset_overview(datasets: dict[str, Any]):
    """Pairs per rater, weight distribution and effective sample size per preference dataset."""
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.6))
    names = list(datasets)
    for name in names:
        rows = pd.DataFrame(datasets[name].rows)
        ax1.hist(rows.groupby("user_id").size(), bins=30, alpha=0.5, label=name)
        ax2.hist(rows["weight"], bins=40, alpha=0.5, label=name)
    counts = [datasets[n].counts for n in names]
    x = np.arange(len(names))
    ax3.bar(x - 0.2, [c["rows"] for c in counts], width=0.4, label="rows")
    ax3.bar(x + 0.2, [c["effective_sample_size"] for c in counts], width=0.4, label="Kish ESS")
    ax3.set_xticks(x, names)
    ax1.set_title("pairs per rater")
    ax2.set_title("row weights")
    ax2.set_yscale("log")
    ax3.set_title("rows vs effective sample size")
    for ax in (ax1, ax2, ax3):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def dataset_composition(table: pd.DataFrame):
    """Per attribute: target vs Σπ over people vs Σweight over rows, for each dataset."""
    attrs = list(dict.fromkeys(table["attribute"]))
    fig, axes = _grid(len(attrs), width=5.0, height=3.4)
    for ax, attr in zip(axes, attrs, strict=False):
        t = table[table["attribute"] == attr].pivot_table(index="category", columns="measure", values="share",
                                                          sort=False)
        t.plot.barh(ax=ax, width=0.8)
        ax.invert_yaxis()
        ax.set_title(attr)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def training_curves(histories: dict[str, list[dict]]):
    """Loss, reward margin and preference accuracy per logged step, one line per trained dataset."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for name, history in histories.items():
        steps = [h for h in history if "loss" in h and "rewards/margins" in h]
        x = [h["step"] for h in steps]
        for ax, key in zip(axes, ("loss", "rewards/margins", "rewards/accuracies"), strict=True):
            ax.plot(x, [h[key] for h in steps], marker=".", label=name)
    for ax, title in zip(axes, ("DPO loss (weighted)", "reward margin", "preference accuracy (batch)"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def forest(pairs: dict[str, dict]):
    """Overall win rate of model_a over model_b per pair, with its 95% cluster-robust interval."""
    names = list(pairs)
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.2))
    y = np.arange(len(names))
    for i, n in enumerate(names):
        p = pairs[n]
        color = "tab:red" if p.get("primary") else "tab:blue"
        if p.get("uninformative"):  # no interval to draw: a hollow grey point, labelled, not a finding
            ax.plot(p["win_rate"], i, "o", mfc="none", color="0.6")
            continue
        ax.errorbar(p["win_rate"], i, xerr=[[p["win_rate"] - p["ci_low"]], [p["ci_high"] - p["win_rate"]]], fmt="o",
                    color=color, capsize=3)
    ax.axvline(0.5, color="k", ls=":", lw=1)
    ax.set_yticks(y, [n + (" (primary)" if pairs[n].get("primary") else "")
                      + (" — uninformative" if pairs[n].get("uninformative") else "") for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate of the first model (ties = ½), 95% CI clustered by clause")
    fig.tight_layout()
    return fig


def clause_win_rates(clauses: pd.DataFrame, pair: str):
    """Per-clause win rates with Wilson intervals for one pair; Holm-significant clauses marked."""
    c = clauses[clauses["pair"] == pair].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, 3.4))
    x = np.arange(len(c))
    flag = c["uninformative"].astype(bool) if "uninformative" in c else pd.Series(False, index=c.index)
    for mask, style in ((~flag, {"fmt": "o"}), (flag, {"fmt": "o", "mfc": "none", "color": "0.6"})):
        ax.errorbar(x[mask], c["win_rate"][mask], yerr=[(c["win_rate"] - c["ci_low"])[mask],
                                                         (c["ci_high"] - c["win_rate"])[mask]], capsize=2, **style)
    for i, row in c.iterrows():
        if row["p_holm"] < 0.05:
            ax.annotate("*", (i, row["ci_high"]), ha="center")
    ax.axhline(0.5, color="k", ls=":", lw=1)
    ax.set_xticks(x, c["clause_id"], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_xlabel("clause")
    ax.set_ylabel("win rate")
    ax.set_title(f"{pair}: per clause (Wilson 95% CI; * Holm p < 0.05; grey: uninformative, "
                 "too few decisive outcomes to test)", fontsize=9)
    fig.tight_layout()
    return fig


def bradley_terry_plot(bt: dict[str, dict]):
    """Bradley–Terry log-strengths with cluster-robust 95% intervals (a prior-based fit is marked)."""
    names = sorted(bt, key=lambda m: -bt[m]["rating"])
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    for i, m in enumerate(names):
        r = bt[m]
        ax.errorbar(r["rating"], i, xerr=[[r["rating"] - r["ci_low"]], [r["ci_high"] - r["rating"]]], fmt="o",
                    capsize=3)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="k", ls=":", lw=1)
    if any(r.get("prior_used") for r in bt.values()):
        ax.set_title("some model won or lost every comparison: weak prior (MAP), not the MLE", fontsize=8)
    ax.set_xlabel("Bradley–Terry log-strength (mean 0)")
    fig.tight_layout()
    return fig


def consistency_and_length(pairs: dict[str, dict]):
    """Judge inconsistency across orders, and length difference vs raw and length-controlled win rate."""
    names = list(pairs)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 1.8))
    y = np.arange(len(names))
    ax1.barh(y, [pairs[n]["inconsistency_rate"] or 0 for n in names])
    ax1.set_yticks(y, names, fontsize=7)
    ax1.invert_yaxis()
    ax1.set_xlim(0, 1)
    ax1.set_title("judge inconsistency (verdict changes when order swaps)")
    ax2.scatter([pairs[n]["mean_length_difference"] for n in names], [pairs[n]["win_rate"] for n in names],
                label="raw win rate")
    ax2.scatter([pairs[n]["mean_length_difference"] for n in names],
                [pairs[n]["length_controlled_win_rate"] for n in names], marker="x", label="length-controlled")
    ax2.axhline(0.5, color="k", ls=":", lw=1)
    ax2.set_xlabel("mean answer length difference (chars, first − second)")
    ax2.set_ylabel("win rate")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_overall(accuracy: dict[str, dict[str, Any]], base: str = "base"):
    """Held-out accuracy per arm (rows) with its interval, the base model as a reference line.

    Takes the `accuracy` of 07's summary file, so the plot shows the numbers the report and terminal print.
    """
    arms = [a for a in accuracy if a != base] + ([base] if base in accuracy else [])
    fig, ax = plt.subplots(figsize=(6.4, 0.32 * len(arms) + 1.1))
    for i, arm in enumerate(arms):
        v = accuracy[arm]
        if v.get("estimate") is None:
            continue
        lo, hi = v.get("ci_low", v["estimate"]), v.get("ci_high", v["estimate"])
        ax.errorbar(v["estimate"], i, xerr=[[v["estimate"] - lo], [hi - v["estimate"]]], fmt="o", capsize=3,
                    color="0.4" if arm == base else "tab:blue")
    if accuracy.get(base, {}).get("estimate") is not None:
        ax.axvline(accuracy[base]["estimate"], color="0.4", ls="--", lw=1, label=f"{base} (untrained)")
        ax.legend(fontsize=9, loc="lower right")
    ax.axvline(0.5, color="k", ls=":", lw=1)
    ax.set_yticks(range(len(arms)), arms, fontsize=10)
    ax.invert_yaxis()
    ax.set_xlabel("held-out preference accuracy, 95% CI clustered by rater", fontsize=10)
    fig.tight_layout()
    return fig


def accuracy_by_group(table: pd.DataFrame, base: str = "base", cols: int = 4):
    """Held-out accuracy per group: one small panel per group, models as rows, the base model as a reference line."""
    t = table[table["attribute"] != "overall"]
    panels = list(dict.fromkeys(zip(t["attribute"], t["group"], strict=True)))
    models = list(dict.fromkeys(table["model"]))
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(12.5, (0.2 * len(models) + 0.9) * rows), squeeze=False,
                             sharex=True, sharey=True)
    y = np.arange(len(models))
    for ax, (attr, group) in zip(axes.ravel(), panels, strict=False):
        r = t[(t["attribute"] == attr) & (t["group"] == group)].set_index("model").reindex(models)
        ax.errorbar(r["accuracy"], y, xerr=[r["accuracy"] - r["ci_low"], r["ci_high"] - r["accuracy"]], fmt="o",
                    ms=3, capsize=1.5, color="tab:blue")
        if base in r.index and pd.notna(r.loc[base, "accuracy"]):
            ax.axvline(r.loc[base, "accuracy"], color="0.4", ls="--", lw=1)
        ax.axvline(0.5, color="k", ls=":", lw=0.8)
        ax.set_title(f"{attr}: {group}", fontsize=9)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    axes[0, 0].set_yticks(y, models, fontsize=8)
    axes[0, 0].invert_yaxis()
    fig.supxlabel("held-out preference accuracy (dashed: the base model), 95% CI clustered by rater", fontsize=10)
    fig.tight_layout()
    return fig


def question_diversity(table: pd.DataFrame):
    """Per clause: near-duplicates removed, and diversity (self-ROUGE-L, lower is more diverse; distinct-2)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.2))
    ax1.bar(table["clause"], table["near-duplicates removed"])
    ax1.set_ylim(0, max(1, int(table["near-duplicates removed"].max()) + 1))
    ax1.set_title("near-duplicates removed (ROUGE-L F1 ≥ 0.7)")
    ax1.set_xlabel("clause")
    ax2.plot(table["clause"], table["self_rouge_l"], marker="o", label="self-ROUGE-L")
    ax2.plot(table["clause"], table["distinct_2"], marker="s", label="distinct-2")
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("clause")
    ax2.set_title("diversity within each clause")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return fig
