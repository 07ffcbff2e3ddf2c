"""Sortition: config validation, exact feasibility, LEGACY = the greedy, LEXIMIN = brute force."""

from __future__ import annotations

import importlib
import itertools
import time
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from scipy.optimize import linprog

from dlm import sortition as so
from dlm.errors import DLMError
from dlm.sortition.leximin import level_dual
from dlm.sortition.relaxation import decompose_relaxation, relaxation_bound


@pytest.fixture(autouse=True)
def fresh_leximin_memo(monkeypatch):
    """Each test starts with no remembered LEXIMIN results (leximin keeps the last few by content)."""
    monkeypatch.setattr(importlib.import_module("dlm.sortition.leximin"), "_CERTIFIED", {})


def make_pool(attrs: dict[str, list[str]], quotas: dict[str, dict[str, tuple[int, int]]], k: int) -> so.Pool:
    """A pool from explicit per-person values and [min, max] quotas."""
    n = len(next(iter(attrs.values())))
    survey = pd.DataFrame({"user_id": [f"p{i}" for i in range(n)], "study_locale": "us", "survey_only": False,
                           "num_completed_conversations": 1, **attrs})
    raw = {"panel_size": k, "attributes": [{"name": a, "quotas": {c: list(b) for c, b in q.items()}}
                                           for a, q in quotas.items()]}
    return so.build_pool(survey, so.parse_panel_config(raw, "test"))


# ----------------------------------------------------------------------------- config


def test_quota_range_relative_and_absolute_round_outward():
    assert so.quota_range(0.17, 80, 0.05, "relative") == (12, 15)  # 12.92..14.28
    assert so.quota_range(0.5, 10, 0.1, "absolute") == (4, 6)
    assert so.quota_range(0.1, 30, 0.0, "relative") == (3, 3)  # float noise does not widen exact bounds


@pytest.mark.parametrize("raw, message", [
    ({"panel_size": 10, "attributes": [{"name": "g", "population_proportions": {"a": 0.5, "b": 0.3}}]}, "sum to 0.800"),
    ({"panel_size": 10, "tolerance": -0.1, "attributes": [{"name": "g", "population_proportions": {"a": 1.0}}]},
     "tolerance must be a number >= 0"),
    ({"panel_size": 0, "attributes": [{"name": "g", "population_proportions": {"a": 1.0}}]}, "positive integer"),
    ({"panel_size": 5, "attributes": []}, "'attributes' is empty"),
    ({"panel_size": 5, "attributes": [{"name": "g"}]}, "needs population_proportions or quotas"),
    ({"panel_size": 5, "attributes": [{"name": "g", "population_proportions": {"a": 1.0}, "slack_categories": ["z"]}]},
     "slack category 'z'"),
])
def test_config_errors_are_clear(raw, message):
    with pytest.raises(DLMError, match=message):
        so.parse_panel_config(raw, "cfg.yaml")


def test_unknown_column_and_oversized_panel(demo_sample):
    from dlm.data.prism import load_survey

    survey = load_survey(demo_sample / "survey.jsonl")
    bad = {"panel_size": 5, "attributes": [{"name": "x", "column": "shoe_size", "population_proportions": {"a": 1}}]}
    with pytest.raises(DLMError, match="column 'shoe_size' is not in the survey"):
        so.build_pool(survey, so.parse_panel_config(bad, "cfg.yaml"))
    big = so.load_panel_config("configs/panel_config.yaml", {"panel_size": 5000})
    with pytest.raises(DLMError, match="larger than the pool"):
        so.build_pool(survey, big)


def test_pool_is_locale_participants_with_preferences(demo_sample):
    from dlm.data.prism import load_survey

    survey = load_survey(demo_sample / "survey.jsonl")
    pool = so.build_pool(survey, so.load_panel_config("configs/panel_config.yaml"))
    us = survey[survey["study_locale"] == "us"]
    assert pool.n == int((~us["survey_only"]).sum())
    with_so = so.build_pool(survey, so.load_panel_config("configs/panel_config.yaml", {"include_survey_only": True}))
    assert with_so.n == len(us)


