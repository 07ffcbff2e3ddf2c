"""dlm.stats.ranking: listwise records, Plackett–Luce, Borda, Copeland, Kemeny, Mallows, IIA and position bias."""

from __future__ import annotations

import ast
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import minimize

from dlm.stats.ranking import (RankingError, balanced_display_orders, encode, load_rankings, rank_correlation,
                         simulate_rankings, summarize_rankings, to_dict)
from dlm.stats.ranking import aggregate, iia, mallows
from dlm.stats.ranking import plackett_luce as pl
from dlm.stats.ranking.bootstrap import clause_weights, t_interval
from dlm.stats.ranking.kemeny import brute_force, disagreement, kemeny
from dlm.stats.ranking.records import RankingRecord


def _worths(m: int) -> dict[str, float]:
    return {f"m{i}": float(np.exp(x)) for i, x in enumerate(np.linspace(-1, 1, m))}


def _row(ranking, models=("a", "b", "c"), clause="c1", question="q1"):
    return {"question_id": question, "clause_id": clause, "judge_model": "j", "models": list(models),
            "ranking": ranking, "settings": "ignored"}


# --- records -------------------------------------------------------------------------------------

def test_records_accept_names_and_tied_groups_and_round_trip():
    strict, tied = load_rankings([_row(["b", "a", "c"]), _row(["b", ["a", "c"]])])
    assert strict.ranking == (("b",), ("a",), ("c",)) and strict.strict
    assert tied.ranking == (("b",), ("a", "c")) and not tied.strict
    assert load_rankings([to_dict(strict), to_dict(tied)]) == [strict, tied]


@pytest.mark.parametrize("row, message", [
    ({"question_id": "q", "clause_id": "c", "models": ["a", "b"], "ranking": ["a", "b"]}, "missing judge_model"),
    (_row(["a", "b"]), "must name exactly the models shown"),
    (_row(["a", "b", "b"]), "appears twice"),
    (_row(["a", ["b", "c"], "d"]), "must name exactly"),
    (_row("abc"), "non-empty list"),
    (_row(["a", 3, "c"]), "neither a model name"),
    (_row(["a"], models=("a",)), "at least two distinct"),
])
def test_bad_records_raise_one_error_naming_the_record(row, message):
    with pytest.raises(RankingError, match=f"record 2: .*{message}"):
        load_rankings([_row(["a", "b", "c"]), row])


def test_balanced_display_orders_put_every_model_in_every_position_equally_often():
    models = [f"m{i}" for i in range(5)]
    orders = balanced_display_orders(models, n_questions=10, k_orders=2, seed=3)
    counts = np.zeros((5, 5), int)
    for question in orders:
        assert len(question) == 2 and question[0] != question[1]
        for shown in question:
            assert sorted(shown) == models
            for position, name in enumerate(shown):
                counts[models.index(name), position] += 1
    assert (counts == 4).all()


# --- Plackett–Luce -------------------------------------------------------------------------------

def _direct_loglik(theta, records, models):
    """Breslow Plackett–Luce log-likelihood written straight from its definition."""
    total = 0.0
    for record in records:
        left = [name for group in record.ranking for name in group]
        for group in record.ranking:
            if len(left) > 1:
                den = np.log(sum(np.exp(theta[models.index(x)]) for x in left))
                total += sum(theta[models.index(x)] - den for x in group)
            left = [x for x in left if x not in group]
    return total


def test_plackett_luce_maximises_its_likelihood_with_ties():
    records = simulate_rankings(_worths(4), 6, 3, seed=1)
    records += load_rankings([_row(["m3", ["m0", "m2"], "m1"], ("m0", "m1", "m2", "m3"), "c9", "q9"),
                              _row([["m1", "m3"], "m0", "m2"], ("m0", "m1", "m2", "m3"), "c9", "q8")])
    data = encode(records)
    theta, prior = pl.fit(data)
    reference = minimize(lambda t: -_direct_loglik(t, records, list(data.models)), np.zeros(4), method="BFGS").x
    assert not prior
    np.testing.assert_allclose(theta, reference - reference.mean(), atol=1e-4)
    assert abs(theta.sum()) < 1e-10  # worths have geometric mean 1
    np.testing.assert_allclose(pl.ranking_loglik(data, theta).sum(), _direct_loglik(theta, records, list(data.models)))


@pytest.mark.parametrize("m, seed", [(6, 0), (8, 1), (10, 2)])
def test_fitted_worths_follow_the_true_ones(m, seed):
    data = encode(simulate_rankings(_worths(m), 25, 4, clause_sd=0.3, seed=seed))
    theta, _ = pl.fit(data)
    assert stats.spearmanr(theta, np.log(list(_worths(m).values()))).statistic >= 0.9


