"""The bill: GPU hours per stage from the measured throughput, API cost with and without the Batch API, wall time."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from dlm.experiment.bill import estimate_bill
from dlm.experiment.profiles import load_profile

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def results(tmp_path) -> Path:
    shutil.copy(ROOT / "benchmarks/results/dpo_gpu_h200.json", tmp_path)
    smoke = {"device": "cuda", "dry_run": False, "gpu": "NVIDIA H200",
             "stages": {"load": {"seconds": 30.0}, "answers": {"questions": 20, "max_new_tokens": 128, "seconds": 64.0},
                        "judge": {"judgments": 40, "seconds": 8.0}, "heldout": {"pairs": 200, "seconds": 20.0}}}
    (tmp_path / "gpu_smoke.json").write_text(json.dumps(smoke))
    return tmp_path


def test_the_real_designs_gpu_hours_follow_the_measured_throughput(results):
    profile = load_profile("real")
    profile["parameters"].update(panel_draws=3, train_seeds=2)  # the 3 x 2 design these numbers were worked out for
    bill = estimate_bill(profile, gpus=8, results=results)
    stages = {s.name.split(" (")[0]: s for s in bill.stages}
    tps = json.loads((results / "dpo_gpu_h200.json").read_text())["ours"]["tokens_per_s"]
    train = stages["train"]
    steps = 200 * 32 * 2 * 1024 / tps
    # + loading (30 s measured) + 2 evaluation passes (eval_steps 200 of 200, and the end) over the held-out
    # tenth (eval_ratio 0.1: 6400 / 9 rows) at a third of a training row's time
    evals = 2 * (200 * 32 * 0.1 / 0.9) * steps / (200 * 32) / 3
    assert train.jobs == 32 and train.seconds_per_job == pytest.approx(steps + 30 + evals)
    assert "evaluation pass" in train.source and train.source.startswith("measured: dpo_gpu_h200.json")
    assert train.wall_hours(8) == pytest.approx(math.ceil(32 / 8) * train.seconds_per_job / 3600)
    answers = stages["answers"]  # base + 32 runs, 25 clauses x 10 questions x 512 tokens at 64 s / (20 x 128)
    assert answers.jobs == 33 and answers.seconds_per_job == pytest.approx(30 + 250 * 512 * 64 / (20 * 128))
    assert answers.source == "measured: gpu_smoke.json on NVIDIA H200"
    assert stages["held-out accuracy"].seconds_per_job == pytest.approx(30 + 2000 * 0.1)
    assert bill.gpu_hours == pytest.approx(sum(s.gpu_hours or 0 for s in bill.stages))
    assert estimate_bill(profile, gpus=1, results=results).wall_hours > bill.wall_hours
    judging = next(a for a in bill.api if a.what == "judging (06)")
    assert judging.requests == 29000 and judging.model == "gpt-4o-mini"
    per = judging.prompt_tokens / judging.requests
    assert 1100 < per < 1250  # two 512-token answers inside the real template, not the 700 once assumed
    assert judging.cost_usd == pytest.approx((judging.prompt_tokens * 0.15 + 29000 * 120 * 0.6) / 1e6)
    assert 7.0 < judging.cost_usd < 8.0
    text = "\n".join(bill.lines())
    assert "with the Batch API" in text and f"${judging.cost_usd * 0.5:.2f}" in text


def test_unmeasured_stages_say_so_instead_of_inventing_a_rate(tmp_path):
    bill = estimate_bill(load_profile("real"), results=tmp_path)  # no measurements at all
    text = "\n".join(bill.lines())
    assert "train: 60 jobs, not estimated" in text and "assumed: run benchmarks/gpu_smoke.py" in text


def test_bill_command_prints_the_bill_and_rejects_zero_gpus(capsys):
    from dlm import cli

    assert cli.main(["bill", "--profile", "real", "--gpus", "4"]) == 0
    out = capsys.readouterr().out
    assert "wall time by number of GPUs" in out and "on 4 GPU(s)" in out and "Batch API" in out
    assert cli.main(["bill", "--profile", "real", "--gpus", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # checked at parse time, one line
    assert len(err) == 1 and err[0].startswith("error: dlm bill: argument --gpus:") and "got 0" in err[0]


def test_every_judging_kind_of_every_judge_is_a_labelled_row(results):
    from dlm.experiment.bill import judge_prompt_tokens
    from dlm.judging.judge import Question, judge_messages

    bill = estimate_bill(load_profile("real"), results=results)
    rows = {(a.what, a.model): a for a in bill.api}
    for judge in ("gpt-4o-mini", "meta-llama/Llama-3.1-8B-Instruct"):  # the real profile's judge and second judge
        for kind in ("judging (06)", "calibration", "judge-human agreement"):
            assert (kind, judge) in rows and rows[(kind, judge)].requests > 0 and rows[(kind, judge)].basis
    assert rows[("calibration", "gpt-4o-mini")].requests == 100  # 50 known pairs, both orders
    assert rows[("judge-human agreement", "gpt-4o-mini")].requests == 2000  # agreement_max_pairs 1000, both orders
    served = rows[("judging (06)", "meta-llama/Llama-3.1-8B-Instruct")]
    assert served.served and served.cost_usd is None
    # the prompt size follows the template: longer answers, longer prompts, by two answers' worth
    message = judge_messages(Question("", "", "Be kind.", "q" * 120), "", "")
    empty = sum(len(m["content"]) for m in message) / 4
    assert judge_prompt_tokens(["Be kind."], 0) == pytest.approx(empty, abs=3)
    assert judge_prompt_tokens(["Be kind."], 100) - judge_prompt_tokens(["Be kind."], 0) == pytest.approx(200, abs=2)
    text = "\n".join(bill.lines())
    assert text.count("[") >= len(bill.api) and "measured: gpu_smoke.json" in text and "(assumed)" in text
