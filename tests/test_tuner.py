"""Notebook 02's quota tuner without a browser: shares stay summed to 1, the verdict names binding quotas, saves load."""

from __future__ import annotations

import shlex

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_cli

from dlm import sortition as so
from dlm.errors import DLMError
from dlm.sortition.tuning import check_quotas, renormalise, run_algorithm, save_panel_config

# 13 people: 3 of group a, 10 of group b; 4 young, 9 old
TABLE = pd.DataFrame({"user_id": [f"p{i}" for i in range(13)], "g": ["a"] * 3 + ["b"] * 10,
                      "h": ["young", "old"] * 2 + ["old"] * 9})


def settings(k: int = 6, share_a: float = 0.3, tolerance: float = 0.2) -> dict:
    return {"panel_size": k, "tolerance": tolerance, "tolerance_mode": "relative",
            "attributes": [{"name": "g", "column": "g", "population_proportions": {"a": share_a, "b": 1 - share_a}},
                           {"name": "h", "column": "h", "quotas": {"young": [1, 3], "old": [0, 6]}}]}


# ----------------------------------------------------------------------------- renormalisation


def test_editing_one_share_rescales_the_others_and_keeps_the_sum_at_one():
    shares = {"x": 0.5, "y": 0.3, "z": 0.2}
    new = renormalise(shares, "x", 0.8)
    assert new["x"] == 0.8 and sum(new.values()) == pytest.approx(1, abs=1e-12)
    assert new["y"] / new["z"] == pytest.approx(1.5, rel=1e-3)  # the others keep their ratio
    assert list(new) == ["x", "y", "z"]


def test_renormalised_shares_always_pass_the_config_reader():
    rng = np.random.default_rng(0)
    shares = dict(zip("abcdefg", rng.dirichlet(np.ones(7)).round(4), strict=True))
    for _ in range(200):
        shares = renormalise(shares, str(rng.choice(list(shares))), float(rng.uniform(-0.2, 1.2)))
        assert all(0 <= v <= 1 for v in shares.values())
        assert sum(shares.values()) == pytest.approx(1, abs=1e-9)
        raw = {"panel_size": 10, "attributes": [{"name": "g", "population_proportions": shares}]}
        so.parse_panel_config(raw)  # never "sum to 1.380"


def test_renormalise_edge_cases():
    assert renormalise({"x": 1.0, "y": 0.0, "z": 0.0}, "x", 0.4) == {"x": 0.4, "y": 0.3, "z": 0.3}
    assert renormalise({"x": 0.5, "y": 0.5}, "x", 1.7) == {"x": 1.0, "y": 0.0}
    assert renormalise({"only": 1.0}, "only", 0.2) == {"only": 1.0}
    with pytest.raises(DLMError, match="unknown category 'w'"):
        renormalise({"x": 1.0}, "w", 0.5)


# ----------------------------------------------------------------------------- feasibility verdict


def test_feasible_setting_says_so():
    check = check_quotas(TABLE, settings())
    assert check.feasible and check.pool is not None
    assert check.headline == "Feasible: a panel of 6 from this pool of 13 meets every quota."
    assert "Binding" not in check.text()


def test_infeasible_setting_names_the_binding_quotas_and_fixes():
    check = check_quotas(TABLE, settings(k=8, share_a=0.7, tolerance=0.05))  # a needs 5 seats, the pool has 3
    assert not check.feasible
    assert check.headline.startswith("Infeasible: no panel of 8")
    assert any(b.startswith("g=a min 5") for b in check.binding)
    assert "g=a min 5" in check.text() and "g=a min 5" in check.html()
    assert "Smallest fixes" in check.text() and check.fixes


def test_unreadable_setting_is_a_verdict_not_a_traceback():
    check = check_quotas(TABLE, settings(k=20))
    assert check.error and "larger than the pool" in check.headline and check.pool is None


# ----------------------------------------------------------------------------- runs


def test_runs_report_minimum_probability_and_gini():
    pool = check_quotas(TABLE, settings()).pool
    legacy = run_algorithm(pool, "legacy", n_samples=300, seed=1)
    lex = run_algorithm(pool, "leximin", leximin_time_limit=60)
    for r in (legacy, lex):
        assert r.probabilities.sum() == pytest.approx(6)
        assert r.summary.min == pytest.approx(r.probabilities.min())
        assert r.summary.gini == pytest.approx(so.gini(r.probabilities))
        assert f"minimum π {r.summary.min:.4f}" in r.text() and "Gini" in r.text()
    assert lex.summary.min >= legacy.summary.min - 1e-9
    with pytest.raises(DLMError, match="legacy or leximin"):
        run_algorithm(pool, "random")


