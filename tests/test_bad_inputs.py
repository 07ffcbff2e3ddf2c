"""A corpus of bad inputs and conflicting settings: each stops with exit 2 and one line naming the file,
line, field or setting, and leaves earlier outputs untouched. Run in-process (no torch import) to stay fast."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest
from conftest import ROOT

from dlm import cli

from dlm.pipeline import runner
from dlm.io import lock_path

EARLIER = b"EARLIER OUTPUT\n"


def rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def write_rows(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def prepare_args(p: Path, mode: str = "full") -> list:
    return ["prepare", "--mode", mode, "--survey", p / "prism/survey.jsonl", "--utterances",
            p / "prism/utterances.jsonl", "--output", p / "out.jsonl"]


def edit(p: Path, table: str, change) -> None:
    path = p / f"prism/{table}.jsonl"
    records = rows(path)
    change(records)
    write_rows(path, records)


def case_duplicate_user_id(p: Path):
    edit(p, "survey", lambda r: r.append(dict(r[0])))
    return prepare_args(p, "full"), p / "out.jsonl", "line 4 repeats user_id 'user0' of line 1"


def case_duplicate_utterance_id(p: Path):
    edit(p, "utterances", lambda r: r.append(dict(r[3])))
    return prepare_args(p), p / "out.jsonl", "line 12 repeats utterance_id 'ut3' of line 4"


def case_score_above_100(p: Path):
    edit(p, "utterances", lambda r: r[2].update(score=150))
    return prepare_args(p), p / "out.jsonl", "line 3 field 'score' is 150, outside 1-100"


def case_negative_score(p: Path):
    edit(p, "utterances", lambda r: r[5].update(score=-5))
    return prepare_args(p), p / "out.jsonl", "line 6 field 'score' is -5, outside 1-100"


def case_score_out_of_int64(p: Path):
    path = p / "prism/utterances.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = json.dumps(json.loads(lines[1]) | {"score": 1}).replace('"score": 1', '"score": ' + "1" + "0" * 30)
    path.write_text("\n".join(lines) + "\n")
    return prepare_args(p), p / "out.jsonl", "line 2 has the number 1000000000000000000000000000000, out of range"


def case_nan(p: Path):
    path = p / "prism/utterances.jsonl"
    lines = path.read_text().splitlines()
    lines[0] = json.dumps(json.loads(lines[0]) | {"score": 1}).replace('"score": 1', '"score": NaN')
    path.write_text("\n".join(lines) + "\n")
    return prepare_args(p), p / "out.jsonl", "line 1 has NaN, which is not a number JSON allows"


def case_deep_nesting(p: Path):
    with open(p / "prism/survey.jsonl", "a") as fh:
        fh.write('{"user_id": "deep", "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    return prepare_args(p), p / "out.jsonl", "line 4 is nested too deeply"


def case_non_utf8_byte(p: Path):
    path = p / "prism/survey.jsonl"
    raw = path.read_bytes()
    first = raw.index(b"\n") + 1
    cut = raw.index(b"Female", first)
    path.write_bytes(raw[:cut] + b"F\xe9male" + raw[cut + 6:])
    line = raw[:cut].count(b"\n") + 1
    return prepare_args(p), p / "out.jsonl", f"line {line} has a byte that is not UTF-8 (0xe9 at byte offset {cut + 1}"


def case_unknown_user(p: Path):
    edit(p, "utterances", lambda r: r[8].update(user_id="ghost"))
    return prepare_args(p), p / "out.jsonl", "utterance 'ut8' has user_id 'ghost', which is not in the survey"


def case_unknown_conversation(p: Path):
    edit(p, "utterances", lambda r: r[9].update(conversation_id="c9"))
    return prepare_args(p), p / "out.jsonl", "utterance 'ut9' has conversation_id 'c9', which is not in the conversations"


def case_long_clause_number(p: Path):
    (p / "c.txt").write_text("1. Choose the response that is honest.\n" + "9" * 300 + ". Choose the kind one.\n")
    return ["questions", "--constitution-path", p / "c.txt", "--output-dir", p / "q", "--backend", "template"], \
        p / "q" / "questions_run.json", "clause 2 is numbered with 300 digits; use at most 6"


def case_python_tag_in_recipe(p: Path):
    (p / "recipe.yaml").write_text("finetune: lora\nbeta: !!python/object/apply:os.system ['echo pwned']\n")
    (p / "d.jsonl").write_text("{}\n")
    return ["train", "--dataset", p / "d.jsonl", "--output-dir", p / "ck", "--config", p / "recipe.yaml"], \
        p / "ck" / "training_summary.json", "recipe.yaml line 2: a Python object tag (!!python/...) is not allowed"


def case_stale_questions_other_backend(p: Path):
    assert cli.main(["questions", "--backend", "template", "--n-questions", "3", "--end-clause", "2",
                     "--output-dir", str(p / "q")]) == 0
    return ["questions", "--backend", "openai", "--question-model", "gpt-4o-mini", "--temperature", "0.2", "--seed",
            "5", "--n-questions", "3", "--end-clause", "2", "--output-dir", p / "q"], p / "q" / "clause_01.json", \
        "backend: 'template' -> 'openai'; model: 'template (no LLM)' -> 'gpt-4o-mini'"


def case_stale_questions_other_n(p: Path):
    assert cli.main(["questions", "--backend", "template", "--n-questions", "3", "--end-clause", "2",
                     "--output-dir", str(p / "q")]) == 0
    return ["questions", "--backend", "template", "--n-questions", "2", "--end-clause", "2", "--output-dir",
            p / "q"], p / "q" / "clause_02.json", "n_questions: 3 -> 2; prompt_hash"


def case_questions_folder_without_manifest(p: Path):
    (p / "q").mkdir()
    (p / "q" / "clause_01.json").write_text('{"clause_id": "01", "clause": "x", "questions": []}')
    return ["evaluate", "--questions-dir", p / "q", "--models", "m1", "m2", "--answer-backend", "openai",
            "--answer-base-url", "http://127.0.0.1:9/v1", "--output", p / "e.jsonl"], p / "e.jsonl", \
        "no questions_run.json in"


def case_questions_changed_after_manifest(p: Path):
    assert cli.main(["questions", "--backend", "template", "--n-questions", "2", "--end-clause", "2",
                     "--output-dir", str(p / "q")]) == 0
    f = p / "q" / "clause_02.json"
    f.write_text(f.read_text().replace("I want", "I need"))
    return ["evaluate", "--questions-dir", p / "q", "--models", "m1", "m2", "--answer-backend", "openai",
            "--answer-base-url", "http://127.0.0.1:9/v1", "--output", p / "e.jsonl"], p / "e.jsonl", \
        "clause_02.json was changed since questions_run.json listed it"


def case_output_held_by_another_run(p: Path):
    out = p / "out.jsonl"
    fd = os.open(lock_path(out), os.O_RDWR | os.O_CREAT)  # another holder, as a second process would be
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b"pid 4242, started 2026-11-29 12:00:00: dlm prepare --mode soft\n")
    p.joinpath("held_fd").write_text(str(fd))
    return prepare_args(p), out, "is being written by another run (pid 4242, started 2026-11-29 12:00:00: dlm prepare"


def case_set_half_replaced(p: Path):
    """A file of a prepared set replaced after the fact: the next reader (train) refuses the set."""
    assert cli.main([str(a) for a in prepare_args(p, "full")]) == 0
    (p / "out.jsonl").write_text((p / "out.jsonl").read_text().replace('"weight": 1.0', '"weight": 2.0'))
    from dlm.training.train_dpo import load_preference_rows

    return load_preference_rows, p / "out.jsonl.manifest.json", "out.jsonl does not match its SHA-256 in " \
        "out.jsonl.manifest.json"


CASES = [case_duplicate_user_id, case_duplicate_utterance_id, case_score_above_100, case_negative_score,
         case_score_out_of_int64, case_nan, case_deep_nesting, case_non_utf8_byte, case_unknown_user,
         case_unknown_conversation, case_long_clause_number, case_python_tag_in_recipe,
         case_stale_questions_other_backend, case_stale_questions_other_n, case_questions_folder_without_manifest,
         case_questions_changed_after_manifest, case_output_held_by_another_run, case_set_half_replaced]


# ----------------------------------------------------------------------------- issue 24: ranges, clashes, shapes

POOL = "user_id,gender,age\n" + "".join(f"u{i},{'fm'[i % 2]},{['young', 'old'][i // 2 % 2]}\n" for i in range(8))
PANEL = "panel_size: 2\nattributes:\n  - {name: gender, quotas: {f: [1, 1], m: [1, 1]}}\n" \
        "  - {name: age, quotas: {young: [1, 1], old: [1, 1]}}\n"


def sortition_args(p: Path, *extra, config: str | bytes = PANEL) -> list:
    (p / "pool.csv").write_text(POOL)
    (p / "panel.yaml").write_bytes(config if isinstance(config, bytes) else config.encode())
    return ["sortition", "--pool", p / "pool.csv", "--panel-config", p / "panel.yaml", "--num-panel-samples", "20",
            "--output", p / "probs.csv", *extra]


def evaluate_args(p: Path, *extra) -> list:
    return ["evaluate", "--questions-dir", p / "q", "--models", "m1", "m2", "--answer-backend", "openai",
            "--answer-base-url", "http://127.0.0.1:9/v1", "--output", p / "e.jsonl", *extra]


def questions_args(p: Path, *extra) -> list:
    return ["questions", "--backend", "template", "--output-dir", p / "q", *extra]


RANGES = [  # (args, the flag and rule the one line names)
    (lambda p: evaluate_args(p, "--questions-per-clause", "-1"), "--questions-per-clause: must be an integer >= 1, got -1"),
    (lambda p: evaluate_args(p, "--questions-per-clause", "0"), "--questions-per-clause: must be an integer >= 1, got 0"),
    (lambda p: evaluate_args(p, "--max-new-tokens", "-5"), "--max-new-tokens: must be an integer >= 1, got -5"),
    (lambda p: evaluate_args(p, "--batch-size", "0"), "--batch-size: must be an integer >= 1, got 0"),
    (lambda p: evaluate_args(p, "--max-retries", "-1"), "--max-retries: must be an integer >= 0, got -1"),
    (lambda p: questions_args(p, "--start-clause", "-1"), "--start-clause: must be an integer >= 1, got -1"),
    (lambda p: questions_args(p, "--num-workers", "0"), "--num-workers: must be an integer >= 1, got 0"),
    (lambda p: questions_args(p, "--temperature", "nan"), "--temperature: 'nan' is not a finite number"),
    (lambda p: ["judge-agreement", "--dataset", p / "d.jsonl", "--max-pairs", "-3"],
     "--max-pairs: must be an integer >= 1, got -3"),
    (lambda p: prepare_args(p) + ["--eval-ratio", "1"], "--eval-ratio: must be a number >= 0 and < 1, got 1"),
    (lambda p: sortition_args(p, "--num-panel-samples", "0"), "--num-panel-samples: must be an integer >= 1, got 0"),
]


def make_range_case(i: int):
    def case(p: Path):
        build, message = RANGES[i]
        args = build(p)
        earlier = next((Path(b) for a, b in zip(args, args[1:]) if a in ("--output", "--output-dir")), p / "e.jsonl")
        return args, earlier if earlier.suffix else earlier / "questions_run.json", message
    case.__name__ = f"case_range_{RANGES[i][1].split(':')[0].lstrip('-').replace('-', '_')}_{i}"
    return case


def case_sortition_output_is_panel_output(p: Path):
    return sortition_args(p, "--panel-output", p / "probs.csv"), p / "probs.csv", \
        "--panel-output " + str(p / "probs.csv") + " is also --output (another output)"


def case_sortition_output_is_the_pool(p: Path):
    args = sortition_args(p)
    args[-1] = p / "pool.csv"
    return args, p / "pool.csv", "--output " + str(p / "pool.csv") + " is also --survey (an input)"


def case_sortition_panel_output_is_the_panel_config(p: Path):
    return sortition_args(p, "--panel-output", p / "panel.yaml"), p / "panel.yaml", \
        "--panel-output " + str(p / "panel.yaml") + " is also --panel-config (an input)"


def case_sortition_remaining_output_is_panel_output(p: Path):
    return sortition_args(p, "--panel-output", p / "x.csv", "--remaining-output", p / "x.csv"), p / "x.csv", \
        "--remaining-output " + str(p / "x.csv") + " is also --panel-output (another output)"


def case_prepare_output_is_the_survey(p: Path):
    args = prepare_args(p)
    args[-1] = p / "prism/survey.jsonl"
    return args, p / "prism/survey.jsonl", "--output " + str(p / "prism/survey.jsonl") + " is also --survey (an input)"


def case_summarize_output_is_its_records(p: Path):
    (p / "r.jsonl").write_text('{"a": 1}\n')
    return ["summarize", "--records", p / "r.jsonl", "--output", p / "r.jsonl"], p / "r.jsonl", \
        "--output " + str(p / "r.jsonl") + " is also --records (an input)"


def case_sortition_output_is_an_existing_folder(p: Path):
    args = sortition_args(p)
    (p / "dir").mkdir()
    args[-1] = p / "dir"
    return args, p / "dir" / "kept.csv", "--output " + str(p / "dir") + " is an existing folder"


def case_evaluate_output_is_an_existing_folder(p: Path):
    (p / "dir").mkdir()
    args = evaluate_args(p)
    args[-1] = p / "dir"
    return args, p / "dir" / "kept.jsonl", "--output " + str(p / "dir") + " is an existing folder"


def case_panel_config_not_utf8_sortition(p: Path):
    return sortition_args(p, config=PANEL.encode() + b"# caf\xe9\n"), p / "probs.csv", \
        f"panel.yaml: byte offset {len(PANEL) + 5} is not UTF-8"


def case_panel_config_not_utf8_prepare(p: Path):
    (p / "panel.yaml").write_bytes(b"panel_size: 2\n# caf\xe9\n")
    return prepare_args(p, "hard") + ["--panel-config", p / "panel.yaml"], p / "out.jsonl", \
        "panel.yaml: byte offset 19 is not UTF-8"


def case_attributes_a_number(p: Path):
    return sortition_args(p, config="panel_size: 2\nattributes: 5\n"), p / "probs.csv", \
        "'attributes' must be a list of attributes, got 5"


def case_quotas_a_list(p: Path):
    return sortition_args(p, config="panel_size: 2\nattributes:\n  - {name: gender, quotas: [1, 2]}\n"), \
        p / "probs.csv", "attribute 'gender' quotas must map each category to [min, max]"


def case_bound_not_a_number(p: Path):
    return sortition_args(p, config=PANEL.replace("f: [1, 1]", "f: [0, x]")), p / "probs.csv", \
        "attribute 'gender' quota for 'f' must be [min, max] with 0 <= min <= max"


def case_proportion_a_word(p: Path):
    config = "panel_size: 2\nattributes:\n  - {name: gender, population_proportions: {f: half, m: 0.5}}\n"
    return sortition_args(p, config=config), p / "probs.csv", \
        "attribute 'gender' population_proportions must map each category to a number"


def edit_history(p: Path, change) -> None:
    edit(p, "conversations", lambda r: change(r[0]["conversation_history"]))


def case_history_entry_a_string(p: Path):
    edit_history(p, lambda h: h.__setitem__(0, "hello"))
    return prepare_args(p), p / "out.jsonl", "conversation_history[0] has an entry that is not an object"


def case_history_turn_a_word(p: Path):
    edit_history(p, lambda h: h[0].__setitem__("turn", "first"))
    return prepare_args(p), p / "out.jsonl", "conversation_history[0] has turn 'first'"


def case_judgments_a_number(p: Path):
    (p / "r.jsonl").write_text("5\n")
    return ["summarize", "--records", p / "r.jsonl", "--output", p / "s.json"], p / "s.json", \
        "record 1 is a number, not a judgment object"


def case_judgments_another_object(p: Path):
    (p / "r.jsonl").write_text('{"hello": 1}\n')
    return ["summarize", "--records", p / "r.jsonl", "--output", p / "s.json"], p / "s.json", \
        "record 1 lacks question_id"


def case_evaluate_output_holds_another_object(p: Path):
    assert cli.main(["questions", "--backend", "template", "--n-questions", "2", "--end-clause", "2",
                     "--output-dir", str(p / "q")]) == 0
    (p / "e.jsonl").write_text('{"hello": 1}\n')  # resumed: every line must be one of evaluate's records
    return evaluate_args(p), p / "e.jsonl", 'e.jsonl: line 1 ({"hello": 1}) is not a record of `dlm evaluate`'


def case_evaluate_rankings_hold_another_object(p: Path):
    assert cli.main(["questions", "--backend", "template", "--n-questions", "2", "--end-clause", "2",
                     "--output-dir", str(p / "q")]) == 0
    (p / "e.rankings.jsonl").write_text('{"question_id": "01:0", "models": 5}\n')
    return evaluate_args(p, "--mode", "listwise"), p / "e.rankings.jsonl", "e.rankings.jsonl: line 1"


def case_unknown_flag(p: Path):
    return prepare_args(p) + ["--no-such-flag"], p / "out.jsonl", "unrecognized arguments: --no-such-flag"


CASES += [make_range_case(i) for i in range(len(RANGES))] + [
    case_sortition_output_is_panel_output, case_sortition_output_is_the_pool,
    case_sortition_panel_output_is_the_panel_config, case_sortition_remaining_output_is_panel_output,
    case_prepare_output_is_the_survey, case_summarize_output_is_its_records, case_sortition_output_is_an_existing_folder,
    case_evaluate_output_is_an_existing_folder, case_panel_config_not_utf8_sortition, case_panel_config_not_utf8_prepare,
    case_attributes_a_number, case_quotas_a_list, case_bound_not_a_number, case_proportion_a_word,
    case_history_entry_a_string, case_history_turn_a_word, case_judgments_a_number, case_judgments_another_object,
    case_evaluate_output_holds_another_object, case_evaluate_rankings_hold_another_object, case_unknown_flag]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__[5:])
def test_bad_input_is_one_line_exit_2_and_earlier_output_untouched(case, tiny_prism, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    args, earlier, message = case(tmp_path)
    if not earlier.exists():
        earlier.parent.mkdir(parents=True, exist_ok=True)
        earlier.write_bytes(EARLIER)
    before = earlier.read_bytes()
    capsys.readouterr()
    try:
        if callable(args):  # a reader of an output set, called directly
            from dlm.errors import DLMError

            with pytest.raises(DLMError) as exc:
                args(tmp_path / "out.jsonl")
            code, err = 2, f"error: {exc.value}\n"
        else:
            code, err = cli.main([str(a) for a in args]), capsys.readouterr().err
    finally:
        if (tmp_path / "held_fd").exists():
            os.close(int((tmp_path / "held_fd").read_text()))
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert earlier.read_bytes() == before


def test_python_tag_in_profile_is_one_line(tmp_path, capsys):
    profile = tmp_path / "p.yaml"
    profile.write_text("parameters:\n  seed: !!python/object/new:os.system [echo pwned]\n")
    assert runner.main(["--profile", str(profile)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "p.yaml line 2: a Python object tag (!!python/...) is not allowed" in err[0]


@pytest.mark.parametrize("text, message", [
    ("parameters: [1, 2]\n", "`parameters` must be a mapping of name: value, got a list"),
    ("notebooks: 5\n", "`notebooks` must be a mapping of name: value, got a number"),
    ("notebooks:\n  02_sortition: [seed]\n", "notebooks.02_sortition must be a mapping of parameter: value"),
])
def test_a_profile_of_the_wrong_shape_is_one_line(tmp_path, capsys, text, message):
    profile = tmp_path / "p.yaml"
    profile.write_text(text)
    assert runner.main(["--profile", str(profile)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_allow_unlinked_drops_and_counts_unknown_users_and_conversations(tiny_prism, tmp_path):
    edit(tmp_path, "utterances", lambda r: (r[8].update(user_id="ghost"), r[9].update(conversation_id="c9")))
    assert cli.main([str(a) for a in prepare_args(tmp_path)] + ["--allow-unlinked"]) == 0
    man = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert man["counts"]["dropped"]["unlinked_utterances"] == 2 and man["config"]["allow_unlinked"] is True
    assert set(man["files"]) == {"out.jsonl"}


def test_csv_ids_with_commas_newlines_and_formulas_round_trip(tmp_path):
    import pandas as pd

    from dlm.io import read_csv_checked, write_csv_atomic

    ids = ["plain", "a,b", 'say "hi"', "two\nlines", "=HYPERLINK(\"http://x\")", "+1 cmd", "@sum", "'=quoted", "-3"]
    write_csv_atomic(tmp_path / "p.csv", pd.DataFrame({"user_id": ids, "probability": [0.5] * len(ids)}))
    text = (tmp_path / "p.csv").read_text()
    assert "\n=HYPERLINK" not in text and "'=HYPERLINK" in text  # a spreadsheet shows it, never runs it
    assert read_csv_checked(tmp_path / "p.csv", ["user_id"])["user_id"].tolist() == ids


@pytest.mark.parametrize("parameters, message", [
    ("parameters: {n_questions: 0}", "parameter n_questions for 05_questions must be an integer >= 1, got 0"),
    ("notebooks: {06_evaluate: {max_new_tokens: -5}}",
     "parameter max_new_tokens for 06_evaluate must be an integer >= 1, got -5"),
    ("parameters: {max_steps: -2}", "parameter max_steps for 04_train_dpo must be an integer >= -1, got -2"),
])
def test_a_notebook_parameter_out_of_range_is_one_line_before_any_notebook_runs(tmp_path, capsys, parameters,
                                                                              message):
    profile = tmp_path / "p.yaml"
    profile.write_text(parameters + "\n")
    assert runner.main(["--profile", str(profile), "--run-id", "never"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not list(tmp_path.rglob("*.ipynb"))
