"""Kemeny consensus: the order with the fewest pairwise disagreements with the rankings.

The disagreement of an order with the data is Σ over pairs i before j of N[j, i], the weight of
rankings putting j above i; a pair tied in a ranking disagrees by ½ with every order (a constant).

Up to EXACT_LIMIT models the optimum is found exactly by the standard integer program (e.g.
Conitzer, Davenport & Kalagnanam 2006): a binary y_ij (i < j) says i comes before j, the objective
is Σ y_ij N[j, i] + (1 − y_ij) N[i, j], and for every triple i < j < k the constraints
0 ≤ y_ij + y_jk − y_ik ≤ 1 rule out the two cyclic orders (transitivity). It is solved by HiGHS
through scipy.optimize.milp. Above the limit a heuristic is used and reported: start from the order
by net pairwise wins (Borda-like) and apply single-model moves to the best position while any
lowers the disagreement (insertion local search); it finds a local optimum, not a certified one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

EXACT_LIMIT = 12  # 66 binaries and 440 constraints at 12 models: HiGHS solves it in well under a second


@dataclass(frozen=True)
class Consensus:
    """A consensus order (model indices, best first), its disagreement with the data, and how it was found."""

    order: tuple[int, ...]
    disagreement: float
    method: str  # "ilp", "heuristic" or "brute force"


def disagreement(order: tuple[int, ...] | list[int], above: np.ndarray, tied: np.ndarray | None = None) -> float:
    """Weighted pairwise disagreements of an order with counts above[i, j] (i ranked above j); ties cost ½."""
    order = np.asarray(order)
    m = len(order)
    later = np.triu(np.ones((m, m), bool), 1)  # later[a, b]: position a before position b
    cost = float(above[np.ix_(order, order)].T[later].sum())
    if tied is not None:
        cost += 0.5 * float(np.triu(tied, 1).sum())
    return cost


def brute_force(above: np.ndarray, tied: np.ndarray | None = None) -> Consensus:
    """The exact optimum by trying every order (first in lexicographic order among equals); for tests."""
    m = above.shape[0]
    best = min(itertools.permutations(range(m)), key=lambda order: disagreement(order, above))
    return Consensus(tuple(best), disagreement(best, above, tied), "brute force")


def _ilp(above: np.ndarray) -> tuple[int, ...]:
    m = above.shape[0]
    pairs = list(itertools.combinations(range(m), 2))
    var = {pair: v for v, pair in enumerate(pairs)}
    cost = np.array([above[j, i] - above[i, j] for i, j in pairs], float)
    rows = []
    for i, j, k in itertools.combinations(range(m), 3):
        row = np.zeros(len(pairs))
        row[var[i, j]], row[var[j, k]], row[var[i, k]] = 1.0, 1.0, -1.0
        rows.append(row)
    constraints = [LinearConstraint(np.array(rows), 0.0, 1.0)] if rows else []
    result = milp(cost, constraints=constraints, integrality=np.ones(len(pairs)), bounds=Bounds(0, 1))
    if not result.success:
        raise RuntimeError(f"HiGHS failed on the Kemeny program: {result.message}")
    y = np.round(result.x).astype(int)
    before = np.zeros(m, int)  # how many models come before each
    for (i, j), v in var.items():
        before[j if y[v] else i] += 1
    return tuple(int(i) for i in np.argsort(before, kind="stable"))


def _local_search(above: np.ndarray) -> tuple[int, ...]:
    net = (above - above.T).sum(1)
    order = [int(i) for i in np.argsort(-net, kind="stable")]
    current = disagreement(order, above)
    improved = True
    while improved:
        improved = False
        for item in list(order):
            rest = [x for x in order if x != item]
            candidates = [rest[:p] + [item] + rest[p:] for p in range(len(order))]
            costs = [disagreement(c, above) for c in candidates]
            best = int(np.argmin(costs))
            if costs[best] < current - 1e-9:
                order, current, improved = candidates[best], costs[best], True
    return tuple(order)


def kemeny(above: np.ndarray, tied: np.ndarray | None = None, exact_limit: int = EXACT_LIMIT) -> Consensus:
    """Kemeny consensus of pairwise counts: exact ILP (HiGHS) up to `exact_limit` models, else local search."""
    above = np.asarray(above, float)
    if above.shape[0] <= 1:
        return Consensus(tuple(range(above.shape[0])), 0.0, "ilp")
    if above.shape[0] <= exact_limit:
        order, method = _ilp(above), "ilp"
    else:
        order, method = _local_search(above), "heuristic"
    return Consensus(order, disagreement(order, above, tied), method)
