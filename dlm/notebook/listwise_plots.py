"""Figures of listwise judging for 06: Plackett–Luce worths, mean rank heatmap, clause difficulty, consistency."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def worths_plot(summary: dict[str, Any]):
    """Plackett–Luce worths (geometric mean 1, log scale) with clause-bootstrap 95% intervals, best at the top."""
    models = summary["models"]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(models) + 1.2))
    for i, m in enumerate(models):
        ax.errorbar(m["worth"], i, xerr=[[m["worth"] - m["worth_low"]], [m["worth_high"] - m["worth"]]], fmt="o",
                    capsize=3)
    ax.set_yticks(range(len(models)), [m["model"] for m in models], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1, color="k", ls=":", lw=1)
    if summary.get("prior_used"):
        ax.set_title("some model was always first or last: weak prior (MAP), not the MLE", fontsize=8)
    ax.set_xlabel("Plackett–Luce worth (geometric mean 1; intervals resample clauses)")
    fig.tight_layout()
    return fig


def mean_rank_heatmap(table: pd.DataFrame):
    """Clause × model mean rank (1 = best), darker is better."""
    fig, ax = plt.subplots(figsize=(0.7 * table.shape[1] + 2.5, 0.32 * table.shape[0] + 1.5))
    image = ax.imshow(table.to_numpy(), cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(table.shape[0]), table.index, fontsize=7)
    ax.set_ylabel("clause")
    fig.colorbar(image, ax=ax, label="mean rank (1 = best)")
    fig.tight_layout()
    return fig


def difficulty_and_consistency(difficulty: pd.Series, consistency: pd.DataFrame):
    """Left: spread of the models' mean ranks per clause; right: per model, same rank across display orders."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.3 * max(len(difficulty), len(consistency)) + 1.8))
    ax1.barh(np.arange(len(difficulty)), difficulty.to_numpy())
    ax1.set_yticks(range(len(difficulty)), difficulty.index, fontsize=7)
    ax1.set_xlabel("SD of the models' mean ranks (0: the judge cannot tell them apart)")
    ax1.set_ylabel("clause")
    ax2.barh(np.arange(len(consistency)), consistency["same_rank_share"].to_numpy())
    ax2.set_yticks(range(len(consistency)), consistency.index, fontsize=8)
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("share of questions ranked the same in every display order")
    fig.tight_layout()
    return fig