def test_unmatched_values_go_to_slack_else_excluded_and_counted():
    pool = make_pool({"g": ["a", "a", "b", "weird"]}, {"g": {"a": (0, 2), "b": (0, 2)}}, 2)
    assert pool.n == 3 and pool.report.excluded_unmatched == {"g": 1}
    survey = pd.DataFrame({"user_id": ["p0", "p1", "p2"], "study_locale": "us", "survey_only": False,
                           "num_completed_conversations": 1, "g": ["a", "odd", "b"]})
    raw = {"panel_size": 2, "attributes": [{"name": "g", "population_proportions": {"a": .4, "b": .3, "c": .1,
                                                                                    "other": .2},
                                            "slack_categories": ["other"]}]}
    with pytest.warns(UserWarning, match="g=c has nobody"):
        pool = so.build_pool(survey, so.parse_panel_config(raw, "t"))
    assert pool.n == 3 and pool.report.reassigned_to_slack == {"g": 1}


# ----------------------------------------------------------------------------- feasibility


def test_infeasible_quotas_name_binding_and_smallest_fix():
    pool = make_pool({"g": ["a"] * 3 + ["b"] * 10}, {"g": {"a": (5, 6), "b": (0, 10)}}, 8)
    rep = so.feasibility_report(pool)
    assert not rep.feasible
    assert any("g=a min 5" in b for b in rep.binding)
    with pytest.raises(DLMError, match=r"binding: g=a min 5.*smallest fix"):
        so.require_feasible(pool)


def test_feasibility_needs_the_joint_pool_not_marginals():
    # Marginals allow a panel (one 'a' and one 'x'), but the only 'a' person is also the only 'x'.
    pool = make_pool({"g": ["a", "b", "b"], "h": ["x", "y", "y"]},
                     {"g": {"a": (1, 1), "b": (0, 2)}, "h": {"x": (0, 0), "y": (0, 2)}}, 2)
    assert not so.is_feasible(pool)


def test_suggests_a_tolerance_that_works(demo_sample):
    from dlm.data.prism import load_survey

    survey = load_survey(demo_sample / "survey.jsonl")
    cfg = so.load_panel_config("configs/panel_config.yaml", {"panel_size": 250, "tolerance": 0.0})
    rep = so.feasibility_report(so.build_pool(survey, cfg))
    assert not rep.feasible and rep.binding
    assert any(s.startswith("tolerance") for s in rep.suggestions)
    assert any(s.startswith("panel_size") for s in rep.suggestions)


# ----------------------------------------------------------------------------- LEGACY


def legacy_exact(pool: so.Pool) -> np.ndarray:
    """P(person selected | greedy succeeds), by recursion over the greedy's states (tiny pools only)."""
    M = pool.membership
    lo, hi = pool.bounds
    k = pool.k
    start = frozenset(i for i in range(pool.n) if not (M[i] & (hi == 0)).any())

    @lru_cache(maxsize=None)
    def rec(alive: frozenset, picked: frozenset) -> tuple[tuple[frozenset, float], ...]:
        sel = M[list(picked)].sum(0) if picked else np.zeros(M.shape[1], int)
        if len(picked) == k:
            return ((picked, 1.0),) if ((sel >= lo) & (sel <= hi)).all() else ()
        rem = M[list(alive)].sum(0) if alive else np.zeros(M.shape[1], int)
        if ((sel < lo) & (rem < lo - sel)).any():
            return ()
        ratios = [((lo[c] - sel[c]) / rem[c], c) for c in range(len(lo)) if rem[c] > 0 and sel[c] < hi[c]]
        if not ratios or max(r for r, _ in ratios) > 1:
            return ()
        best = max(r for r, _ in ratios)
        c = next(c for r, c in ratios if r == best)  # first category with the largest ratio
        members = [i for i in alive if M[i, c]]
        out: dict[frozenset, float] = {}
        for i in members:
            new_sel = sel + M[i]
            new_alive = alive - {i}
            for cc in np.flatnonzero((new_sel >= hi) & (sel < hi)):
                new_alive = frozenset(j for j in new_alive if not M[j, cc])
            for panel, q in rec(new_alive, picked | {i}):
                out[panel] = out.get(panel, 0.0) + q / len(members)
        return tuple(out.items())

    dist = rec(start, frozenset())
    success = sum(q for _, q in dist)
    pi = np.zeros(pool.n)
    for panel, q in dist:
        pi[list(panel)] += q / success
    return pi


