"""The rater-disjoint held-out set: stratified, set aside before sortition, shared by every arm."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dlm import cli

from dlm.data import split
from dlm.data.prism import load_survey
from dlm.errors import DLMError

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def seed_commands(demo_sample, tmp_path_factory):
    """The seed's four `prepare` commands with --eval-ratio 0.1 and the default split."""
    out = tmp_path_factory.mktemp("split_data")
    for mode in ("hard", "soft", "us_rep", "full"):
        assert cli.main(["prepare", "--mode", mode, "--survey", str(demo_sample / "survey.jsonl"),
                         "--utterances", str(demo_sample / "utterances.jsonl"), "--eval-ratio", "0.1",
                         "--output", str(out / f"{mode}.jsonl")]) == 0
    return out


def _rows(path) -> pd.DataFrame:
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])


def _eval_raters(rows: pd.DataFrame) -> list[str]:
    return sorted(set(rows.loc[rows["split"] == "eval", "user_id"]))


def test_no_heldout_rater_has_a_training_row_in_any_file(seed_commands, demo_sample):
    files = {m: _rows(seed_commands / f"{m}.jsonl") for m in ("hard", "soft", "us_rep", "full")}
    eval_users = set().union(*(set(f.loc[f["split"] == "eval", "user_id"]) for f in files.values()))
    train_users = set().union(*(set(f.loc[f["split"] == "train", "user_id"]) for f in files.values()))
    assert eval_users and not eval_users & train_users
    # the split is decided once: every arm's eval rows are the full file's, for the arm's own population
    full_eval = files["full"][files["full"]["split"] == "eval"]
    keys = ["user_id", "interaction_id", "chosen", "rejected"]
    full_keys = set(map(str, full_eval[keys].to_numpy().tolist()))
    ids = []
    for mode, f in files.items():
        e = f[f["split"] == "eval"]
        assert len(e) and set(map(str, e[keys].to_numpy().tolist())) <= full_keys
        heldout = json.loads((seed_commands / f"{mode}.jsonl.manifest.json").read_text())["counts"]["heldout"]
        assert heldout["by"] == "rater" and heldout["train_eval_rater_overlap"] == 0
        ids.append(heldout["heldout_rater_ids"])
    assert all(i == ids[0] for i in ids) and set(full_eval["user_id"]) <= set(ids[0])
    survey = load_survey(demo_sample / "survey.jsonl").set_index("user_id")
    assert set(survey.loc[_eval_raters(files["hard"]), "study_locale"]) == {"us"}  # the panel config's locale
    assert survey.loc[_eval_raters(files["us_rep"]), "included_in_US_REP"].all()


def test_every_category_of_the_strata_has_heldout_raters(demo_sample):
    survey = load_survey(demo_sample / "survey.jsonl")
    held = split.heldout_raters(survey, 0.1, seed=0)
    active = survey[~survey["survey_only"] & (survey["num_completed_conversations"] > 0)]
    assert len(held.raters) == int(np.ceil(0.1 * len(active)))
    out = active[active["user_id"].isin(held.raters)]
    for column in split.STRATIFY_BY:
        sizes = active[column].value_counts()
        assert set(sizes[sizes >= 2].index) <= set(out[column])  # every category with 2+ raters is covered
        assert not set(sizes[sizes == 1].index) & set(out[column])  # a category's only rater stays in training
    assert held.uncovered == {"age": ["Prefer not to say"]}  # PRISM's one rater who did not give an age
    assert split.heldout_raters(survey, 0.1, seed=0) == held  # deterministic per seed
    assert split.heldout_raters(survey.sample(frac=1, random_state=1), 0.1, seed=0).raters == held.raters
    assert split.heldout_raters(survey, 0.1, seed=1).raters != held.raters


def test_sortition_with_the_split_flags_gives_the_pi_of_prepare(demo_sample, tmp_path):
    common = ["--survey", str(demo_sample / "survey.jsonl"), "--panel-config", "configs/panels/small.yaml",
              "--num-panel-samples", "300", "--eval-ratio", "0.1"]
    assert cli.main(["sortition", *common, "--output", str(tmp_path / "probs.csv")]) == 0
    assert cli.main(["prepare", "--mode", "soft", *common, "--utterances", str(demo_sample / "utterances.jsonl"),
                     "--output", str(tmp_path / "soft.jsonl")]) == 0
    pi = pd.read_csv(tmp_path / "probs.csv").set_index("user_id")["probability"]
    rows = _rows(tmp_path / "soft.jsonl")
    train = rows[rows["split"] == "train"]
    ratio = train["weight"] / train["user_id"].map(pi)
    assert np.allclose(ratio, ratio.iloc[0])  # soft weights ∝ the standalone π
    heldout = set(rows.loc[rows["split"] == "eval", "user_id"])
    assert heldout and not heldout & set(pi.index)  # held-out raters were never in the sortition pool
    assert len(pi) == len(set(pi.index))


def test_bad_split_options_are_one_clear_error(demo_sample):
    survey = load_survey(demo_sample / "survey.jsonl")
    with pytest.raises(DLMError, match="--eval-ratio must be in"):
        split.training_survey(survey, 1.0)
    with pytest.raises(DLMError, match="--split-by must be one of rater, interaction"):
        split.training_survey(survey, 0.1, "person")
    with pytest.raises(DLMError, match="survey has no column 'education'.*--split-by interaction"):
        split.heldout_raters(survey.drop(columns="education"), 0.1)
