"""LEXIMIN certificates are proofs: every certified bound holds against an independent LP, and a solver
that stops early, finds nothing or runs out of time never yields a certified level."""

from __future__ import annotations

import importlib
import sys
import time

import numpy as np
import pytest
from scipy.optimize import linprog
from test_sortition import brute_force_leximin, feasible_panels, make_pool

from dlm import sortition as so

# The module, not the function `so.leximin` that the package re-exports under the same name.
leximin_module = importlib.import_module("dlm.sortition.leximin")


@pytest.fixture(autouse=True)
def no_memo(monkeypatch):
    """Each test computes its own LEXIMIN: these tests patch the solvers, a remembered result would skip them."""
    monkeypatch.setattr(leximin_module, "_CERTIFIED", {})

# Seeds of test_sortition's pools, and of pools whose LP relaxation overshoots some level (found by search).
ROUTES = {"relaxation": [0, 1, 2], "column_generation": [42, 81, 196], "pricing": [89, 360]}


def small_pool(route: str, seed: int) -> so.Pool:
    """test_sortition's pools: two attributes (relaxation route) or three with an exact quota (column
    generation); "pricing": four binary attributes, 10 people, k=5, where some level is certified only
    by the pricing ILP's bound."""
    rng = np.random.default_rng(seed)
    if route == "pricing":
        k = int(rng.integers(3, 6))
        attrs = "ghuv"[:int(rng.integers(3, 5))]
        columns = {a: list(rng.choice(list("xy"), 10)) for a in attrs}
        quotas = {}
        for a in attrs:
            lo = int(rng.integers(0, k))
            hi = int(rng.integers(lo, k + 1)) if rng.random() < 0.5 else lo
            quotas[a] = {"x": (lo, hi), "y": (k - hi, k - lo)}
        return make_pool(columns, quotas, k)
    if route == "relaxation":
        g, h = list(rng.choice(list("abc"), 10, p=[0.5, 0.3, 0.2])), list(rng.choice(list("xy"), 10))
        return make_pool({"g": g, "h": h}, {"g": {"a": (1, 2), "b": (1, 2), "c": (0, 2)},
                                            "h": {"x": (1, 3), "y": (1, 3)}}, 4)
    columns = {a: list(rng.choice(list("xy"), 10)) for a in "ghu"}
    return make_pool(columns, {"g": {"x": (1, 3), "y": (1, 3)}, "h": {"x": (1, 3), "y": (1, 3)},
                               "u": {"x": (2, 2), "y": (2, 2)}}, 4)


def level_optimum(pool: so.Pool, fixed_values: dict[int, float]) -> float:
    """max z over mixtures of all enumerated feasible panels: fixed people keep their value, the others get z."""
    panels, A = feasible_panels(pool)
    m = len(panels)
    rows = [np.r_[-A[i], 0.0 if i in fixed_values else 1.0] for i in range(pool.n)]
    b = [-fixed_values.get(i, 0.0) for i in range(pool.n)]
    res = linprog(np.r_[np.zeros(m), -1.0], A_ub=np.array(rows), b_ub=b, A_eq=[np.r_[np.ones(m), 0.0]], b_eq=[1.0],
                  bounds=[(0, None)] * m + [(None, None)], method="highs")
    assert res.status == 0
    return float(-res.fun)


def assert_levels_proven(pool: so.Pool, levels: list[so.LeximinLevel], gap_tol: float = 1e-6) -> None:
    """Each level's value is reachable and its bound holds against the level's optimum solved independently."""
    exact = brute_force_leximin(pool)
    order = np.argsort(exact, kind="stable")
    done = 0
    for level in levels:
        optimum = level_optimum(pool, {int(i): float(exact[i]) for i in order[:done]})
        assert level.upper_bound >= optimum - 1e-7, (level, optimum)  # the bound is a bound
        assert optimum - gap_tol - 1e-7 <= level.value <= optimum + 1e-7, (level, optimum)
        assert level.gap == pytest.approx(level.upper_bound - level.value, abs=1e-12) and level.gap <= gap_tol
        done += level.people_fixed


@pytest.mark.parametrize("route, seed", [(r, s) for r, seeds in ROUTES.items() for s in seeds])
def test_every_certified_level_bound_holds_against_an_independent_lp(route, seed):
    pool = small_pool(route, seed)
    if not so.is_feasible(pool):
        pytest.skip("random pool infeasible")
    lex = so.leximin(pool, time_limit=60, method="auto" if route == "relaxation" else "column_generation")
    assert lex.method == ("column_generation" if route == "pricing" else route)
    assert_levels_proven(pool, lex.levels)
    auto = so.leximin(pool, time_limit=60)  # the default route: whichever it takes, its levels are proven too
    assert_levels_proven(pool, auto.levels)
    if route == "pricing":
        assert "pricing_ilp" in {lv.bound for lv in lex.levels}