TINY = {"g": list("aaabbbbcc"), "h": list("xyxyxyxyy")}
TINY_QUOTAS = {"g": {"a": (1, 2), "b": (1, 2), "c": (1, 1)}, "h": {"x": (1, 2), "y": (1, 3)}}


def test_legacy_monte_carlo_matches_exact_greedy_distribution():
    pool = make_pool(TINY, TINY_QUOTAS, 4)
    exact = legacy_exact(pool)
    mc = so.legacy_panels(pool, 20_000, seed=1)
    p, se = mc.probabilities(pool.n)
    assert exact.sum() == pytest.approx(4)
    assert np.all(np.abs(p - exact) <= 4 * np.maximum(se, 1e-3)), (p, exact)
    assert not np.allclose(exact, 4 / 9, atol=0.02)  # LEGACY is not uniform here


def test_legacy_without_binding_quotas_is_still_the_greedy():
    pool = make_pool({"g": list("aaaaaabb")}, {"g": {"a": (0, 3), "b": (0, 3)}}, 3)
    exact = legacy_exact(pool)
    p, se = so.legacy_panels(pool, 20_000, seed=2).probabilities(pool.n)
    assert np.all(np.abs(p - exact) <= 4 * np.maximum(se, 1e-3))


def test_legacy_probabilities_sum_to_k_and_are_seeded(demo_sample):
    from dlm.data.prism import load_survey

    pool = so.build_pool(load_survey(demo_sample / "survey.jsonl"), so.load_panel_config("configs/panels/small.yaml"))
    a = so.select(pool, "legacy", 500, seed=3)
    b = so.select(pool, "legacy", 500, seed=3)
    c = so.select(pool, "legacy", 500, seed=4)
    assert a.probabilities["probability"].sum() == pytest.approx(pool.k)
    pd.testing.assert_frame_equal(a.probabilities, b.probabilities)
    assert a.panel == b.panel and a.panel != c.panel
    assert 0 <= a.diagnostics.failure_rate < 0.5
    comp = so.composition(pool, a.probabilities["probability"].to_numpy(), a.panel)
    assert ((comp["panel_count"] >= comp["min"]) & (comp["panel_count"] <= comp["max"])).all()


# ----------------------------------------------------------------------------- LEXIMIN


def feasible_panels(pool: so.Pool) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """Every quota-feasible panel of a small pool, and its person × panel membership matrix."""
    M = pool.membership
    lo, hi = pool.bounds
    panels = [c for c in itertools.combinations(range(pool.n), pool.k)
              if ((M[list(c)].sum(0) >= lo) & (M[list(c)].sum(0) <= hi)).all()]
    A = np.zeros((pool.n, len(panels)))
    for j, c in enumerate(panels):
        A[list(c), j] = 1
    return panels, A


