"""judge-agreement: whose preferences a judge shares, on held-out pairs of a prepared dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from fake_openai import FakeOpenAI

from dlm.data import synth
from dlm.judging.agreement import cohen_kappa, judges_kappa, model_family, same_family_warning
from dlm.cli import main

pytestmark = pytest.mark.filterwarnings("ignore")
SMALL = ROOT / "configs" / "panels" / "small.yaml"


@pytest.fixture(scope="module")
def full(demo_sample, tmp_path_factory) -> Path:
    from dlm.preferences.build import PrepareOptions, prepare

    out = tmp_path_factory.mktemp("agree") / "full.jsonl"
    prepare(demo_sample / "survey.jsonl", demo_sample / "utterances.jsonl", out,
            PrepareOptions(mode="full", eval_ratio=0.15))
    return out


def agreement_cli(demo_sample, full, output, *judge, pairs: int = 400) -> int:
    return main(["judge-agreement", "--dataset", str(full), "--survey", str(demo_sample / "survey.jsonl"),
                 "--panel-config", str(SMALL), "--max-pairs", str(pairs), "--output", str(output), *judge])


def by_age(report: dict) -> dict[str, float]:
    return {r["group"]: r["accuracy"] for r in report["by_group"] if r["attribute"] == "age"}


def test_an_oracle_agrees_more_with_its_own_groups_raters(demo_sample, full, tmp_path):
    spec = str(demo_sample / synth.ORACLE_SPEC)
    reports = {}
    for group in ("55+", "under-55"):
        assert agreement_cli(demo_sample, full, tmp_path / f"{group}.json", "--judge-backend", "oracle",
                             "--judge-model", f"oracle:{group}", "--oracle-spec", spec) == 0
        reports[group] = json.loads((tmp_path / f"{group}.json").read_text())
    old, young = by_age(reports["55+"]), by_age(reports["under-55"])
    older_ages = ("55-64 years old", "65+ years old")
    for age in older_ages:
        assert old[age] > young[age] and old[age] > 0.6
    for age in ("18-24 years old", "25-34 years old", "35-44 years old"):
        assert young[age] > old[age] and young[age] > 0.6
    for r in reports.values():
        assert r["n_pairs"] == 400 and r["inconsistency_rate"] == 0.0
        assert r["ci_low"] < r["agreement"] < r["ci_high"]
        assert {"overall", "age", "US-REP"} <= {g["attribute"] for g in r["by_group"]}
    assert reports["under-55"]["kappa"] > 0 > reports["55+"]["kappa"]  # most raters are under 55


def test_a_judge_that_always_picks_the_first_answer_agrees_at_the_tie_convention(demo_sample, full, tmp_path):
    out = tmp_path / "first.json"
    with FakeOpenAI(judge="first") as server:
        rc = agreement_cli(demo_sample, full, out, "--judge-model", "fake-judge", "--judge-base-url", server.url, pairs=30)
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["inconsistency_rate"] == 1.0 and r["tie_rate"] == 1.0
    assert r["agreement"] == 0.5 and r["kappa"] == 0.0
    records = (tmp_path / "first.judgments.jsonl").read_text().splitlines()
    assert len(records) == 60
    # Resumable: a torn file (a kill mid-write) is completed, asking only for what is missing.
    (tmp_path / "first.judgments.jsonl").write_text("\n".join(records[:30]) + "\n" + records[30][:20])
    shutil.rmtree(tmp_path / ".cache")  # without the reply cache, every missing judgment is a request
    with FakeOpenAI(judge="first") as server:
        rc = agreement_cli(demo_sample, full, out, "--judge-model", "fake-judge", "--judge-base-url", server.url, pairs=30)
    assert rc == 0 and server.count == 30
    assert (tmp_path / "first.judgments.jsonl").read_text().splitlines() == records
    assert json.loads(out.read_text())["agreement"] == 0.5
    with FakeOpenAI(judge="first") as server:  # complete: nothing is asked again
        agreement_cli(demo_sample, full, out, "--judge-model", "fake-judge", "--judge-base-url", server.url, pairs=30)
    assert server.count == 0


def test_no_held_out_rows_is_a_clear_error(demo_sample, tmp_path, capsys):
    rows = tmp_path / "d.jsonl"
    rows.write_text(json.dumps({"prompt": "hi", "chosen": "a", "rejected": "b", "user_id": "user1",
                                "split": "train"}) + "\n")
    assert agreement_cli(demo_sample, rows, tmp_path / "x.json", "--judge-backend", "oracle",
                         "--judge-model", "oracle:55+", "--oracle-spec",
                         str(demo_sample / synth.ORACLE_SPEC)) == 2
    assert "--eval-ratio" in capsys.readouterr().err


def test_kappa_tie_rule():
    rater = np.array([1, 0, 1, 0, 1, 0, 1, 1.0])
    assert cohen_kappa(rater, rater) == 1.0
    assert cohen_kappa(1 - rater, rater) < 0
    assert cohen_kappa(np.full(8, 0.5), rater) == 0.0  # all ties: half agreement, no information


def test_judges_kappa_and_same_family_warning():
    recs = []
    for q in range(6):
        for judge, winner in (("j1", "a" if q < 3 else "b"), ("j2", "a" if q < 4 else "b")):
            for order in ("ab", "ba"):
                recs.append({"question_id": f"q{q}", "clause_id": "01", "model_a": "a", "model_b": "b",
                             "order": order, "judge_model": judge, "winner": winner, "len_a": 1, "len_b": 1})
    k = judges_kappa(pd.DataFrame(recs), "j1", "j2")
    assert k["agreement"] == pytest.approx(5 / 6) and 0 < k["kappa"] < 1
    assert model_family("gpt-4o-mini") == model_family("gpt-4.1") == "openai"
    assert model_family("meta-llama/Llama-3.1-8B-Instruct") == "meta-llama"
    assert "same model family" in same_family_warning("gpt-4o-mini", ["gpt-4o-mini", "meta-llama/Llama-3.1-8B"])
    assert same_family_warning("gpt-4o-mini", ["meta-llama/Llama-3.1-8B-Instruct"]) is None
    assert same_family_warning(None, ["gpt-4o-mini"]) is None