def _pricing_only(fake):
    """Replace the pricing ILP of column generation (not the other uses of the solver) by `fake(real_result)`."""
    real = leximin_module.best_panel

    def patched(*args, **kwargs):
        got = real(*args, **kwargs)
        return fake(got) if sys._getframe(1).f_code.co_name == "_solve_level" else got
    return patched


def test_a_pricing_ilp_stopped_early_never_certifies_a_level_by_its_incumbent(monkeypatch):
    """The ILP returns its (optimal) panel but claims it stopped early with a weaker bound: the panel
    not beating the master proves nothing, so levels are certified by the relaxation or not at all."""
    pool = small_pool("pricing", 89)
    honest = so.leximin(pool, time_limit=60, method="column_generation")
    assert any(lv.bound == "pricing_ilp" for lv in honest.levels)  # the patch below has something to break
    weaker = _pricing_only(lambda got: so.PricedPanel(got.counts, got.value, got.bound + 0.05, optimal=False))
    monkeypatch.setattr(leximin_module, "best_panel", weaker)
    monkeypatch.setattr(leximin_module, "_CERTIFIED", {})  # solve again, with the patched ILP
    try:
        levels = so.leximin(pool, time_limit=60, method="column_generation").levels
    except so.LeximinNotConverged as exc:
        levels = exc.levels
        assert exc.bound >= exc.value  # it reports the best value and the best proven bound
    assert all(lv.bound == "lp_relaxation" for lv in levels)
    assert_levels_proven(pool, levels)


def test_a_pricing_ilp_without_a_panel_is_not_converged_not_an_assertion(monkeypatch):
    pool = small_pool("pricing", 89)
    nothing = _pricing_only(lambda got: so.PricedPanel(None, -np.inf, np.inf, optimal=False))
    monkeypatch.setattr(leximin_module, "best_panel", nothing)
    with pytest.raises(so.LeximinNotConverged, match="stopped without a panel or a proof") as info:
        so.leximin(pool, time_limit=60, method="column_generation")
    assert np.isfinite(info.value.value) and all(lv.bound == "lp_relaxation" for lv in info.value.levels)


def test_every_solver_call_gets_only_the_time_left(demo_sample, monkeypatch):
    from dlm.data.prism import load_survey

    pool = so.build_pool(load_survey(demo_sample / "survey.jsonl"), so.load_panel_config("configs/panel_config.yaml"))
    calls: list[tuple[float, float]] = []
    for name in ("best_panel", "level_dual"):
        real = getattr(leximin_module, name)

        def record(*args, _real=real, **kwargs):
            if kwargs.get("time_limit") is not None:
                calls.append((time.monotonic(), kwargs["time_limit"]))
            return _real(*args, **kwargs)
        monkeypatch.setattr(leximin_module, name, record)
    limit = 1.5
    start = time.monotonic()
    with pytest.raises(so.LeximinNotConverged, match="not certified within"):
        so.leximin(pool, time_limit=limit, method="column_generation")
    assert calls
    # No floor past the deadline (formerly 1 s per call); 0.05 s covers the time between the caller reading
    # the clock and the recorder reading it on a busy machine.
    bad = [(at - start, given) for at, given in calls if not 0 <= given <= start + limit - at + 0.05]
    assert not bad, bad


def test_the_final_lp_gets_the_time_left_and_a_grace_then_stops_uncertified(monkeypatch):
    """The final LP certifies the panels found; past the deadline it gets FINAL_LP_GRACE_S, never minutes more."""
    from types import SimpleNamespace

    pool = small_pool("final", 7)
    types = so.pool_types(pool)
    panels = list(so.leximin(pool, time_limit=60).panels)
    fixed = np.full(len(types.sizes), np.nan)
    limits: list[float] = []

    def recorded(*args, **kwargs):
        limits.append(kwargs["options"]["time_limit"])
        return linprog(*args, **kwargs)
    monkeypatch.setattr(leximin_module, "linprog", recorded)
    weights, _ = leximin_module._final_primal(panels, types, fixed, deadline=time.monotonic() + 60)
    assert weights.sum() == pytest.approx(1.0) and 59 < limits[-1] <= 60 + leximin_module.FINAL_LP_GRACE_S
    leximin_module._final_primal(panels, types, fixed, deadline=time.monotonic() - 100)  # long past it
    assert limits[-1] == leximin_module.FINAL_LP_GRACE_S
    monkeypatch.setattr(leximin_module, "linprog", lambda *a, **k: SimpleNamespace(status=1, message="time limit"))
    with pytest.raises(so.LeximinNotConverged, match="the final LP over the .* panels found ran out of it"):
        leximin_module._final_primal(panels, types, fixed, deadline=time.monotonic() - 1)