def brute_force_leximin(pool: so.Pool) -> np.ndarray:
    """Leximin by enumerating every feasible panel, then fixing people who cannot rise above each level."""
    panels, A = feasible_panels(pool)
    fixed: dict[int, float] = {}
    m = len(panels)
    while len(fixed) < pool.n:
        free = [i for i in range(pool.n) if i not in fixed]
        # max z: A_i x >= z (free), A_i x >= p_i (fixed), sum x = 1
        ub = [np.r_[-A[i], 1.0] for i in free] + [np.r_[-A[i], 0.0] for i in fixed]
        b = [0.0] * len(free) + [-p for p in fixed.values()]
        res = linprog(np.r_[np.zeros(m), -1.0], A_ub=np.array(ub), b_ub=b, A_eq=[np.r_[np.ones(m), 0]], b_eq=[1],
                      bounds=[(0, None)] * m + [(None, None)], method="highs")
        z = -res.fun
        for i in free:
            ub2 = [np.r_[-A[j], 0.0] for j in free] + [np.r_[-A[j], 0.0] for j in fixed]
            b2 = [-z + 1e-9] * len(free) + [-p + 1e-9 for p in fixed.values()]
            r2 = linprog(np.r_[-A[i], 0.0], A_ub=np.array(ub2), b_ub=b2, A_eq=[np.r_[np.ones(m), 0]], b_eq=[1],
                         bounds=[(0, None)] * (m + 1), method="highs")
            if -r2.fun <= z + 1e-7:
                fixed[i] = z
    return np.array([fixed[i] for i in range(pool.n)])


@pytest.mark.parametrize("case", range(4))
def test_leximin_matches_brute_force_on_small_pools(case):
    rng = np.random.default_rng(case)
    n, k = 10, 4
    g = list(rng.choice(list("abc"), n, p=[0.5, 0.3, 0.2]))
    h = list(rng.choice(list("xy"), n))
    quotas = {"g": {"a": (1, 2), "b": (1, 2), "c": (0, 2)}, "h": {"x": (1, 3), "y": (1, 3)}}
    pool = make_pool({"g": g, "h": h}, quotas, k)
    if not so.is_feasible(pool):
        pytest.skip("random pool infeasible")
    lex = so.leximin(pool, time_limit=60)
    # Two attributes make the quota matrix totally unimodular: the relaxation's LEXIMIN is a mixture of panels.
    assert lex.method == "relaxation"
    assert_certified_brute_force_leximin(lex, pool)


def assert_certified_brute_force_leximin(lex: so.Leximin, pool: so.Pool) -> None:
    p = lex.probabilities()
    assert np.allclose(p, brute_force_leximin(pool), atol=1e-6)
    assert p.sum() == pytest.approx(pool.k, abs=1e-6)
    assert lex.primal_slack < 1e-7
    assert all(level.gap <= 1e-6 for level in lex.levels)
    assert lex.levels[0].value == pytest.approx(p.min(), abs=1e-9)


def exact_quota_pool(case: int) -> so.Pool:
    """Three attributes with an exact quota (seeds found by search: the relaxation's central point is no mixture)."""
    rng = np.random.default_rng(case)
    columns = {a: list(rng.choice(list("xy"), 10)) for a in "ghu"}
    quotas = {"g": {"x": (1, 3), "y": (1, 3)}, "h": {"x": (1, 3), "y": (1, 3)}, "u": {"x": (2, 2), "y": (2, 2)}}
    return make_pool(columns, quotas, 4)


def test_leximin_falls_back_to_column_generation_when_the_relaxation_is_not_a_mixture_of_panels():
    """The relaxation's LEXIMIN is out of the panels' reach here (its probabilities differ from the true
    LEXIMIN's), so the fast path must not claim it. (Case 42, used before, was only out of the old greedy
    walk's reach: its relaxation LEXIMIN is a mixture of panels, which the current decomposition finds.)"""
    pool = exact_quota_pool(408)
    lex = so.leximin(pool, time_limit=60)
    assert lex.method == "column_generation"
    assert_certified_brute_force_leximin(lex, pool)


