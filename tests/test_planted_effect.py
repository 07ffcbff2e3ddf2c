"""The planted effect is recovered in the direction planted (generated sample, seed 0, demo budget).

Raters aged 55+ prefer formal answers and younger raters casual ones (dlm/data/synth.py). The census
panel (`hard`, 38% aged 55+) and the crowd-worker panel (`contrast`, 11%) come from the same pool
and have the same size, so the model trained on the census panel must prefer formal answers more
on held-out pairs, as its training data do. Both arms come from the demo profile's design (the arm
registry, its split and its matched step budget), as `make demo` builds them.
"""

from __future__ import annotations

from pathlib import Path

import dataclasses

import numpy as np
import pytest

from dlm.alignment import heldout as alignment
from dlm.experiment import designs as experiment
from dlm.preferences import build as preferences
from dlm.sortition import load_panel_config
from dlm.training import tiny_model
from dlm.training import train_dpo as training

PANELS = ("hard", "contrast")


@pytest.fixture(scope="module")
def design(demo_sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("planted")
    demo = experiment.load_design("demo", "03_prepare")
    return dataclasses.replace(demo, arms=tuple(experiment.load_arms()[a] for a in ("full", *PANELS)),
                               prism_source=str(demo_sample), data_dir=str(out), checkpoint_dir=str(out / "ck"),
                               model_id=str(out / "tiny"))


@pytest.fixture(scope="module")
def prepared(design, demo_sample):
    for d in design.datasets():
        preferences.prepare(demo_sample / "survey.jsonl", demo_sample / "utterances.jsonl", design.dataset_path(d),
                            design.prepare_options(d))
    return Path(design.data_dir)


def test_census_panel_data_favour_formal_answers_more(prepared):
    share = {arm: alignment.formal_won_share(prepared / f"{arm}.jsonl") for arm in PANELS}
    assert share["hard"] > share["contrast"] + 0.15, share


def test_model_trained_on_the_census_panel_prefers_formal_answers_more(design, prepared):
    tiny_model.make_tiny_model(design.model_id, seed=0, warmup_steps=200)  # as the demo builds it
    pairs = alignment.eval_pairs(prepared / "full.jsonl", limit=600)
    reference = alignment.pair_margins(design.model_id, pairs, None)
    share, margins = {}, {}
    for arm in PANELS:
        run = design.find(arm)
        training.train(design.dataset_path(run), design.checkpoint(run), design.train_settings(run))
        margins[arm] = alignment.pair_margins(str(design.checkpoint(run)), pairs, reference)["margin"]
        share[arm] = alignment.style_preference(pairs, margins[arm])
    assert np.isfinite(list(share.values())).all()
    assert share["hard"] > share["contrast"] + 0.05, share
    # The verdict's interval (over held-out raters, conditional on these two trained models) excludes 0.
    configs = {arm: load_panel_config(design.arm_panel_config(experiment.load_arms()[arm])) for arm in PANELS}
    verdict = alignment.planted_verdict(alignment.style_by_arm(pairs, margins), configs)
    assert verdict.older_arm == "hard" and verdict.difference == pytest.approx(share["hard"] - share["contrast"])
    assert verdict.ci_low > 0 and verdict.recovered, verdict.sentence()
    assert verdict.estimand == "conditional on the trained models" and verdict.raters >= 20
