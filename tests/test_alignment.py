"""Aligned to whom: held-out preference accuracy by group, with rater-clustered intervals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dlm import alignment

pytestmark = pytest.mark.filterwarnings("ignore")


def test_accuracy_by_group_counts_ties_as_half_and_clusters_by_rater():
    pairs = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2", "u3", "u3"]})
    groups = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "age": ["old", "young", "young"]}).set_index("user_id")
    margins = {"m": np.array([1.0, -1.0, 0.0, 2.0, 3.0, 4.0])}
    table = alignment.accuracy_by_group(pairs, margins, groups, min_raters=1)
    overall = table[table["attribute"] == "overall"].iloc[0]
    assert overall["accuracy"] == pytest.approx((1 + 0 + 0.5 + 1 + 1 + 1) / 6)
    assert overall["raters"] == 3 and overall["ci_low"] < overall["accuracy"] < overall["ci_high"]
    young = table[(table["attribute"] == "age") & (table["group"] == "young")].iloc[0]
    assert young["accuracy"] == pytest.approx(3.5 / 4) and young["pairs"] == 4


def test_style_preference_reads_the_planted_marker():
    pairs = pd.DataFrame({"chosen": [" Certainly. a", " Sure thing! b", " Certainly. c"],
                          "rejected": [" Sure thing! x", " Certainly. y", " Certainly. z"]})
    # pair 3 has the same style on both sides and does not count
    assert alignment.style_preference(pairs, np.array([1.0, 1.0, 5.0])) == pytest.approx(0.5)
    assert alignment.style_preference(pairs, np.array([1.0, -1.0, 5.0])) == pytest.approx(1.0)


def test_a_model_scored_against_itself_has_zero_margin(tmp_path):
    from dlm.data import load_survey
    from dlm.tiny_model import make_tiny_model
    from prism_tiny import write_tiny_prism

    from dlm.preferences import PrepareOptions, prepare

    prism = write_tiny_prism(tmp_path / "prism")
    prepare(prism / "survey.jsonl", prism / "utterances.jsonl", tmp_path / "full.jsonl",
            PrepareOptions(mode="full", eval_ratio=0.99))
    model = str(make_tiny_model(tmp_path / "m", warmup_steps=5))
    survey = load_survey(prism / "survey.jsonl")
    table, pairs, margins = alignment.preference_accuracy(tmp_path / "full.jsonl", model, {"same": model}, survey,
                                                          [("gender", "gender")])
    assert len(pairs) == sum(json.loads(x)["split"] == "eval" for x in (tmp_path / "full.jsonl").read_text().splitlines())
    assert np.allclose(margins["same"], 0, atol=1e-4)
    assert set(table["model"]) <= {"base", "same"}  # groups with < 5 raters are left out, not guessed
    assert list(table.columns)[:3] == ["model", "attribute", "group"]