@pytest.mark.parametrize("case", [81, 196])
def test_a_decomposition_stopped_below_the_tolerance_still_certifies_only_the_true_leximin(case):
    """Here the central point's last few 1e-9 of mass are no mixture of panels, but the panels found reach every
    relaxation bound: the relaxation route certifies the levels (the brute force agrees), the old exact
    decomposition gave up and fell back to column generation."""
    pool = exact_quota_pool(case)
    lex = so.leximin(pool, time_limit=60)
    assert lex.method == "relaxation" and 0 < lex.decomposition.mass_left < 1e-7
    assert_certified_brute_force_leximin(lex, pool)


def test_no_binding_quotas_gives_k_over_n_to_everyone():
    pool = make_pool({"g": list("aabbbcccc")}, {"g": {"a": (0, 3), "b": (0, 3), "c": (0, 3)}}, 3)
    assert np.allclose(so.leximin(pool).probabilities(), 3 / 9)
    p, se = so.random_panels(pool, 6000, seed=0).probabilities(pool.n)
    assert np.all(np.abs(p - 3 / 9) <= 4 * se)


def test_leximin_people_who_fit_no_panel_get_zero():
    pool = make_pool({"g": list("aabbc")}, {"g": {"a": (1, 1), "b": (1, 1), "c": (0, 0)}}, 2)
    p = so.leximin(pool).probabilities()
    assert p[4] == 0 and np.allclose(p[:4], 0.5)


def test_leximin_draw_meets_quotas_and_is_seeded(demo_sample):
    from dlm.data.prism import load_survey

    pool = so.build_pool(load_survey(demo_sample / "survey.jsonl"), so.load_panel_config("configs/panels/small.yaml"))
    sel = so.select(pool, "leximin", seed=5)
    again = so.select(pool, "leximin", seed=5)
    assert sel.panel == again.panel and len(sel.panel) == pool.k
    comp = so.composition(pool, sel.probabilities["probability"].to_numpy(), sel.panel)
    assert ((comp["panel_count"] >= comp["min"]) & (comp["panel_count"] <= comp["max"])).all()
    legacy = so.select(pool, "legacy", 2000, seed=5)
    assert sel.diagnostics.summary.min > legacy.diagnostics.summary.min  # why LEXIMIN exists


def test_leximin_fails_loudly_when_out_of_time(demo_sample):
    from dlm.data.prism import load_survey

    pool = so.build_pool(load_survey(demo_sample / "survey.jsonl"), so.load_panel_config("configs/panel_config.yaml"))
    with pytest.raises(so.LeximinNotConverged, match="not certified within"):
        so.leximin(pool, time_limit=0.01)


def test_gini():
    assert so.gini(np.ones(5)) == 0
    assert so.gini(np.array([0, 0, 0, 1.0])) == pytest.approx(0.75)


# ----------------------------------------------------------------------------- CLI


def test_sortition_cli_writes_probabilities_panel_and_manifest(demo_sample, tmp_path):
    out = run_cli("sortition", "--survey", demo_sample / "survey.jsonl", "--panel-config", "configs/panels/small.yaml",
                  "--algorithm", "legacy", "--num-panel-samples", "300", "--panel-seed", "1",
                  "--output", tmp_path / "probs.csv", "--panel-output", tmp_path / "panel.csv")
    assert out.returncode == 0, out.stderr
    probs = pd.read_csv(tmp_path / "probs.csv")
    assert list(probs.columns) == ["user_id", "probability", "stderr"]
    assert probs["probability"].sum() == pytest.approx(40)
    assert len(pd.read_csv(tmp_path / "panel.csv")) == 40
    assert (tmp_path / "probs.csv.manifest.json").exists()


