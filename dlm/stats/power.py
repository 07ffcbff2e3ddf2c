"""Power before spending: the smallest primary effect a design can detect, and what clause-level tests can reach.

The minimum detectable effect (MDE) is found by simulation with the very estimator 06 reports
(`dlm.pooling.pooled_estimates`, vectorised over repetitions): each repetition draws a random
effect for every trained model (SD `model_sd`, both arms), a shift per clause (SD `clause_sd`) and
every question's outcome (win, tie or loss: under the both-orders rule a question is a tie when
the judge ties or when the two orders disagree); the primary contrast is significant when its
two-sided p < α. Power rises with the true win rate, and the simulation reuses the same random
numbers at every win rate (common random numbers), so the MDE — the smallest win rate − ½ with
power ≥ 80% — is found by bisection in seconds.

Clause level: a sign test on Q questions can reach at best p = 2·½^Q (every question decisive and
one way), and Holm's first threshold over m clause tests is α/m, so no clause-level finding is
possible unless 2·½^Q ≤ α/m, i.e. Q ≥ log2(2m/α).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dlm.arms import replicates
from dlm.arms.replicates import parse_run
from dlm.stats.pooling import contrast_design, pooled_estimates


@dataclass(frozen=True)
class PowerDesign:
    """What the power of a comparison depends on (rates are shares of questions)."""

    pairs: tuple[tuple[str, str], ...]  # the primary contrast's judged model pairs (arm A model, arm B model)
    clauses: int
    questions_per_clause: int
    both_orders: bool = True
    tie_rate: float = 0.1  # the judge's ties among verdicts that agree across orders
    inconsistency_rate: float = 0.35  # questions whose two orders disagree (a tie under the both-orders rule)
    model_sd: float = 0.05  # SD of a trained model's win rate across training seeds of one dataset (assumed)
    clause_sd: float = 0.05  # SD of the win rate across clauses (assumed)
    clause_tests: int = 1  # clause-level tests in the Holm family (clauses × judged pairs × judges)
    draw_sd: float = 0.0  # SD of a dataset's effect across panel draws, shared by its seeds (arms with several draws)
    drawn: tuple[str, ...] = ()  # arms that depend on a panel draw (one draw seen: conditional on it)

    @property
    def tie_share(self) -> float:
        """Share of questions scored ½."""
        if self.both_orders:
            return self.inconsistency_rate + (1 - self.inconsistency_rate) * self.tie_rate
        return self.tie_rate


@dataclass(frozen=True)
class PowerResult:
    """The primary contrast's MDE and the clause-level ceiling."""

    design: PowerDesign
    mde: float  # smallest win rate − ½ detected with probability ≥ `power`
    power: float
    alpha: float
    reps: int
    estimand: str
    units: int  # independent units of between-model variation (their df is units − 1)
    smallest_clause_p: float
    holm_threshold: float
    questions_needed: int

    def lines(self) -> list[str]:
        """Plain-language lines for preflight and notebook 06."""
        d = self.design
        mde = (f"{self.mde:.3f} (win rate {0.5 + self.mde:.3f})" if math.isfinite(self.mde)
               else f"none ({self.units} independent units of trained models give the interval "
                    f"{max(self.units - 1, 0)} df, and {d.tie_share:.0%} of questions are ties; train more seeds "
                    "or draws of the arm with fewest models)")
        lines = [f"Primary contrast ({len(d.pairs)} model pairs, {d.clauses} clauses × {d.questions_per_clause} "
                 f"questions, {'both orders' if d.both_orders else 'one order'}, {d.tie_share:.0%} of questions "
                 f"ties, model SD {d.model_sd}, clause SD {d.clause_sd}; {self.estimand} interval): smallest win "
                 f"rate − ½ detected with {self.power:.0%} power at α = {self.alpha}: {mde} "
                 f"[simulation, {self.reps} repetitions]",
                 f"Clause level: the smallest possible p ({self.smallest_clause_p:.2g}, every one of "
                 f"{d.questions_per_clause} questions won) against Holm's first threshold over {d.clause_tests} "
                 f"clause tests ({self.holm_threshold:.2g}): "
                 + ("a clause-level finding is possible" if self.smallest_clause_p <= self.holm_threshold else
                    f"no clause-level finding is possible; it needs at least {self.questions_needed} questions "
                    "per clause")]
        return lines


