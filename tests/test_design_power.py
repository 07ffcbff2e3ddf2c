"""A primary that can be tested, by construction: `dlm design` reports every contrast's MDE and refuses an untestable primary."""

from __future__ import annotations

import math

import pytest
import yaml

from conftest import run_cli
from dlm.errors import DLMError
from dlm.experiment import mde
from dlm.experiment.profiles import load_profile


def write_yaml(path, body: dict):
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def test_dlm_design_passes_the_real_profile_with_its_primary_within_max_mde():
    out = run_cli("design", "--profile", "real")
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if "(primary): MDE" in ln)
    value = float(line.split("MDE ")[1].split()[0])
    assert value <= load_profile("real")["max_mde"] == 0.15
    for contrast in ("hard:contrast", "hard:size_matched", "soft:soft_resampled", "soft_leximin:soft"):
        assert f"  {contrast}: MDE" in out.stdout  # secondaries are reported too
    assert "verdict: the primary can be tested" in out.stdout


def test_a_real_copy_without_seeds_or_draws_for_the_primary_is_refused_in_one_line(tmp_path):
    profile = load_profile("real")
    profile.pop("_path")
    profile["parameters"].update(train_seeds=1, panel_draws=1, arms="hard,soft")
    profile["notebooks"]["06_evaluate"]["contrasts"] = ""
    path = write_yaml(tmp_path / "untestable.yaml", profile)
    out = run_cli("design", "--profile", path)
    assert out.returncode == 2
    error = out.stderr.strip().splitlines()
    assert len(error) == 1 and "untestable: the primary soft:hard has MDE" in error[0]
    for key in ("panel_draws", "train_seeds", "n_questions", "max_mde"):
        assert key in error[0]  # the profile keys to change
    assert "the cheapest change found: " in error[0] and "GPU-hours" in error[0]
    found = error[0].split("the cheapest change found: ")[1].split(" (MDE")[0]
    keys = {k: int(v) for k, v in (item.split(": ") for item in found.split(", "))}
    fixed = mde.with_design(load_profile(str(path)), keys.get("panel_draws", 1), keys.get("train_seeds", 1),
                            keys.get("n_questions", 10))
    assert mde.plan(fixed, propose=False).ok  # the proposal meets the limit
    exploratory = run_cli("design", "--profile", path, "--max-mde", "inf")
    assert exploratory.returncode == 0 and "nothing is refused" in exploratory.stdout


def test_an_undrawn_arm_with_one_model_per_side_is_conditional_and_the_limit_comes_from_the_profile():
    profile = {"parameters": {"arms": "soft,soft_leximin"}, "notebooks": {"06_evaluate": {
        "primary": "soft_leximin:soft"}}, "max_mde": 0.5}
    plan = mde.plan(profile, propose=False)
    assert plan.primary.result.estimand == "conditional" and "conditional on the trained models" in plan.lines()[1]
    assert not plan.ok and plan.max_mde == 0.5 and "an arm contrast needs two or more models" in plan.refusal()
    assert mde.plan({**profile, "max_mde": math.inf}).ok
    assert mde.max_mde(profile, math.inf) == math.inf
    with pytest.raises(DLMError, match="max_mde must be positive"):
        mde.max_mde({"max_mde": 0})
    with pytest.raises(DLMError, match="max_mde must be a number"):
        mde.max_mde({"max_mde": "small"})


def test_demo_and_ci_are_exploratory_profiles():
    for name in ("demo", "ci"):
        assert math.isinf(mde.max_mde(load_profile(name)))
