"""Rankings drawn from a known Plackett–Luce model with a clause random effect, and balanced display orders."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from dlm.stats.ranking.records import RankingError, RankingRecord


def balanced_display_orders(models: Sequence[str], n_questions: int, k_orders: int,
                            seed: int) -> list[list[tuple[str, ...]]]:
    """K display orders per question: cyclic rotations of one seeded order, every model in every position equally often.

    Question q's o-th order is the base order rotated by q·K + o places, so across the question set
    each model sits in each position ⌊n·K/m⌋ or ⌈n·K/m⌉ times (exactly n·K/m when m divides n·K), and
    the K orders of one question put every model in K different positions (when K ≤ m).
    """
    if k_orders < 1 or n_questions < 0:
        raise RankingError(f"need at least one display order per question, got {k_orders}")
    base = [models[i] for i in np.random.default_rng(seed).permutation(len(models))]
    m = len(base)
    return [[tuple(base[(q * k_orders + o + j) % m] for j in range(m)) for o in range(k_orders)]
            for q in range(n_questions)]


def simulate_rankings(worths: Mapping[str, float], n_clauses: int, questions_per_clause: int,
                      orders_per_question: int = 1, clause_sd: float = 0.0,
                      position_effect: Sequence[float] = (), judge_model: str = "simulated",
                      seed: int = 0) -> list[RankingRecord]:
    """Strict rankings drawn from Plackett–Luce (Gumbel trick), one per question per display order.

    Args:
        worths: true worth of each model (positive); log-worths enter the utilities.
        clause_sd: SD of a per-clause, per-model normal shift of the log-worths (clauses differ).
        position_effect: added to the log-worth of the model shown at position 0, 1, ... (position bias).
    """
    names = list(worths)
    log_w = np.log(np.array([worths[name] for name in names], float))
    m = len(names)
    bias = np.zeros(m)
    bias[:len(position_effect)] = np.asarray(position_effect, float)[:m]
    rng = np.random.default_rng(seed)
    n_questions = n_clauses * questions_per_clause
    orders = balanced_display_orders(names, n_questions, orders_per_question, seed)
    index = {name: j for j, name in enumerate(names)}
    records = []
    for c in range(n_clauses):
        clause_shift = rng.normal(0.0, clause_sd, m) if clause_sd > 0 else np.zeros(m)
        for q in range(questions_per_clause):
            question = c * questions_per_clause + q
            for shown in orders[question]:
                columns = [index[name] for name in shown]
                utility = log_w[columns] + clause_shift[columns] + bias + rng.gumbel(size=m)
                ranking = tuple((shown[j],) for j in np.argsort(-utility, kind="stable"))
                records.append(RankingRecord(f"q{question:04d}", f"c{c:03d}", judge_model, tuple(shown), ranking))
    return records