def _cell_scores(design: PowerDesign, delta: float, draws: dict[str, np.ndarray]) -> np.ndarray:
    """(N, J, G) clause mean scores at true win rate ½ + delta, from shared random numbers."""
    decisive = 1 - design.tie_share
    p_win = np.clip(decisive / 2 + delta + draws["pair"], 0, decisive)[..., None]  # (N, J, G, 1)
    u = draws["u"]
    score = np.where(u < p_win, 1.0, np.where(u < p_win + design.tie_share, 0.5, 0.0))
    return score.mean(-1)


def _draws(design: PowerDesign, reps: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    model_a, model_b = [a for a, _ in design.pairs], [b for _, b in design.pairs]
    ia = np.unique(model_a, return_inverse=True)[1]
    ib = np.unique(model_b, return_inverse=True)[1]
    alpha = rng.normal(0, design.model_sd, (reps, ia.max() + 1))
    beta = rng.normal(0, design.model_sd, (reps, ib.max() + 1))
    clause = rng.normal(0, design.clause_sd, (reps, 1, design.clauses))
    pair = (alpha[:, ia] - beta[:, ib])[:, :, None] + clause
    if design.draw_sd > 0:  # models of one dataset (arm, draw) share its draw effect
        runs = [parse_run(m) for m in model_a + model_b]
        draws: dict[str, set[int]] = {}
        for r in runs:
            draws.setdefault(r.arm, set()).add(r.draw)
        keys = [(r.arm, r.draw) if len(draws[r.arm]) >= 2 else None for r in runs]
        levels = sorted({k for k in keys if k is not None})
        effect = rng.normal(0, design.draw_sd, (reps, len(levels) + 1))
        effect[:, -1] = 0  # arms with one dataset: no draw variation
        idx = np.array([levels.index(k) if k is not None else len(levels) for k in keys])
        J = len(model_a)
        pair = pair + (effect[:, idx[:J]] - effect[:, idx[J:]])[:, :, None]
    u = rng.random((reps, len(design.pairs), design.clauses, design.questions_per_clause))
    return {"pair": pair, "u": u}


def power_at(design: PowerDesign, delta: float, reps: int = 2000, seed: int = 0, alpha: float = 0.05) -> float:
    """Share of simulated experiments whose primary contrast has p < alpha at true win rate ½ + delta."""
    cd = contrast_design([a for a, _ in design.pairs], [b for _, b in design.pairs], design.drawn or None)
    est = pooled_estimates(_cell_scores(design, delta, _draws(design, reps, seed)), cd)
    return float(np.mean(est["p_value"] < alpha))


def minimum_detectable_effect(design: PowerDesign, power: float = 0.8, alpha: float = 0.05, reps: int = 2000,
                              seed: int = 0, tol: float = 0.002) -> PowerResult:
    """The MDE of the primary contrast by simulation, and the clause-level ceiling."""
    cd = contrast_design([a for a, _ in design.pairs], [b for _, b in design.pairs], design.drawn or None)
    draws = _draws(design, reps, seed)

    def power_of(delta: float) -> float:
        return float(np.mean(pooled_estimates(_cell_scores(design, delta, draws), cd)["p_value"] < alpha))

    # Search below the largest effect the outcome model allows (every decisive question won):
    # at that bound every score is equal and the result is uninformative, not significant.
    lo, hi = 0.0, 0.95 * (1 - design.tie_share) / 2
    if power_of(hi) < power:
        mde = float("inf")
    else:
        while hi - lo > tol:
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if power_of(mid) >= power else (mid, hi)
        mde = hi
    q = design.questions_per_clause
    smallest = 2 * 0.5**q
    threshold = alpha / max(design.clause_tests, 1)
    needed = math.ceil(math.log2(2 * max(design.clause_tests, 1) / alpha))
    return PowerResult(design, mde, power, alpha, reps, cd.estimand, cd.units, smallest, threshold, needed)


def design_from_summary(summary: dict, arms: dict[str, str], primary: tuple[str, str], model_sd: float = 0.05,
                        clause_sd: float = 0.05) -> PowerDesign:
    """The design an evaluation summary actually ran for its primary arm contrast, with its observed rates."""
    a_arm, b_arm = primary
    pairs, ties, inconsistent, questions, clauses = [], [], [], [], []
    for p in summary["pairs"].values():
        arm_a, arm_b = arms.get(p["model_a"], p["model_a"]), arms.get(p["model_b"], p["model_b"])
        if p.get("judge") not in (None, summary["judges"][0]):
            continue
        if (arm_a, arm_b) == (a_arm, b_arm):
            pairs.append((p["model_a"], p["model_b"]))
        elif (arm_b, arm_a) == (a_arm, b_arm):
            pairs.append((p["model_b"], p["model_a"]))
        else:
            continue
        ties.append(p["ties"] / p["n_questions"])
        inconsistent.append(p["inconsistency_rate"])
        questions.append(p["n_questions"])
        clauses.append(p["clusters"])
    if not pairs:
        raise ValueError(f"no judged pair compares {a_arm} with {b_arm}")
    both = all(x is not None for x in inconsistent)
    inc = float(np.mean(inconsistent)) if both else 0.0
    tie_share = float(np.mean(ties))
    tie_rate = (tie_share - inc) / (1 - inc) if both and inc < 1 else tie_share
    n_clauses = int(min(clauses))
    return PowerDesign(tuple(pairs), n_clauses, max(1, round(min(questions) / n_clauses)), both, max(tie_rate, 0.0),
                       inc, model_sd, clause_sd, clause_tests=len(summary["clauses"]))


def contrast_mde(arm_a: str, arm_b: str, panel_draws: int, train_seeds: int, clauses: int, questions_per_clause: int,
                 drawn: tuple[str, ...] | list[str] | set[str], draw_sd: float = 0.05, seed_sd: float = 0.03,
                 clause_sd: float = 0.05, tie_rate: float = 0.1, inconsistency_rate: float = 0.35,
                 both_orders: bool = True, power: float = 0.8, alpha: float = 0.05, reps: int = 2000,
                 seed: int = 0) -> PowerResult:
    """The MDE of one declared arm contrast under an R draws × S seeds design, with draws shared by seeds.

    Args:
        arm_a, arm_b: the contrast (arm A judged against arm B), e.g. "soft", "hard".
        panel_draws, train_seeds: R and S of the profile (`panel_draws`, `train_seeds`).
        clauses, questions_per_clause: what 05/06 ask.
        drawn: the arms that depend on a panel draw (`Design.drawn`); the others have one dataset.
        draw_sd, seed_sd: guessed SDs of a model's win rate across panel draws (shared by the seeds of
            one dataset) and across training seeds of one dataset; clause_sd across clauses.
    Returns the PowerResult whose `mde` is inf when no effect reaches `power` (e.g. 2 seeds of an
    undrawn arm: the interval's column term has 1 df).
    """
    runs = replicates.runs([arm_a, arm_b], panel_draws, train_seeds, drawn=drawn)
    pairs = tuple(replicates.matched_pairs([arm_a, arm_b], runs, base=None, contrasts=[(arm_a, arm_b)]))
    design = PowerDesign(pairs, clauses, questions_per_clause, both_orders, tie_rate, inconsistency_rate,
                         model_sd=seed_sd, clause_sd=clause_sd, draw_sd=draw_sd, drawn=tuple(drawn))
    return minimum_detectable_effect(design, power, alpha, reps, seed)