def test_a_model_always_first_gets_the_documented_prior_and_keeps_the_order():
    rows = [_row(["a", "b", "c"], clause=f"c{i}") for i in range(3)] + [_row(["a", "c", "b"], clause="c3")]
    data = encode(load_rankings(rows))
    theta, prior = pl.fit(data)
    assert prior and np.isfinite(theta).all() and theta[0] > theta[1] > theta[2]
    _, prior_when_mixed = pl.fit(encode(simulate_rankings(_worths(3), 5, 4, seed=0)))
    assert not prior_when_mixed


def test_bootstrap_weights_act_as_copies_of_rankings():
    records = simulate_rankings(_worths(5), 8, 3, seed=4)
    data = encode(records)
    weights = np.random.default_rng(0).integers(0, 3, data.n).astype(float)
    copies = encode([r for r, k in zip(records, weights) for _ in range(int(k))], data.models)
    batched, _ = pl.fit_many(data, np.stack([np.ones(data.n), weights]))
    np.testing.assert_allclose(batched[1], pl.fit(copies)[0], atol=1e-8)
    np.testing.assert_allclose(batched[0], pl.fit(data)[0], atol=1e-8)


def test_worth_intervals_cover_in_a_small_simulation():
    """A small version of the slow 1,000-repetition check (tests/test_ranking.py::test_worth_intervals_cover)."""
    assert 0.88 <= _coverage(m=6, reps=40, n_boot=100, truth_clauses=800)[:6].mean() <= 0.995


# --- Borda, Copeland, Kemeny ---------------------------------------------------------------------

def _hand_data():
    models = ("a", "b", "c", "d")
    rows = [_row(["a", "b", "c", "d"], models), _row(["b", "a", "d", "c"], models),
            _row(["c", ["a", "b"], "d"], models), _row(["a", "c", "b"], ("a", "b", "c"), clause="c2")]
    return encode(load_rankings(rows))


def test_borda_and_copeland_equal_hand_computations():
    data = _hand_data()
    ones = np.ones((1, data.n))
    # a beats 3,2,½+1 (tie with b, above d), 2 → mean (3 + 2 + 1.5 + 2) / 4; d only appears in three rankings.
    np.testing.assert_allclose(aggregate.borda(data, ones)[0], [8.5 / 4, 6.5 / 4, 5 / 4, 1 / 3])
    above, tied = aggregate.pairwise_counts(data, ones)
    assert above[0, 0, 1] == 2 and above[0, 1, 0] == 1 and tied[0, 0, 1] == 1
    # a beats b (2–1), c (3–1), d (3–0); b: c 2–2 even, d 3–0; c: d 2–1.
    np.testing.assert_allclose(aggregate.copeland(above)[0], [3, 1.5, 1.5, 0])
    np.testing.assert_allclose(aggregate.win_rates(above, tied)[0, 0, 1], 2.5 / 4)


def test_kemeny_by_ilp_equals_brute_force():
    rng = np.random.default_rng(7)
    for m in range(2, 8):
        for _ in range(3):
            above = rng.integers(0, 6, (m, m)).astype(float)
            np.fill_diagonal(above, 0)
            exact, brute = kemeny(above), brute_force(above)
            assert exact.method == "ilp" and exact.disagreement == brute.disagreement
            optimal = [o for o in itertools.permutations(range(m)) if disagreement(o, above) == brute.disagreement]
            assert exact.order in optimal


def test_kemeny_says_when_it_used_the_heuristic_and_it_finds_the_optimum_on_plackett_luce_data():
    data = encode(simulate_rankings(_worths(8), 25, 4, seed=5))
    above, tied = aggregate.pairwise_counts(data, np.ones((1, data.n)))
    exact, heuristic = kemeny(above[0], tied[0]), kemeny(above[0], tied[0], exact_limit=7)
    assert (exact.method, heuristic.method) == ("ilp", "heuristic")
    assert heuristic.disagreement == exact.disagreement


# --- display-order judge and position bias -------------------------------------------------------

def test_a_judge_that_ranks_in_display_order_shows_equal_worths_and_full_position_bias():
    models = [f"m{i}" for i in range(5)]
    orders = balanced_display_orders(models, n_questions=50, k_orders=2, seed=0)
    records = [RankingRecord(f"q{q}", f"c{q // 2}", "j", shown, tuple((x,) for x in shown))
               for q, question in enumerate(orders) for shown in question]
    summary = summarize_rankings(records, n_boot=100, seed=1)
    for scores in summary.models:
        assert scores.worth_low <= 1.0 <= scores.worth_high
        assert scores.worth == pytest.approx(1.0, abs=1e-8)
    assert summary.position_bias[0].share == 1.0 and summary.position_bias[0].low == 1.0
    assert all(p.share == 0.0 for p in summary.position_bias[1:])


