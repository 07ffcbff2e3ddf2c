"""Listwise judging: every model's answer ranked at once, through `dlm evaluate --mode listwise` and `dlm rank`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from fake_openai import FakeOpenAI
from test_oracle import CASUAL, FORMAL, PLAIN, fixed_answers

from dlm.cli import main
from dlm.data import synth
from dlm.errors import DLMError
from dlm.io import read_jsonl
from dlm.judging.evaluation import evaluate
from dlm.judging.listwise import MalformedRanking, parse_ranking, rankings_path

pytestmark = pytest.mark.filterwarnings("ignore")
KEY = "sk-test-listwise"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, list[str]]:
    from dlm.judging.questions import generate_questions

    root = tmp_path_factory.mktemp("listwise")
    generate_questions(ROOT / "constitution.txt", root / "q", backend="template", n_questions=3, end_clause=6)
    models = fixed_answers(root, root / "q", {f"m{i}": (lambda k, i=i: f"Answer {i} to question {k}.")
                                              for i in range(4)})
    return root, models


@pytest.mark.parametrize("text, groups", [('{"ranking": ["B", "A", "C"]}', (("B",), ("A",), ("C",))),
                                          ('Reasons first. {"ranking": ["c", ["a", "b"]]}', (("C",), ("A", "B")))])
def test_parse_ranking_reads_full_rankings_and_ties(text, groups):
    assert parse_ranking(text, 3) == groups


@pytest.mark.parametrize("text, cause", [("B > A > C", "not json"), ('{"ranking": ["A", "B", "D"]}', "unknown label"),
                                         ('{"ranking": ["A", "A", "B"]}', "repeated label"),
                                         ('{"ranking": ["A", "B"]}', "incomplete ranking")])
def test_malformed_rankings_are_classified(text, cause):
    with pytest.raises(MalformedRanking) as err:
        parse_ranking(text, 3)
    assert err.value.cause == cause


def test_judge_ranking_in_display_order_gives_equal_worths_and_position_one_share_one(setup, capsys):
    root, models = setup
    out = root / "cli" / "compare.jsonl"
    out.parent.mkdir()
    (out.parent / "responses").symlink_to(root / "responses")
    # Request 2 leaves a label out, request 4 is prose: both are asked again and counted.
    with FakeOpenAI(judge="first", faults={2: "partial", 4: "nonjson"}) as server:
        done = run_cli("evaluate", "--questions-dir", root / "q", "--models", *models, "--output", out,
                       "--answer-backend", "openai", "--judge-model", "fake-judge", "--judge-base-url", server.url,
                       "--mode", "listwise", env={"OPENAI_API_KEY": KEY})
    assert done.returncode == 0, done.stderr
    records = read_jsonl(rankings_path(out))
    assert len(records) == 18 * 2 and all(r["ranking"] == r["models"] for r in records)
    # The balanced rotation: every model in every display position equally often.
    positions = Counter((m, r["models"].index(m)) for r in records for m in models)
    assert set(positions.values()) == {36 // 4}
    summary = json.loads(out.with_name("compare.rankings.summary.json").read_text())
    assert summary["position_bias"][0]["share"] == 1.0
    for m in summary["models"]:
        assert m["worth_low"] <= 1.0 <= m["worth_high"]
    assert summary["run"]["malformed_replies"]["incomplete ranking"] == 1
    assert summary["run"]["malformed_replies"]["not json"] == 1
    assert not out.exists()  # listwise only: no pairwise judgments

    # `dlm rank` on the run's records reproduces the run's summary.
    again = root / "cli" / "ranked.json"
    assert main(["rank", "--records", rankings_path(out), "--output", again]) == 0
    summary.pop("run")
    assert json.loads(again.read_text()) == summary
    capsys.readouterr()
    assert main(["rank", "--records", rankings_path(out), "--output", again, "--primary", "m0:nobody"]) == 2
    err = capsys.readouterr().err
    assert "nobody" in err and len(err.strip().splitlines()) == 1


def test_killed_listwise_run_resumes_to_the_same_records(setup, tmp_path):
    root, models = setup
    (tmp_path / "responses").symlink_to(root / "responses")
    kwargs = dict(answer_backend="openai", mode="listwise", list_orders=3)
    with FakeOpenAI(judge="second") as server:
        evaluate(root / "q", models, tmp_path / "full.jsonl", ["fake-judge"], judge_base_url=server.url, **kwargs)
        full = rankings_path(tmp_path / "full.jsonl").read_text()
        cut = rankings_path(tmp_path / "cut.jsonl")
        lines = full.splitlines(keepends=True)
        cut.write_text("".join(lines[:20]) + lines[20][:15])  # killed mid-line after 20 rankings
        evaluate(root / "q", models, tmp_path / "cut.jsonl", ["fake-judge"], judge_base_url=server.url, **kwargs)
    assert cut.read_text() == full
    assert len(full.splitlines()) == 18 * 3


def test_oracle_ranks_by_the_samples_rule_with_ties(demo_sample, tmp_path):
    from dlm.judging.questions import generate_questions

    generate_questions(ROOT / "constitution.txt", tmp_path / "q", backend="template", n_questions=2, end_clause=4)
    models = fixed_answers(tmp_path, tmp_path / "q", {"formal": lambda k: FORMAL, "casual": lambda k: CASUAL,
                                                      "plain": lambda k: PLAIN, "plain2": lambda k: PLAIN + " Yes."})
    spec = demo_sample / synth.ORACLE_SPEC
    summary = evaluate(tmp_path / "q", models, tmp_path / "o.jsonl", ["oracle:55+"], answer_backend="openai",
                       judge_backend="oracle", oracle_spec=spec, mode="both")
    records = read_jsonl(rankings_path(tmp_path / "o.jsonl"))
    assert all(r["ranking"] == ["formal", ["plain", "plain2"], "casual"] for r in records)
    order = [m["model"] for m in summary["listwise"]["models"]]
    assert order[0] == "formal" and order[-1] == "casual"
    side = summary["listwise_vs_pairwise"]
    assert side["spearman"] >= 0.75  # plain and plain2 tie: their order is arbitrary in both fits
    fc = side["pairs"].get("formal vs casual") or side["pairs"]["casual vs formal"]
    assert fc["direct"] in (0.0, 1.0) and fc["ranked_above"] == fc["direct"]


def test_bill_counts_listwise_requests_and_tokens_beside_pairwise():
    from dlm.experiment.bill import RANKING_TOKENS, estimate_bill
    from dlm.experiment.preflight import estimated_api_cost

    def profile(mode, arms="hard,soft"):
        return {"parameters": {"arms": arms}, "notebooks": {
            "05_questions": {"question_backend": "openai", "n_questions": 10},
            "06_evaluate": {"judge_backend": "openai", "judge_mode": mode, "list_orders": 3, "max_new_tokens": 256}}}

    pairwise, bill, wider = (estimate_bill(profile(m, a)) for m, a in (("pairwise", "hard,soft"), ("both", "hard,soft"),
                                                                       ("both", "hard,soft,us_rep")))
    judging = {a.what.split(" (")[0]: a for a in bill.api}
    assert judging["judging"].requests == next(a for a in pairwise.api if a.what.startswith("judging")).requests
    listwise = judging["listwise judging"]
    assert listwise.requests == 250 * 3  # 25 clauses x 10 questions, one request per display order
    assert listwise.completion_tokens == 750 * RANKING_TOKENS and "template computed" in listwise.basis
    per = listwise.prompt_tokens / 750  # base + 2 arms: three 256-token answers and the template
    assert 3 * 256 < per < 3 * 256 + 500
    per_wider = next(a for a in wider.api if a.what.startswith("listwise")).prompt_tokens / 750
    assert 256 <= per_wider - per < 256 + 20  # one more model: one more answer and its label
    assert bill.api_cost_usd > pairwise.api_cost_usd
    assert "750 listwise rankings" in estimated_api_cost(profile("both"))[1]


def test_listwise_with_more_models_than_labels_is_refused_before_any_work():
    from dlm.experiment.bill import estimate_bill
    from dlm.experiment.preflight import estimated_api_cost
    from dlm.experiment.profiles import load_profile

    profile = load_profile("real")  # 60 trained runs and the base model
    profile.setdefault("notebooks", {}).setdefault("06_evaluate", {}).update(judge_mode="both")
    line = next(a for a in estimate_bill(profile).api if a.what.startswith("listwise"))
    assert line.requests == 0 and line.basis.startswith("refused")
    with pytest.raises(DLMError, match="listwise judging ranks at most 26 models in one request, this design has 61"):
        estimated_api_cost(profile)


def test_tables_of_mean_rank_clause_spread_and_order_consistency_match_hand_counts():
    from dlm.judging.listwise_tables import clause_difficulty, mean_rank_table, order_consistency

    def rec(q, clause, order, shown, ranking):
        return {"question_id": q, "clause_id": clause, "judge_model": "j", "models": shown, "ranking": ranking,
                "order": order}
    records = [rec("q1", "c1", 0, ["a", "b", "c"], ["a", "b", "c"]), rec("q1", "c1", 1, ["b", "c", "a"], ["b", "a", "c"]),
               rec("q2", "c2", 0, ["a", "b", "c"], [["a", "b", "c"]]), rec("q2", "c2", 1, ["c", "a", "b"], [["a", "b", "c"]])]
    table = mean_rank_table(records)
    assert table.loc["c1"].to_dict() == {"a": 1.5, "b": 1.5, "c": 3.0}
    assert table.loc["c2"].to_dict() == {"a": 2.0, "b": 2.0, "c": 2.0}  # all tied: the middle place each
    spread = clause_difficulty(records)
    assert spread["c2"] == 0.0 and spread["c1"] == pytest.approx(((0.25 + 0.25 + 1) / 3) ** 0.5)
    consistency = order_consistency(records)
    assert consistency.loc["c", "same_rank_share"] == 1.0 and consistency.loc["a", "same_rank_share"] == 0.5
    assert consistency.loc["b", "mean_rank_range"] == 0.5


@pytest.mark.slow
def test_hf_judge_ranks_by_log_probabilities_position_by_position(tmp_path):
    from dlm.judging.questions import generate_questions
    from dlm.training.tiny_model import make_tiny_model

    judge = str(make_tiny_model(tmp_path / "judge", seed=0, warmup_steps=5))
    generate_questions(ROOT / "constitution.txt", tmp_path / "q", backend="template", n_questions=2, end_clause=3)
    models = fixed_answers(tmp_path, tmp_path / "q", {f"m{i}": (lambda k, i=i: f"Answer {i}, {k}.") for i in range(3)})
    summary = evaluate(tmp_path / "q", models, tmp_path / "hf.jsonl", [judge], judge_backend="hf",
                       answer_backend="openai", mode="listwise", list_orders=3)
    records = read_jsonl(rankings_path(tmp_path / "hf.jsonl"))
    assert len(records) == 6 * 3 and all(sorted(r["ranking"]) == sorted(models) for r in records)
    assert all(json.loads(r["judge_raw"])["by"] == "logprobs" for r in records)
    assert summary["listwise"]["n_rankings"] == 18


def test_listwise_through_the_batch_api_gives_the_synchronous_rankings(setup, tmp_path, monkeypatch):
    from dlm.llm import batch_api

    root, models = setup
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setattr(batch_api, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(batch_api, "MAX_WAIT", 0.0)
    for run in ("sync", "batch"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "responses").symlink_to(root / "responses")
    with FakeOpenAI(judge="second") as server:
        kwargs = dict(judge_backend="openai", judge_base_url=server.url, answer_backend="openai", mode="listwise")
        evaluate(root / "q", models, tmp_path / "sync/e.jsonl", ["gpt-4o-mini"], **kwargs)
        chats = server.count
        evaluate(root / "q", models, tmp_path / "batch/e.jsonl", ["gpt-4o-mini"], openai_batch=True, **kwargs)
        assert len(server.batches) == 1 and server.count == chats  # every ranking in one batch
    assert rankings_path(tmp_path / "batch/e.jsonl").read_bytes() == rankings_path(tmp_path / "sync/e.jsonl").read_bytes()
