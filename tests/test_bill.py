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
    assert train.jobs == 32 and train.seconds_per_job == pytest.approx(200 * 32 * 2 * 1024 / tps)
    assert train.wall_hours(8) == pytest.approx(math.ceil(32 / 8) * train.seconds_per_job / 3600)
    answers = stages["answers"]  # base + 32 runs, 25 clauses x 10 questions x 512 tokens at 64 s / (20 x 128)
    assert answers.jobs == 33 and answers.seconds_per_job == pytest.approx(30 + 250 * 512 * 64 / (20 * 128))
    assert "gpu_smoke.json" in answers.source
    assert stages["held-out accuracy"].seconds_per_job == pytest.approx(30 + 2000 * 0.1)
    assert bill.gpu_hours == pytest.approx(sum(s.gpu_hours or 0 for s in bill.stages))
    assert estimate_bill(profile, gpus=1, results=results).wall_hours > bill.wall_hours
    judging = next(a for a in bill.api if a.what == "judging")
    assert judging.requests == 29000
    assert judging.cost_usd == pytest.approx((29000 * 700 * 0.15 + 29000 * 120 * 0.6) / 1e6)
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
    assert capsys.readouterr().err.strip() == "error: --gpus must be at least 1, got 0"