def test_position_bias_share_sees_a_bias_planted_in_the_simulator():
    plain = encode(simulate_rankings(_worths(5), 25, 8, 2, seed=2))
    biased = encode(simulate_rankings(_worths(5), 25, 8, 2, position_effect=[1.5], seed=2))
    ones = np.ones((1, plain.n))
    assert aggregate.first_place_by_position(biased, ones)[0, 0] > 0.4 > aggregate.first_place_by_position(plain, ones)[0, 0]


# --- Mallows -------------------------------------------------------------------------------------

def test_mallows_normaliser_and_expected_distance_equal_enumeration():
    for m, theta in [(3, 0.7), (5, 0.3), (5, 2.0)]:
        distances = np.array([sum(a > b for a, b in itertools.combinations(p, 2)) for p in itertools.permutations(range(m))])
        weights = np.exp(-theta * distances)
        assert mallows.log_normaliser(theta, m) == pytest.approx(np.log(weights.sum()))
        mean = float((distances * weights).sum() / weights.sum())
        assert mallows.expected_distance(theta, m) == pytest.approx(mean)
        assert mallows.fit_theta(mean, m) == pytest.approx(theta, rel=1e-6)


def _mallows_records(theta: float, m: int, n_clauses: int, per_clause: int, seed: int) -> list[RankingRecord]:
    perms = list(itertools.permutations(range(m)))
    d = np.array([sum(a > b for a, b in itertools.combinations(p, 2)) for p in perms])
    prob = np.exp(-theta * d) / np.exp(-theta * d).sum()
    rng = np.random.default_rng(seed)
    names = [f"m{i}" for i in range(m)]
    draws = rng.choice(len(perms), size=n_clauses * per_clause, p=prob)
    return [RankingRecord(f"q{k}", f"c{k // per_clause}", "j", tuple(names), tuple((names[i],) for i in perms[p]))
            for k, p in enumerate(draws)]


def test_mallows_recovers_its_dispersion_and_held_out_likelihood_picks_the_true_family():
    data = encode(_mallows_records(0.8, 5, 25, 8, seed=0))
    fit = mallows.fit(data)
    assert fit.consensus == (0, 1, 2, 3, 4) and fit.theta == pytest.approx(0.8, abs=0.15)
    from_mallows = mallows.held_out(data, seed=0)
    from_pl = mallows.held_out(encode(simulate_rankings(_worths(5), 25, 8, seed=0)), seed=0)
    assert from_mallows.mallows > from_mallows.plackett_luce and from_mallows.n_rankings == data.n
    assert from_pl.plackett_luce > from_pl.mallows


# --- IIA -----------------------------------------------------------------------------------------

def _clone_records(seed: int) -> list[RankingRecord]:
    """m0 and m1 are near copies: the judge ranks them next to each other (an IIA violation)."""
    w = _worths(6)
    rng = np.random.default_rng(seed)
    names = list(w)
    items = [("m0", "m1")] + [(x,) for x in names[2:]]
    log_items = np.log([w["m0"] + w["m1"]] + [w[x] for x in names[2:]])
    records = []
    for k in range(100):
        order = []
        for j in np.argsort(-(log_items + rng.gumbel(size=len(items)))):
            pair = items[j] if rng.random() < w["m0"] / (w["m0"] + w["m1"]) else items[j][::-1]
            order += [(x,) for x in pair]
        records.append(RankingRecord(f"q{k}", f"c{k // 4}", "j", tuple(names), tuple(order)))
    return records


def test_iia_test_holds_its_size_under_plackett_luce_and_rejects_clones():
    p_null = [t.p_value for seed in range(30)
              for t in iia.iia_tests(encode(simulate_rankings(_worths(6), 25, 4, clause_sd=0.3, seed=seed)))]
    assert np.mean(np.array(p_null) < 0.05) <= 0.10 and np.mean(np.array(p_null) < 0.5) > 0.35
    power = np.mean([iia.hausman_mcfadden(encode(_clone_records(seed)), 0).p_value < 0.05 for seed in range(20)])
    assert power >= 0.8


# --- summary -------------------------------------------------------------------------------------

