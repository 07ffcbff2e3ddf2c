"""The PRISM loader accepts PRISM's real layout and rejects bad files with one clear line."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import run_cli

from dlm.data.prism import load_prism, load_survey, resolve_column, value_counts
from dlm.errors import DLMError

LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"


def test_loads_all_tables_with_nested_columns_and_any_key_order(tiny_prism):
    data = load_prism(tiny_prism)
    assert len(data.survey) == 3 and len(data.utterances) == 11 and len(data.conversations) == 2
    assert {"ethnicity.simplified", "religion.simplified", "location.reside_countryISO"} <= set(data.survey.columns)
    assert "an_unknown_future_field" in data.survey.columns  # extra fields are kept, not rejected
    assert data.survey.loc[1, "gender"] == "Male"  # row whose keys were reversed


def test_bare_nested_name_means_simplified(tiny_prism):
    survey = load_survey(tiny_prism / "survey.jsonl")
    assert resolve_column(survey, "ethnicity") == "ethnicity.simplified"
    assert value_counts(survey, ["religion"])["religion"].to_dict() == {"No Affiliation": 3}
    with pytest.raises(DLMError, match="location.reside_countryISO"):
        resolve_column(survey, "location")


def test_lfs_pointer_is_named_with_the_command_to_fix_it(tiny_prism):
    (tiny_prism / "utterances.jsonl").write_text(LFS_POINTER)
    with pytest.raises(DLMError, match=r"utterances.jsonl is a Git LFS pointer.*git lfs pull"):
        load_prism(tiny_prism)


def test_missing_file_is_named(tiny_prism):
    (tiny_prism / "conversations.jsonl").unlink()
    with pytest.raises(DLMError, match="conversations.jsonl: file not found"):
        load_prism(tiny_prism)


def test_missing_required_field_names_field_and_line(tiny_prism):
    lines = (tiny_prism / "survey.jsonl").read_text().splitlines()
    row = json.loads(lines[1])
    del row["gender"]
    lines[1] = json.dumps(row)
    (tiny_prism / "survey.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DLMError, match=r"survey.jsonl: line 2 lacks required field 'gender'"):
        load_survey(tiny_prism / "survey.jsonl")


def test_malformed_json_names_file_and_line(tiny_prism):
    path = tiny_prism / "utterances.jsonl"
    lines = path.read_text().splitlines()
    lines[4] = lines[4][:30]  # a truncated line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DLMError, match=r"utterances.jsonl: line 5 is not valid JSON"):
        load_prism(tiny_prism)


def test_wrong_type_names_field_and_line(tiny_prism):
    path = tiny_prism / "utterances.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows[6]["score"] = "55"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DLMError, match=r"line 7 field 'score' should be an integer, got str"):
        load_prism(tiny_prism)


def test_boolean_is_not_accepted_as_integer(tiny_prism):
    path = tiny_prism / "utterances.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows[0]["turn"] = True
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DLMError, match="field 'turn' should be an integer"):
        load_prism(tiny_prism)


def test_missing_folder_says_how_to_get_the_data(tmp_path):
    with pytest.raises(DLMError, match="git clone https://huggingface.co/datasets/HannahRoseKirk/prism-alignment"):
        load_prism(tmp_path / "nope")


def test_hub_loader_reads_a_dataset_repo_through_datasets(tiny_prism, tmp_path, monkeypatch):
    """The Hub code path (load_dataset with one config per file) on a local copy of the repo layout."""
    repo = tmp_path / "prism-alignment-repo"
    shutil.copytree(tiny_prism, repo)
    configs = "\n".join(f"- config_name: {n}\n  data_files: {n}.jsonl" for n in ("survey", "conversations", "utterances"))
    (repo / "README.md").write_text(f"---\nconfigs:\n{configs}\n---\n# PRISM (test copy)\n")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    data = load_prism(f"hub:{repo}")
    local = load_prism(tiny_prism)
    assert data.source == f"hub:{repo}"
    assert sorted(data.survey["user_id"]) == sorted(local.survey["user_id"])
    assert data.survey.set_index("user_id").loc["user1", "ethnicity.simplified"] == "White"
    assert data.utterances["score"].tolist() == local.utterances["score"].tolist()
    assert "an_unknown_future_field" in data.survey.columns


def test_explore_cli_prints_counts_per_column(tiny_prism):
    out = run_cli("explore", "--survey", tiny_prism / "survey.jsonl", "--columns", "gender,ethnicity,study_locale")
    assert out.returncode == 0, out.stderr
    assert "gender (2 values, 3 participants)" in out.stdout
    assert "Female" in out.stdout and "ethnicity (1 values, 3 participants)" in out.stdout


@pytest.mark.parametrize("breakage, message", [
    (lambda p: (p / "survey.jsonl").write_text(LFS_POINTER), "Git LFS pointer"),
    (lambda p: (p / "survey.jsonl").write_text('{"user_id": "user0"\n'), "line 1 is not valid JSON"),
    (lambda p: (p / "survey.jsonl").unlink(), "file not found"),
])
def test_explore_cli_bad_input_is_one_line_and_nonzero(tiny_prism, breakage, message):
    breakage(tiny_prism)
    out = run_cli("explore", "--survey", tiny_prism / "survey.jsonl")
    assert out.returncode == 2
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_explore_unknown_column_is_a_clear_error(tiny_prism):
    out = run_cli("explore", "--survey", tiny_prism / "survey.jsonl", "--columns", "shoe_size")
    assert out.returncode == 2 and "unknown survey column 'shoe_size'" in out.stderr
