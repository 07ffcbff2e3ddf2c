"""The planted effect is recovered in the direction planted (generated sample, seed 0, demo budget).

Raters aged 55+ prefer formal answers and younger raters casual ones (dlm/synth.py). The census
panel (`hard`, 38% aged 55+) and the crowd-worker panel (`contrast`, 11%) come from the same pool
and have the same size, so the model trained on the census panel must prefer formal answers more
on held-out pairs, as its training data do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dlm import alignment, preferences, tiny_model, training

ROOT = Path(__file__).resolve().parent.parent
PANELS = {"hard": ROOT / "configs/panel_config.yaml", "contrast": ROOT / "configs/panels/crowdworkers.yaml"}


@pytest.fixture(scope="module")
def prepared(demo_sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("planted")
    for arm, config in [("full", None), *PANELS.items()]:
        opts = preferences.PrepareOptions(mode="full" if arm == "full" else "hard", panel_config=config and str(config),
                                          eval_ratio=0.1)
        preferences.prepare(demo_sample / "survey.jsonl", demo_sample / "utterances.jsonl", out / f"{arm}.jsonl", opts)
    return out


def test_census_panel_data_favour_formal_answers_more(prepared):
    share = {arm: alignment.formal_won_share(prepared / f"{arm}.jsonl") for arm in PANELS}
    assert share["hard"] > share["contrast"] + 0.15, share


def test_model_trained_on_the_census_panel_prefers_formal_answers_more(prepared, tmp_path):
    base = tmp_path / "tiny"
    tiny_model.make_tiny_model(base, seed=0, warmup_steps=200)  # as the demo builds it
    settings = {**training.load_recipe(ROOT / "configs/train/tiny.yaml"), "model_id": str(base), "seed": 0}
    pairs = alignment.eval_pairs(prepared / "full.jsonl", limit=600)
    reference = alignment.pair_margins(str(base), pairs, None)
    share = {}
    for arm in PANELS:
        training.train(prepared / f"{arm}.jsonl", tmp_path / arm, settings)
        share[arm] = alignment.style_preference(pairs, alignment.pair_margins(str(tmp_path / arm), pairs, reference)["margin"])
    assert np.isfinite(list(share.values())).all()
    assert share["hard"] > share["contrast"] + 0.05, share
