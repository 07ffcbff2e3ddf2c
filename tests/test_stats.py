"""Statistics: definitions on hand-made records, and interval coverage by simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlm.stats import winrates as stats


def records(rows):
    cols = ["question_id", "clause_id", "model_a", "model_b", "order", "judge_model", "winner", "len_a", "len_b"]
    return pd.DataFrame(rows, columns=cols)


def test_both_orders_conservative_rule_and_inconsistency():
    r = records([
        ("q1", "c1", "A", "B", "ab", "j", "A", 10, 5), ("q1", "c1", "A", "B", "ba", "j", "A", 10, 5),  # A wins
        ("q2", "c1", "A", "B", "ab", "j", "A", 10, 5), ("q2", "c1", "A", "B", "ba", "j", "B", 10, 5),  # split: tie
        ("q3", "c2", "A", "B", "ab", "j", "tie", 10, 5), ("q3", "c2", "A", "B", "ba", "j", "B", 10, 5),  # tie
        ("q4", "c2", "A", "B", "ab", "j", "B", 10, 5), ("q4", "c2", "A", "B", "ba", "j", "B", 10, 5),  # B wins
    ])
    c = stats.combine_orders(r).set_index("question_id")
    assert c["score"].to_dict() == {"q1": 1.0, "q2": 0.5, "q3": 0.5, "q4": 0.0}
    assert c["inconsistent"].to_dict() == {"q1": 0, "q2": 1, "q3": 1, "q4": 0}
    s = stats.summarise(r)["pairs"]["A vs B"]
    assert (s["wins"], s["ties"], s["losses"]) == (1, 2, 1)
    assert s["win_rate"] == 0.5 and s["inconsistency_rate"] == 0.5


def test_cluster_t_interval_matches_its_definition():
    scores = np.array([1, 0.5, 1, 0, 0.5, 1, 1, 0.5])
    clusters = np.array([1, 1, 2, 2, 3, 3, 4, 4])
    out = stats.cluster_t_interval(scores, clusters)
    mean = scores.mean()
    sums = np.array([(scores[clusters == g] - mean).sum() for g in range(1, 5)])
    se = np.sqrt(4 / 3 * (sums**2).sum()) / 8
    t = 3.182446305284263  # t(0.975, df=3)
    assert out["se"] == pytest.approx(se) and out["ci_low"] == pytest.approx(mean - t * se)


def test_all_ties_or_all_one_way_are_uninformative_not_a_zero_width_interval():
    for value in (0.5, 1.0):
        out = stats.cluster_t_interval(np.full(20, value), np.repeat(np.arange(4), 5))
        assert out["estimate"] == value and out["uninformative"]
        assert np.isnan(out["ci_low"]) and np.isnan(out["ci_high"]) and np.isnan(out["p_value"])
    assert not stats.cluster_t_interval(np.array([1, 0.5, 1, 0]), np.array([1, 1, 2, 2]))["uninformative"]


def test_all_tie_pairs_and_clauses_are_flagged_and_left_out_of_holm():
    rows = []
    for i in range(12):
        clause = f"c{i % 2}"
        rows += [(f"q{i}", clause, "A", "B", o, "j", "tie", 1, 1) for o in ("ab", "ba")]  # A vs B: all ties
        rows += [(f"q{i}", clause, "A", "C", o, "j", "A", 1, 1) for o in ("ab", "ba")]  # A sweeps C
    s = stats.summarise(records(rows))
    assert s["pairs"]["A vs B"]["uninformative"] and np.isnan(s["pairs"]["A vs B"]["ci_low"])
    clauses = {(r["pair"], r["clause_id"]): r for r in s["clauses"]}
    assert clauses[("A vs B", "c0")]["uninformative"] and np.isnan(clauses[("A vs B", "c0")]["p_holm"])
    # only the two testable clauses form the Holm family: 2 × 2·0.5⁶
    assert clauses[("A vs C", "c0")]["p_holm"] == pytest.approx(2 * 2 * 0.5**6)


def test_wilson_sign_test_and_holm():
    lo, hi = stats.wilson_interval(7 + 2 / 2, 10)
    assert 0.45 < lo < 0.5 and 0.94 < hi < 0.97
    assert stats.sign_test(9, 1) == pytest.approx(0.021484375)
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_bradley_terry_orders_models_and_ties_split():
    rows = []
    for i in range(30):
        rows.append((f"q{i}", f"c{i % 5}", "strong", "weak", "ab", "j", "strong", 1, 1))
        rows.append((f"q{i}", f"c{i % 5}", "strong", "mid", "ab", "j", "strong" if i % 3 else "mid", 1, 1))
        rows.append((f"q{i}", f"c{i % 5}", "mid", "weak", "ab", "j", "mid" if i % 3 else "tie", 1, 1))
    out = stats.summarise(records(rows))["bradley_terry"]
    assert out["strong"]["rating"] > out["mid"]["rating"] > out["weak"]["rating"]
    assert out["weak"]["ci_low"] <= out["weak"]["rating"] <= out["weak"]["ci_high"]


def test_length_controlled_win_rate_removes_a_pure_length_effect():
    rng = np.random.default_rng(0)
    diff = rng.normal(0, 50, 2000)
    score = (rng.random(2000) < 1 / (1 + np.exp(-diff / 25))).astype(float)  # longer wins, nothing else
    out = stats.length_controlled(score, diff)
    assert out["length_controlled_win_rate"] == pytest.approx(0.5, abs=0.03) and out["length_coefficient"] > 0


# ----------------------------------------------------------------------------- simulation


def simulate(n_eval, G, per_clause, position_bias, both_orders, rng, equal_models=False):
    """Scores per (evaluation, question), the clause index, and the true estimand θ.

    Each clause has its own probability p_c ~ Beta(2, 2) (0.5 if equal_models) that model A's answer
    is truly better. The judge picks the better answer with probability 0.8, except that with
    probability `position_bias` it picks whichever answer is shown first. θ is the expected score
    under the design, averaged over the clause distribution.
    """
    p = np.full((n_eval, G), 0.5) if equal_models else rng.beta(2, 2, (n_eval, G))
    p_q = np.repeat(p, per_clause, axis=1)
    a_better = rng.random(p_q.shape) < p_q

    def says_a(a_first):
        biased = rng.random(p_q.shape) < position_bias
        correct = rng.random(p_q.shape) < 0.8
        return np.where(biased, a_first, np.where(correct, a_better, ~a_better))

    if both_orders:
        ab, ba = says_a(True), says_a(False)
        score = np.where(ab & ba, 1.0, np.where(~ab & ~ba, 0.0, 0.5))
    else:
        score = says_a(True).astype(float)  # always A first: the design a biased judge exploits
    # θ: E[score | p] is linear in p and E[p] = 0.5, so average over "A truly better" with probability 0.5.
    q = position_bias

    def expected(a_truly_better: bool) -> float:
        right = 0.8 if a_truly_better else 0.2  # P(judge says A | unbiased draw)
        ab, ba = q + (1 - q) * right, (1 - q) * right  # P(says A) with A shown first / second
        return ab * ba + 0.5 * (ab * (1 - ba) + (1 - ab) * ba) if both_orders else ab

    theta = 0.5 * expected(True) + 0.5 * expected(False)
    clusters = np.repeat(np.arange(G), per_clause)
    return score, clusters, theta


@pytest.mark.parametrize("G", [12, 25])
def test_overall_interval_covers_the_truth_93_to_97_percent(G):
    rng = np.random.default_rng(G)
    score, clusters, theta = simulate(2000, G, 10, 0.3, True, rng)
    intervals = [stats.cluster_t_interval(s, clusters) for s in score]
    covered = [i["ci_low"] <= theta <= i["ci_high"] for i in intervals]
    assert 0.93 <= np.mean(covered) <= 0.97


def test_both_orders_remove_the_position_bias():
    rng = np.random.default_rng(1)
    single, _, _ = simulate(500, 25, 10, 0.4, False, rng, equal_models=True)
    both, _, _ = simulate(500, 25, 10, 0.4, True, rng, equal_models=True)
    assert single.mean() > 0.65  # the first-shown model "wins" though the models are equal
    assert both.mean() == pytest.approx(0.5, abs=0.01)


def test_a_win_rate_interval_never_leaves_zero_to_one():
    """A near-unanimous win rate (31 wins, 5 ties in two of 12 clauses, as the planted benchmark saw) stays in [0, 1]."""
    clauses = np.repeat(np.arange(12), 3)
    scores = np.where(np.arange(36) < 5, 0.5, 1.0)
    ci = stats.cluster_t_interval(scores, clauses)
    assert 0.0 <= ci["ci_low"] < ci["estimate"] < ci["ci_high"] <= 1.0
    assert ci["ci_high"] == 1.0  # the unclipped upper end is above 1
