"""Budget policy as a design choice: `budget: steps` matches optimizer steps, `budget: epochs` matches passes over each arm's rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlm import preferences
from dlm.errors import DLMError
from dlm.experiment import designs as experiment

ROOT = Path(__file__).resolve().parent.parent
SMALL = str(ROOT / "configs/panels/small.yaml")


def _design(demo_sample: Path, **settings) -> experiment.Design:
    return experiment.design("hard,soft", prism_source=str(demo_sample), panel_config=SMALL, num_panel_samples=300,
                             max_steps=40, **settings)


def test_epochs_gives_every_arm_the_same_passes_and_different_steps(demo_sample):
    d = _design(demo_sample, budget="epochs", train_epochs=2.0)
    hard, soft = experiment.summarise(d)
    assert hard.train_rows < soft.train_rows and hard.steps < soft.steps  # steps follow each arm's rows
    for s in (hard, soft):
        assert 2.0 <= s.epochs < 2.0 + 2 * d.effective_batch() / s.train_rows  # whole batches, as the trainer counts
        assert s.other_steps == 40 and s.other_epochs == pytest.approx(40 * d.effective_batch() / s.train_rows)
    steps = experiment.summarise(_design(demo_sample))
    assert {s.steps for s in steps} == {40} and steps[0].epochs > steps[1].epochs  # today's matched steps
    text = experiment.format_design(d, [hard, soft])
    assert "budget: epochs, every run 2 epochs of its own rows (steps differ)" in text and "under budget steps" in text


def test_the_budget_is_in_every_runs_settings_and_a_run_under_the_other_budget_is_unfinished(demo_sample):
    d = _design(demo_sample, budget="epochs", train_epochs=2.0)
    settings = d.train_settings(d.runs()[0])
    assert settings["budget"] == "epochs" and settings["num_train_epochs"] == 2.0 and settings["max_steps"] == -1
    assert _design(demo_sample).train_settings(d.runs()[0])["budget"] == "steps"
    trained_for_steps = {"budget": "steps", "steps": 40, "config": {"dpo": {"max_steps": 40}}}
    assert d.budget_mismatch(trained_for_steps) == "trained under budget steps, the design asks for epochs"
    assert _design(demo_sample).budget_mismatch(trained_for_steps) == ""
    assert d.budget_mismatch({"budget": "epochs", "config": {"dpo": {"num_train_epochs": 2.0}}}) == ""
    with pytest.raises(DLMError, match="budget must be one of steps, epochs"):
        _design(demo_sample, budget="tokens")


def test_the_profile_key_reaches_the_design():
    profile = {"parameters": {"arms": "hard,soft", "budget": "epochs", "train_epochs": 3.0}}
    d = experiment.from_profile(profile)
    assert d.budget == "epochs" and d.epochs() == 3.0


@pytest.mark.slow
def test_a_run_trained_under_budget_epochs_records_it(demo_sample, tmp_path):
    from dlm.training import tiny_model
    from dlm.training import train_dpo as training

    base = tmp_path / "tiny"
    tiny_model.make_tiny_model(base, seed=0, warmup_steps=0)
    d = experiment.dataclasses.replace(_design(demo_sample, budget="epochs", train_epochs=0.05), model_id=str(base),
                                       eval_ratio=0.0, data_dir=str(tmp_path), checkpoint_dir=str(tmp_path / "ck"))
    source = Path(d.prism_source)
    for run in d.runs():
        preferences.prepare(source / "survey.jsonl", source / "utterances.jsonl", d.dataset_path(run),
                            d.prepare_options(run))
        training.train(d.dataset_path(run), d.checkpoint(run), {**d.train_settings(run), "max_length": 64})
    saved = [json.loads((d.checkpoint(r) / "training_summary.json").read_text()) for r in d.runs()]
    assert [s["budget"] for s in saved] == ["epochs", "epochs"]
    assert saved[0]["steps"] != saved[1]["steps"]
    assert [d.budget_mismatch(s) for s in saved] == ["", ""]
