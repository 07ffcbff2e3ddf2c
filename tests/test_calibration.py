"""The calibration set covers the constitution, and a judge that fails it stops a run before any judging."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from conftest import ROOT
from fake_openai import FakeOpenAI

from dlm.judging.calibration import check_judges, load_calibration, score_judge
from dlm.errors import DLMError
from dlm.llm.backends import Backend, Reply
from dlm.judging.questions import parse_constitution

CALIBRATION = ROOT / "constitution_calibration.yaml"


def test_every_clause_has_at_least_two_distinct_hand_written_pairs():
    pairs = load_calibration(CALIBRATION, ROOT / "constitution.txt")
    clauses = parse_constitution(ROOT / "constitution.txt")
    for c in clauses:
        mine = [p for p in pairs if p.clause_id == c.clause_id]
        assert len(mine) >= 2 and all(p.clause == c.text for p in mine)
        assert len({p.question for p in mine}) == len(mine)
    texts = [t for p in pairs for t in (p.question, p.follows, p.violates)]
    assert len(set(texts)) == len(texts)  # nothing repeated from a template


def test_a_clause_without_pairs_is_named(tmp_path):
    constitution = tmp_path / "constitution.txt"
    constitution.write_text((ROOT / "constitution.txt").read_text() + "26. Choose the response that rhymes.\n")
    with pytest.raises(DLMError, match="clause\\(s\\) 26 .* fewer than 2 pairs"):
        load_calibration(CALIBRATION, constitution)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- clause: 1\n  question: q\n  follows: a\n")
    with pytest.raises(DLMError, match="item 1: needs exactly the fields"):
        load_calibration(bad, ROOT / "constitution.txt")


@dataclass
class Knower(Backend):
    """A judge that knows which answer follows the clause (looks it up), optionally always answering A."""

    follows: frozenset = frozenset()
    name: str = "knower"

    def _complete(self, batch, params, attempt, progress):
        out = []
        for messages in batch:
            a = re.search(r"\[Answer A\]\n(.*?)\n\[End of Answer A\]", messages[-1]["content"], re.S).group(1)
            out.append(Reply(text="[[A]]" if a in self.follows else "[[B]]"))
        return out


def test_accuracy_and_position_bias_of_known_judges():
    pairs = load_calibration(CALIBRATION, ROOT / "constitution.txt")
    good = score_judge(Knower("knower", follows=frozenset(p.follows for p in pairs)), pairs)
    assert (good.accuracy, good.accuracy_both_orders, good.first_shown_rate, good.tie_rate) == (1.0, 1.0, 0.5, 0.0)
    contrary = score_judge(Knower("contrary", follows=frozenset(p.violates for p in pairs)), pairs)
    assert contrary.accuracy == 0.0 and len(contrary.missed) == 25
    ok = check_judges({"k": Knower("k", follows=frozenset(p.follows for p in pairs))}, False, CALIBRATION, 0.9)
    assert ok["k"].accuracy_both_orders == 1.0


def test_a_first_position_judge_stops_evaluate_before_any_model_answers(tmp_path, capsys):
    from dlm.cli import main
    from dlm.judging.questions import generate_questions

    generate_questions(ROOT / "constitution.txt", tmp_path / "q", backend="template", n_questions=1, end_clause=2)
    with FakeOpenAI(judge="first") as server:
        rc = main(["evaluate", "--questions-dir", str(tmp_path / "q"), "--models", "a=/nonexistent-a",
                   "b=/nonexistent-b", "--answer-backend", "openai", "--judge-model", "fake-judge",
                   "--judge-base-url", server.url, "--calibration", str(CALIBRATION),
                   "--min-calibration-accuracy", "0.7", "--output", str(tmp_path / "e" / "e.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and "judge calibration failed before judging any model" in err
    assert "0% of 50 known pairs" in err and "first-shown rate 1.00" in err
    assert server.count == 100  # the calibration pairs, both orders; no answers, no model judgments
    assert not (tmp_path / "e" / "responses").exists()


def test_preflight_prices_the_judge_checks_and_wants_the_second_judges_server(monkeypatch):
    import yaml

    from dlm.experiment.preflight import estimated_api_cost, second_judge_missing

    profile = yaml.safe_load((ROOT / "configs" / "profiles" / "real.yaml").read_text())
    monkeypatch.delenv("DLM_SECOND_JUDGE_BASE_URL", raising=False)
    missing = second_judge_missing(profile)
    assert len(missing) == 1 and "DLM_SECOND_JUDGE_BASE_URL" in missing[0]
    cost, what = estimated_api_cost(profile)  # the bill's rows: calibration and agreement of both judges
    assert cost > 0 and "100 calibration requests, 2000 agreement requests" in what
    assert "100 calibration requests (meta-llama/Llama-3.1-8B-Instruct)" in what  # served: no API price
    monkeypatch.setenv("DLM_SECOND_JUDGE_BASE_URL", "http://localhost:8000/v1")
    assert second_judge_missing(profile) == []
