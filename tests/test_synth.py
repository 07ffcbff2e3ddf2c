"""The generated sample has PRISM's schema and SCHEMA.md's invariants, and a documented planted effect."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from dlm.data import synth
from dlm.data.prism import load_prism


@pytest.fixture(scope="module")
def paper(paper_sample):
    return load_prism(paper_sample)


@pytest.fixture(scope="module")
def demo(demo_sample):
    return load_prism(demo_sample)


def test_marked_synthetic(demo, demo_sample):
    assert demo.synthetic
    assert "SYNTHETIC" in (demo_sample / "SYNTHETIC.md").read_text()


def test_survey_marginals_match_schema(paper):
    s = paper.survey
    assert len(s) == 1500 and s["user_id"].tolist() == [f"user{i}" for i in range(1500)]
    assert s["study_locale"].value_counts()[["us", "uk", "south africa", "canada"]].tolist() == [386, 341, 88, 54]
    assert s["study_locale"].nunique() == 33
    assert s["age"].value_counts()["25-34 years old"] == 454
    assert s["gender"].value_counts().to_dict() == {"Male": 757, "Female": 718, "Non-binary / third gender": 21,
                                                    "Prefer not to say": 4}
    assert s["ethnicity.simplified"].value_counts()["Other"] == 39
    assert s["ethnicity.categorised"].value_counts()["Middle Eastern / Arab"] == 14
    assert s["religion.simplified"].value_counts()["No Affiliation"] == 851
    assert s["education"].value_counts()["University Bachelors Degree"] == 637
    assert s["survey_only"].sum() == 104


def test_rep_flags(paper):
    s = paper.survey
    us_rep, uk_rep, bal = s["included_in_US_REP"], s["included_in_UK_REP"], s["included_in_balanced_subset"]
    assert (us_rep.sum(), uk_rep.sum(), bal.sum()) == (230, 243, 1246)
    assert not (us_rep & ~bal).any() and not (uk_rep & ~bal).any()
    assert (s.loc[us_rep, "study_locale"] == "us").all()
    assert s.loc[us_rep, "gender"].isin(["Male", "Female"]).all()


def test_conversations_per_participant_follow_the_real_histogram(paper):
    s = paper.survey
    per = s.loc[~s["survey_only"], "num_completed_conversations"].value_counts().to_dict()
    assert per == synth.CONVERSATIONS_PER_PARTICIPANT
    counted = paper.conversations["user_id"].value_counts()
    assert (counted.reindex(s["user_id"]).fillna(0).to_numpy() == s["num_completed_conversations"].to_numpy()).all()
    assert 7900 <= len(paper.conversations) <= 8100


def test_responses_per_conversation_close_to_real(paper):
    real = np.array(list(synth.RESPONSES_PER_CONVERSATION.values()), float)
    real /= real.sum()
    got = paper.utterances.groupby("conversation_id").size().value_counts(normalize=True)
    got = got.reindex(list(synth.RESPONSES_PER_CONVERSATION)).fillna(0).to_numpy()
    assert 0.5 * np.abs(real - got).sum() < 0.03  # total variation distance
    assert 66_000 <= len(paper.utterances) <= 71_000


def test_turn_structure_models_and_flags(paper):
    u = paper.utterances
    t0 = u[u["turn"] == 0].groupby("interaction_id")
    assert t0["model_name"].nunique().isin([3, 4]).all()
    assert (t0["model_name"].nunique() == t0.size()).all()  # different models at turn 0
    later = u[u["turn"] > 0].groupby("interaction_id")
    assert (later.size() == 2).all() and (later["model_name"].nunique() == 1).all()
    flags = u.groupby("interaction_id")["if_chosen"].sum()
    assert (flags >= 1).all() and ((flags == 2).mean() > 0.002)  # identical A/B texts are both flagged
    doubles = u[u["interaction_id"].isin(flags[flags == 2].index)]
    assert (doubles.groupby("interaction_id")["model_response"].nunique() == 1).all()
    assert u["score"].between(1, 100).all() and 60 < u["score"].mean() < 70
    assert (u["model_response"] == "EMPTY STRING").sum() > 0
    assert set(u["model_provider"]) == {"huggingface_api", "cohere", "anthropic", "openai", "google", "aleph"}
    assert u["model_name"].nunique() == 21


def test_turn0_near_tie_rate_is_about_17_5_percent(paper):
    u = paper.utterances
    diffs = [abs(a - b) for _, g in u[u["turn"] == 0].groupby("interaction_id")["score"]
             for a, b in itertools.combinations(g.to_numpy(), 2)]
    assert 40_000 < len(diffs) < 45_000
    assert 0.155 < np.mean(np.array(diffs) <= 5) < 0.195


def test_chosen_is_highest_score_at_turn0(paper):
    u = paper.utterances[paper.utterances["turn"] == 0]
    best = u.groupby("interaction_id")["score"].transform("max")
    assert (u.loc[u["if_chosen"], "score"] == best[u["if_chosen"]]).all()


def test_history_continues_from_the_chosen_response(paper):
    conv = paper.conversations.iloc[0]
    hist = conv["conversation_history"]
    assert {h["role"] for h in hist} == {"user", "model"}
    assert conv["conversation_turns"] == 1 + max(h["turn"] for h in hist)


def test_planted_effect_older_raters_prefer_formal(paper):
    u = paper.utterances.merge(paper.survey[["user_id", "age"]], on="user_id")
    u = u[u["model_response"] != "EMPTY STRING"]
    formal = u["model_response"].str.startswith("Certainly.")
    older = u["age"].isin(synth.OLDER_AGES)
    gap_old = u.loc[older & formal, "score"].mean() - u.loc[older & ~formal, "score"].mean()
    gap_young = u.loc[~older & formal, "score"].mean() - u.loc[~older & ~formal, "score"].mean()
    assert gap_old == pytest.approx(synth.OLDER_PREFERENCE, abs=2.5)
    assert gap_young == pytest.approx(-synth.YOUNGER_PREFERENCE, abs=2.5)


def test_topics_follow_prism_clusters(paper):
    opening = paper.conversations["opening_prompt"]
    top = Counter(opening).most_common(1)[0][0]
    assert "disagreement with my partner" in top  # managing relationships is the largest cluster


def test_same_seed_same_bytes_other_seed_differs(tmp_path, demo_sample):
    synth.generate_sample(tmp_path / "a", "demo", 0)
    synth.generate_sample(tmp_path / "b", "demo", 1)
    for name in ("survey", "conversations", "utterances"):
        assert (tmp_path / "a" / f"{name}.jsonl").read_bytes() == (demo_sample / f"{name}.jsonl").read_bytes()
    assert (tmp_path / "b" / "utterances.jsonl").read_bytes() != (demo_sample / "utterances.jsonl").read_bytes()


def test_demo_scale_is_small(demo):
    assert len(demo.survey) == 1500
    assert len(demo.utterances) < 12_000
