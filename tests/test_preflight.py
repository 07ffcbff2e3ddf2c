"""The real profile's preflight lists every missing prerequisite at once, with the estimated API cost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlm import paths

from dlm.pipeline import runner
from dlm.errors import DLMError
from dlm.experiment.preflight import check_real_run, estimated_api_cost

ROOT = Path(__file__).resolve().parent.parent


def test_everything_missing_is_listed_in_one_message(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    profile = runner.load_profile("real")
    with pytest.raises(DLMError) as err:
        check_real_run(profile)
    msg = str(err.value)
    for needle in ("PRISM data in prism-alignment/", "HF_TOKEN", "OPENAI_API_KEY", "CUDA GPU", "Estimated OpenAI cost"):
        assert needle in msg


def test_lfs_pointers_are_reported(tmp_path, monkeypatch):
    (tmp_path / "prism").mkdir()
    for name in ("survey", "conversations", "utterances"):
        (tmp_path / "prism" / f"{name}.jsonl").write_text("version https://git-lfs.github.com/spec/v1\n")
    (tmp_path / "constitution.txt").write_text((ROOT / "constitution.txt").read_text())
    profile = {"parameters": {"prism_source": "prism"}, "notebooks": {}}
    with pytest.raises(DLMError, match="Git LFS pointers"):
        check_real_run(profile, root=tmp_path)


def test_cost_estimate_counts_judgments():
    profile = {"parameters": {"arms": "hard,soft"}, "notebooks": {
        "05_questions": {"question_backend": "openai", "n_questions": 10},
        "06_evaluate": {"judge_backend": "openai", "judge_model": "gpt-4o-mini"}}}
    cost, what = estimated_api_cost(profile)
    assert "1500 judgments" in what  # base + 2 arms = 3 pairs x 250 questions x 2 orders
    assert cost > 0


def test_run_all_real_stops_before_any_work(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "OPENAI_API_KEY")}
    out = subprocess.run([sys.executable, "run_all.py", "--profile", "real", "--run-id", "preflight-test"], cwd=ROOT,
                         capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "the real run cannot start" in out.stderr
    assert not (paths.artifacts_root() / "runs/preflight-test").exists()


def test_preflight_prints_the_power_of_every_declared_contrast(capsys):
    from dlm.experiment.preflight import print_power

    result = print_power(runner.load_profile("real"))
    out = capsys.readouterr().out
    assert "soft:hard (primary): MDE" in out and "soft_leximin:soft: MDE" in out and "clause level" in out
    # real: 4 draws of hard against 3 soft models (its 3 seeds): three independent units, 12 judged pairs
    assert result.ok and result.primary.result.units == 3 and len(result.primary.result.design.pairs) == 12
    assert "no clause-level finding is possible" in out


def test_preflight_lists_an_untestable_primary_with_the_rest(monkeypatch):
    profile = runner.load_profile("real")
    profile["parameters"].update(train_seeds=1, panel_draws=1)
    with pytest.raises(DLMError) as err:
        check_real_run(profile)
    msg = str(err.value)
    assert "the primary soft:hard has MDE" in msg and "above max_mde 0.15" in msg and "CUDA GPU" in msg
    assert "\n" not in msg