# ----------------------------------------------------------------------------- saving


def test_saved_yaml_reads_back_as_the_same_quotas(tmp_path):
    raw = settings(share_a=0.25)
    cfg = save_panel_config(raw, tmp_path / "tuned.yaml", "configs/x.yaml")
    direct = so.parse_panel_config(raw)
    assert [(a.lo, a.hi) for a in cfg.attributes] == [(a.lo, a.hi) for a in direct.attributes]
    assert cfg.panel_size == 6 and cfg.tolerance == 0.2
    text = (tmp_path / "tuned.yaml").read_text()
    assert text.startswith("# Panel config saved by the quota tuner") and "!!" not in text  # plain YAML


def test_invalid_setting_is_not_saved(tmp_path):
    bad = settings()
    bad["attributes"][0]["population_proportions"] = {"a": 0.9, "b": 0.9}
    with pytest.raises(DLMError, match="sum to 1.800"):
        save_panel_config(bad, tmp_path / "tuned.yaml")
    assert not (tmp_path / "tuned.yaml").exists()


# ----------------------------------------------------------------------------- the widget


def test_tuner_widget_rescales_shares_updates_the_verdict_and_saves(tmp_path):
    pytest.importorskip("ipywidgets")
    from dlm.notebook.tuner import QuotaTuner

    config = tmp_path / "start.yaml"
    config.write_text(yaml.safe_dump(settings(k=8, tolerance=0.05)))
    tuner = QuotaTuner(TABLE, str(config), save_path=tmp_path / "out.yaml", n_samples=200)
    assert tuner.check.feasible and "Feasible" in tuner.message.value and tuner.plot.value
    tuner.set_share("g", "a", 0.7)  # a needs 5 of 8 seats; the pool has 3
    assert tuner.shares[("g", "b")].value == pytest.approx(0.3)
    assert not tuner.check.feasible and "g=a min 5" in tuner.message.value
    assert tuner.run("leximin") is None and "feasible first" in tuner.run_status.value
    tuner.reset()
    assert tuner.check.feasible and tuner.shares[("g", "a")].value == pytest.approx(0.3)
    assert tuner.run("legacy") is not None and "LEGACY: minimum π" in tuner.run_status.value
    lines: list[str] = []  # what the status line showed while LEXIMIN ran
    tuner.run_status.observe(lambda change: lines.append(change["new"]), names="value")
    assert tuner.run("leximin") is not None and "LEXIMIN: minimum π" in tuner.run_status.value
    live = [line for line in lines if "running LEXIMIN" in line]
    assert any("LEXIMIN types fixed: " in line for line in live)  # a progress line while it runs ...
    assert all("LEGACY: minimum π" in line for line in live)  # ... under the last result, still shown
    tuner.bounds[("h", "young")][0].value = 2
    assert not tuner.runs  # a run under the old quotas is dropped
    saved = tuner.save()
    assert saved == tmp_path / "out.yaml" and "saved" in tuner.save_status.value
    assert so.load_panel_config(saved).attributes[1].lo["young"] == 2
    bundle = tuner._repr_mimebundle_()
    assert {"application/vnd.jupyter.widget-view+json", "image/png", "text/html"} <= set(bundle)
    assert bundle["text/plain"].startswith("Feasible")


def test_dlm_sortition_accepts_a_saved_tuning(demo_sample, tmp_path):
    source = so.load_pool_source(demo_sample / "survey.jsonl", "configs/panels/small.yaml")
    raw = so.tuning.base_settings(source.config)
    shares = raw["attributes"][2]["population_proportions"]
    raw["attributes"][2]["population_proportions"] = renormalise(shares, "65+ years old", 0.3)
    assert check_quotas(source.table, raw).feasible
    save_panel_config(raw, tmp_path / "tuned.yaml", pool_flags=source.pool_flags())
    # The command the saved file prints selects from the pool it was tuned on, run as written.
    header = (tmp_path / "tuned.yaml").read_text().splitlines()
    command = next(line for line in header if line.startswith("# Use it with: ")).removeprefix("# Use it with: ")
    assert f"--survey {demo_sample / 'survey.jsonl'}" in command
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "dlm"]
    out = run_cli(*argv[3:], "--num-panel-samples", "100", "--output", tmp_path / "probs.csv")
    assert out.returncode == 0, out.stderr
    assert pd.read_csv(tmp_path / "probs.csv")["probability"].sum() == pytest.approx(40)
