"""Simulated replicate designs for coverage checks: effects shared by the models of one draw and of one seed."""

from __future__ import annotations

import numpy as np

from dlm.arms import replicates
from dlm.stats import pooling

DRAWN = ("hard", "contrast")
ARMS = ("hard", "contrast", "soft", "soft_leximin")
CONTRASTS = (("hard", "contrast"), ("soft", "hard"), ("soft_leximin", "soft"))
# (draw SD, seed SD): the spread of a trained model's win rate (or accuracy) across panel draws and seeds
SETTINGS = {"draw-dominated": (0.06, 0.02), "seed-dominated": (0.02, 0.06), "mixed": (0.04, 0.04)}


def cell_seed(draws: int, seeds: int, size: int, contrast: int) -> int:
    """The seed of one grid cell (design, clauses or raters, the contrast's index in CONTRASTS)."""
    return draws * 1000 + seeds * 100 + size + contrast


def contrast_pairs(a: str, b: str, draws: int, seeds: int) -> list[tuple[str, str]]:
    """The judged pairs of one arm contrast, as `replicates.matched_pairs` builds them."""
    runs = replicates.runs(list(ARMS), draws, seeds, drawn=DRAWN)
    return replicates.matched_pairs(list(ARMS), runs, base=None, contrasts=[(a, b)])


def model_effects(names: list[str], reps: int, draw_sd: float, seed_sd: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(reps, models) effects: a drawn arm's draw effect shared by its seeds, a per-model seed effect, and a
    seed-index effect shared by every model trained with that seed; also the effects without the shared
    seed-index part, and each model's draw effect alone."""
    runs = [replicates.parse_run(n) for n in names]
    datasets = sorted({(r.arm, r.draw) for r in runs if r.arm in DRAWN})
    draw = dict(zip(datasets, rng.normal(0, draw_sd, (len(datasets), reps)), strict=True))
    seed_index = {s: rng.normal(0, seed_sd / 2, reps) for s in sorted({r.seed for r in runs})}
    own = rng.normal(0, seed_sd, (len(names), reps))
    zero = np.zeros(reps)
    draw_part = {n: draw.get((r.arm, r.draw), zero) for n, r in zip(names, runs, strict=True)}
    own = own.T + np.stack([draw_part[n] for n in names], 1)  # what the model carries of its own
    shared = np.stack([seed_index[r.seed] for r in runs], 1)  # cancels in pairs matched seed for seed
    return own + shared, own, draw_part


def truth(design, names: list[str], effects: np.ndarray, draw_part: dict[str, np.ndarray], side: str) -> np.ndarray:
    """The part of one side's effect the estimand is conditional on (0 where it averages over it)."""
    models = design.model_a if side == "a" else design.model_b
    index = {n: i for i, n in enumerate(names)}
    first = models[0]
    if first in design.conditional_on:  # conditional on this arm's one model
        return effects[:, index[first]]
    arm = replicates.arm_of(first)
    if f"{arm}'s one panel draw" in design.conditional_on:
        return draw_part[first]
    return np.zeros(effects.shape[0])


def binary_means(p: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Means of n Bernoulli(p) outcomes (p clipped to [0, 1]), one per cell of p."""
    return rng.binomial(n, np.clip(p, 0, 1)) / n


def win_table(pairs, G: int, reps: int, draw_sd: float, seed_sd: float, seed: int, clause_sd: float = 0.05,
              Q: int = 10, ties: float = 0.4, answer_sd: float = 0.0):
    """(reps, J, G) clause mean scores of an arm contrast (win 1, tie ½, loss 0), its design and its truth.

    `answer_sd` > 0: each model's answer to each of the Q questions of a clause shifts its win
    probability by its own normal effect, shared by every pair the model is in (as a soft model's
    answers are shared by its R pairs in 06); 0: every pair's outcomes are drawn apart.
    """

    rng = np.random.default_rng(seed)
    names = list(dict.fromkeys([a for a, _ in pairs] + [b for _, b in pairs]))
    effects, own, draw_part = model_effects(names, reps, draw_sd, seed_sd, rng)
    index = {n: i for i, n in enumerate(names)}
    ia, ib = [index[a] for a, _ in pairs], [index[b] for _, b in pairs]
    p_win = (1 - ties) / 2 + (effects[:, ia] - effects[:, ib])[:, :, None] + rng.normal(0, clause_sd, (reps, 1, G))
    if answer_sd > 0:
        answers = rng.normal(0, answer_sd, (reps, len(names), G, Q))
        p = np.clip(p_win[..., None] + answers[:, ia] - answers[:, ib], 0, 1 - ties)
        u = rng.random(p.shape)  # one judgment per question: win below p, tie in [p, p + ties)
        table = np.where(u < p, 1.0, np.where(u < p + ties, 0.5, 0.0)).mean(3)
    else:
        p_win = np.clip(p_win, 0, 1 - ties)
        wins = rng.binomial(Q, p_win)
        tied = rng.binomial(Q - wins, np.minimum(ties / np.maximum(1 - p_win, 1e-9), 1))
        table = (wins + tied / 2) / Q
    design = pooling.contrast_design([a for a, _ in pairs], [b for _, b in pairs], drawn=DRAWN)
    estimand = 0.5 + truth(design, names, own, draw_part, "a") - truth(design, names, own, draw_part, "b")
    return table, design, estimand


def difference_table(pairs, raters: int, reps: int, draw_sd: float, seed_sd: float, seed: int, n: int = 8,
                     rater_sd: float = 0.1, accuracy: float = 0.6):
    """(reps, J, raters) mean agreement differences (arm A run − arm B run) over n held-out pairs per rater."""

    rng = np.random.default_rng(seed)
    names = list(dict.fromkeys([a for a, _ in pairs] + [b for _, b in pairs]))
    effects, own, draw_part = model_effects(names, reps, draw_sd, seed_sd, rng)
    index = {m: i for i, m in enumerate(names)}
    rater = accuracy + rng.normal(0, rater_sd, (reps, 1, raters))
    p = np.clip(rater[:, None] + effects[:, :, None, None], 0, 1)  # (reps, models, 1, raters)
    agree = rng.binomial(n, np.broadcast_to(p[:, :, 0], (reps, len(names), raters))) / n
    ia, ib = [index[a] for a, _ in pairs], [index[b] for _, b in pairs]
    table = agree[:, ia] - agree[:, ib]
    design = pooling.contrast_design([a for a, _ in pairs], [b for _, b in pairs], drawn=DRAWN)
    estimand = truth(design, names, own, draw_part, "a") - truth(design, names, own, draw_part, "b")
    return table, design, estimand