def test_summary_is_seeded_json_stable_and_puts_the_primary_contrast_first():
    records = simulate_rankings(_worths(5), 10, 3, 2, seed=8)
    rows = [to_dict(r) for r in records]
    first = summarize_rankings(rows, primary="m4:m0", contrasts=["m1:m2", ("m4", "m0")], seed=3, n_boot=50)
    again = summarize_rankings(records, primary="m4:m0", contrasts=["m1:m2"], seed=3, n_boot=50)
    assert json.dumps(first.to_dict()) == json.dumps(again.to_dict())
    assert [(c.a, c.b, c.primary) for c in first.contrasts] == [("m4", "m0", True), ("m1", "m2", False)]
    top = first.contrasts[0]
    assert top.empirical_low <= top.empirical <= top.empirical_high and 0.5 < top.implied < 1
    assert first.kemeny.method == "ilp" and first.mallows is not None and len(first.iia) == 5
    assert [m.rank for m in first.models] == sorted(m.rank for m in first.models)
    other = summarize_rankings(records, seed=4, n_boot=50)
    assert other.models[0].worth_low != first.models[0].worth_low


@pytest.mark.parametrize("primary, message", [("m4-m0", "written A:B"), ("m2:zz", "'zz', which no ranking"),
                                               ("m1:m1", "with itself")])
def test_bad_contrasts_raise_ranking_errors(primary, message):
    with pytest.raises(RankingError, match=message):
        summarize_rankings(simulate_rankings(_worths(3), 3, 2, seed=0), primary=primary, n_boot=10)


def test_a_summary_needs_two_clauses_and_keeps_names_plain():
    with pytest.raises(RankingError, match="need at least 2"):
        summarize_rankings(simulate_rankings(_worths(3), 1, 5, seed=0), n_boot=10)
    rows = [_row(list(np.array(["c", "a", "b"])), clause=f"c{i % 2}", question=f"q{i}") for i in range(4)]
    assert json.loads(json.dumps(summarize_rankings(rows, n_boot=10).to_dict()))["kemeny"]["order"] == ["c", "a", "b"]


def test_rank_correlation_of_orders():
    assert rank_correlation(["a", "b", "c"], ["a", "b", "c"]) == (1.0, 1.0)
    assert rank_correlation(["a", "b", "c"], ["c", "b", "a"]) == (-1.0, -1.0)
    with pytest.raises(RankingError):
        rank_correlation(["a", "b"], ["a", "c"])


# --- coverage ------------------------------------------------------------------------------------

def _estimates(data, weights):
    """(B, k) log-worths, Borda scores, win rate of the best model over the worst (empirical and implied), first-position share."""
    theta, _ = pl.fit_many(data, weights)
    above, tied = aggregate.pairwise_counts(data, weights)
    implied = 1 / (1 + np.exp(theta[:, :1] - theta[:, -1:]))
    return np.hstack([theta, aggregate.borda(data, weights), aggregate.win_rates(above, tied)[:, -1:, 0],
                      implied, aggregate.first_place_by_position(data, weights)[:, :1]])


def _coverage(m: int, reps: int, n_boot: int, clause_sd: float = 0.3, truth_clauses: int = 4000) -> np.ndarray:
    """Per estimate (log-worths, Borda, win rates, position share): share of clause-bootstrap intervals covering the truth.

    With a clause random effect the population Plackett–Luce fit is not the simulated log-worths
    themselves, so every estimand is computed from one very large sample of the same design.
    """
    w = _worths(m)
    big = encode(simulate_rankings(w, truth_clauses, 4, 2, clause_sd=clause_sd, position_effect=[0.3], seed=10**6))
    truth = _estimates(big, np.ones((1, big.n)))[0]
    hits = []
    for rep in range(reps):
        data = encode(simulate_rankings(w, 25, 4, 2, clause_sd=clause_sd, position_effect=[0.3], seed=rep))
        estimate = _estimates(data, np.ones((1, data.n)))[0]
        low, high = t_interval(estimate, _estimates(data, clause_weights(data.clause, 25, n_boot, rep)), 25, 0.95)
        hits.append((low <= truth) & (truth <= high))
    return np.mean(hits, axis=0)


@pytest.mark.slow
def test_worth_intervals_cover():
    """1,000 simulated studies of 6 models, 25 clauses: worth intervals cover 93–97%, and so do the others."""
    coverage = _coverage(m=6, reps=1000, n_boot=200)
    assert 0.93 <= coverage[:6].mean() <= 0.97
    assert (coverage >= 0.92).all() and (coverage <= 0.98).all()


def test_the_package_imports_only_numpy_scipy_and_itself():
    allowed = {"numpy", "scipy", "dlm"} | set(sys.stdlib_module_names)
    for path in sorted((Path(__file__).resolve().parent.parent / "dlm" / "ranking").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
                assert not name.startswith("dlm.") or name.startswith("dlm.stats.ranking"), f"{path.name} imports {name}"