def test_sortition_cli_infeasible_is_one_line(demo_sample, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("panel_size: 80\ntolerance: 0\nlocale_filter: us\nattributes:\n"
                   "  - {name: age, column: age, population_proportions: {18-24 years old: 0.5, 65+ years old: 0.5}}\n")
    (tmp_path / "probs.csv").write_text("earlier output\n")
    out = run_cli("sortition", "--survey", demo_sample / "survey.jsonl", "--panel-config", cfg, "--output",
                  tmp_path / "probs.csv")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "no panel of 80" in out.stderr and "binding" in out.stderr
    assert (tmp_path / "probs.csv").read_text() == "earlier output\n"


def test_leximin_relaxation_and_column_generation_agree_on_a_real_sized_pool(demo_sample):
    """The two certified routes give the same probabilities."""
    from dlm.data.prism import load_survey

    pool = so.build_pool(load_survey(demo_sample / "survey.jsonl"), so.load_panel_config("configs/panels/small.yaml"))
    fast, slow = so.leximin(pool), so.leximin(pool, method="column_generation")
    assert (fast.method, slow.method) == ("relaxation", "column_generation")
    assert [lv.types_fixed for lv in fast.levels][:3] == [lv.types_fixed for lv in slow.levels][:3]
    assert np.allclose(fast.probabilities(), slow.probabilities(), atol=1e-5)
    assert max(lv.gap for lv in fast.levels) <= 1e-6


def test_leximin_is_the_same_with_warm_start_and_without_smoothing():
    rng = np.random.default_rng(3)
    pool = make_pool({"g": list(rng.choice(list("abc"), 12)), "h": list(rng.choice(list("xy"), 12))},
                     {"g": {"a": (1, 2), "b": (1, 2), "c": (1, 2)}, "h": {"x": (1, 3), "y": (1, 3)}}, 4)
    default = so.leximin(pool).probabilities()
    warm = so.leximin(pool, warm_start_panels=50, seed=1).probabilities()
    plain = so.leximin(pool, smoothing=0.0).probabilities()
    assert np.allclose(default, warm, atol=1e-6) and np.allclose(default, plain, atol=1e-6)


def test_decomposing_the_relaxation_gives_quota_feasible_panels_that_reach_its_bound(demo_sample):
    """The column source that certifies large pools: every panel meets the quotas and their best
    mixture reaches the LP-relaxation bound (so the level is certified without pricing)."""
    import time

    from dlm.data.prism import load_survey

    pool = so.build_pool(load_survey(demo_sample / "survey.jsonl"), so.load_panel_config("configs/panel_config.yaml"))
    types = so.pool_types(pool)
    fixed = np.full(len(types.sizes), np.nan)
    bound, _ = relaxation_bound(pool, types, fixed)
    panels = decompose_relaxation(pool, types, fixed, bound - 1e-7, time.monotonic() + 120)
    lo, hi = pool.bounds
    for c in panels:
        counts = types.membership.T @ c
        assert c.sum() == pool.k and (c >= 0).all() and (c <= types.sizes).all()
        assert (lo <= counts).all() and (counts <= hi).all()
    assert level_dual(panels, types, fixed)[2] >= bound - 1e-6



def test_the_panel_repair_heuristic_returns_only_quota_feasible_panels(demo_sample):
    """The cheap column source before the ILP: from a panel broken by random moves, it returns a panel
    within every bound (quotas, type sizes, size k) or nothing; and it does mend most single swaps."""
    from dlm.data import load_survey
    from dlm.sortition.relaxation import repair_panel

    pool = so.build_pool(load_survey(demo_sample / "survey.jsonl"), so.load_panel_config("configs/panel_config.yaml"))
    types = so.pool_types(pool)
    n, member = types.sizes, types.membership.T
    lo, hi = pool.bounds
    start = np.bincount(types.index[so.legacy_panels(pool, 1, seed=0).panels[0]], minlength=len(n))
    rng = np.random.default_rng(0)
    mended = 0
    for trial in range(60):
        c = start.copy()
        for _ in range(1 + trial % 4):  # broken by 1-4 random swaps
            t = rng.choice(np.flatnonzero(c > 0))
            u = rng.choice(np.flatnonzero(c < n))
            c[t] -= 1
            c[u] += 1
        got = repair_panel(c, member, n.astype(float), pool.k, lo, hi, np.zeros(len(n)), n.astype(float),
                           rng.random(len(n)))
        if got is not None:
            counts = member @ got
            assert got.sum() == pool.k and (got >= 0).all() and (got <= n).all()
            assert (lo <= counts).all() and (counts <= hi).all()
            mended += 1
    assert mended >= 30


def test_heuristic_columns_are_quota_feasible_panels(demo_sample):
    """The cheap column sources (a rounded LP vertex, repaired; panels the decomposition takes without the
    ILP) only ever add panels that meet every quota, have size k and stay within each type's size."""
    from dlm.data import load_survey
    from dlm.sortition.relaxation import (DecompositionStats, FacePanels, rounded_panel, type_categories)

    pool = so.build_pool(load_survey(demo_sample / "survey.jsonl"), so.load_panel_config("configs/panel_config.yaml"))
    types = so.pool_types(pool)
    n, member = types.sizes, types.membership.T
    lo, hi = pool.bounds
    rng = np.random.default_rng(0)
    vertex, cats = FacePanels(pool, types, integer=False), type_categories(member)
    got = [rounded_panel(vertex, pool, member, cats, rng.random(len(n)), rng) for _ in range(40)]
    found = [c for c in got if c is not None]
    assert len(found) >= 20
    for c in found:
        assert c.sum() == pool.k and (c >= 0).all() and (c <= n).all()
        assert (lo <= member @ c).all() and (member @ c <= hi).all()
    stats = DecompositionStats()
    fixed = np.full(len(n), np.nan)
    bound, _ = relaxation_bound(pool, types, fixed)
    panels = decompose_relaxation(pool, types, fixed, bound - 1e-7, time.monotonic() + 120, stats=stats)
    assert stats.repaired > 0 and stats.panels == len(panels) == stats.repaired + stats.ilps + stats.from_known
    for c in panels:
        assert c.sum() == pool.k and (lo <= member @ c).all() and (member @ c <= hi).all() and (c <= n).all()

# A feasible pool (b,x,v) + (b,y,u) + (b,y,v) on which LEGACY fails on every draw: all minima are 0, so the
# greedy takes category a first, whose one member closes x and u and leaves too few people.
ALWAYS_FAILS = ({"g": list("abbb"), "h": list("xxyy"), "e": list("uvuv")},
                {"g": {"a": (0, 1), "b": (0, 3)}, "h": {"x": (0, 1), "y": (0, 3)}, "e": {"u": (0, 1), "v": (0, 3)}}, 3)


@pytest.mark.parametrize("n_panels", [64, 2000])
def test_legacy_failing_every_draw_is_the_one_line_legacy_error(n_panels):
    pool = make_pool(*ALWAYS_FAILS)
    assert so.is_feasible(pool)
    with pytest.raises(DLMError, match=r"LEGACY failed 1\d{3} of 1\d{3} draws.*try leximin"):
        so.legacy_panels(pool, n_panels, seed=0)


def test_legacy_failing_every_draw_is_one_line_from_the_cli(tmp_path, capsys):
    from dlm import cli

    attrs, quotas, k = ALWAYS_FAILS
    pd.DataFrame({"user_id": [f"p{i}" for i in range(4)], **attrs}).to_csv(tmp_path / "pool.csv", index=False)
    raw = {"panel_size": k, "attributes": [{"name": a, "quotas": {c: list(b) for c, b in q.items()}}
                                           for a, q in quotas.items()]}
    (tmp_path / "p.yaml").write_text(__import__("yaml").safe_dump(raw))
    code = cli.main(["sortition", "--pool", str(tmp_path / "pool.csv"), "--panel-config", str(tmp_path / "p.yaml"),
                     "--output", str(tmp_path / "probs.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "LEGACY failed" in err[0]


def test_legacy_variants_differ_where_a_met_minimum_ranks_below_zero():
    # a has min 1: once one a is in, stratification-app's ratio for a is negative and b (ratio 0) goes next;
    # the clamped variant ranks a at 0 too and config order keeps picking a until its max.
    pool = make_pool({"g": list("aaaaaabb")}, {"g": {"a": (1, 3), "b": (0, 3)}}, 3)
    app, _ = so.legacy_panels(pool, 4000, seed=0).probabilities(pool.n)
    clamped, _ = so.legacy_panels(pool, 4000, seed=0, variant="clamped").probabilities(pool.n)
    assert app[6:] == pytest.approx([0.5, 0.5], abs=0.05) and app[:6] == pytest.approx([1 / 3] * 6, abs=0.05)
    assert clamped[6:].tolist() == [0.0, 0.0] and clamped[:6] == pytest.approx([0.5] * 6, abs=0.05)
    with pytest.raises(DLMError, match="unknown LEGACY variant 'x'"):
        so.legacy_panels(pool, 10, seed=0, variant="x")


def test_leximin_reusing_an_earlier_result_after_a_quota_change_equals_a_cold_start(demo_sample):
    """The tuner's warm start: panels of the previous quotas that still meet the new ones are reused and the
    result is the cold start's; back at the earlier quotas, the decomposition needs no ILP at all."""
    from dlm.data import load_survey

    survey = load_survey(demo_sample / "survey.jsonl")
    config = so.load_panel_config("configs/panel_config.yaml")
    before = so.leximin(so.build_pool(survey, config))
    changed = so.parse_panel_config({**config.raw, "tolerance": config.tolerance + 0.05}, "tuned")
    pool = so.build_pool(survey, changed)
    cold = so.leximin(pool)
    warm = so.leximin(pool, reuse=before)
    assert np.allclose(warm.probabilities(), cold.probabilities(), atol=1e-6)
    assert all(level.gap <= 1e-6 for level in warm.levels) and warm.method == cold.method
    again = so.leximin(so.build_pool(survey, config), reuse=warm)
    assert np.allclose(again.probabilities(), before.probabilities(), atol=1e-6)
    if before.method == "relaxation":
        assert again.decomposition.panels == 0 < before.decomposition.panels and again.seconds["decomposition"] == 0
    other = so.build_pool(survey.iloc[::-1].reset_index(drop=True).iloc[5:], config)  # other people: nothing reused
    assert len(so.leximin(other, reuse=before).probabilities()) == other.n


def test_leximin_for_the_same_pool_again_is_the_remembered_result(demo_sample):
    """`dlm design` asks once per arm: the same types and quotas give the certified result without solving again,
    for this pool's people (a pool in another order gets its own people's probabilities)."""
    from dlm.data import load_survey

    survey = load_survey(demo_sample / "survey.jsonl")
    config = so.load_panel_config("configs/panel_config.yaml")
    first = so.leximin(so.build_pool(survey, config))
    again = so.leximin(so.build_pool(survey, config))
    assert again.panels is first.panels and np.array_equal(again.probabilities(), first.probabilities())
    shuffled = survey.iloc[::-1].reset_index(drop=True)
    flipped = so.leximin(so.build_pool(shuffled, config))
    assert flipped.panels is first.panels
    cold = so.leximin(so.build_pool(shuffled, config), gap_tol=0.999e-6)  # other settings: solved again
    assert cold.panels is not first.panels and np.allclose(flipped.probabilities(), cold.probabilities(), atol=1e-6)


def test_the_tuner_run_reuses_the_previous_leximin_and_agrees_with_a_cold_run(demo_sample):
    from dlm.data import load_survey

    pool = so.build_pool(load_survey(demo_sample / "survey.jsonl"), so.load_panel_config("configs/panel_config.yaml"))
    first = so.run_algorithm(pool, "leximin")
    again = so.run_algorithm(pool, "leximin", reuse=first)
    assert first.leximin is not None and np.allclose(again.probabilities, first.probabilities, atol=1e-6)
    if first.leximin.method == "relaxation":
        assert again.leximin.decomposition.ilps == 0  # the previous panels already certify these quotas
