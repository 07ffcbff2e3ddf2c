"""The design's runs as jobs: `dlm submit` trains every run, skips finished ones, resubmits what is missing.

Every test works on a copy of the ci profile whose paths point into a tmp folder (never artifacts/).
The local-executor and SLURM tests start real processes and are slow.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dlm.cli import main
from dlm.cli.cluster import parse_minutes
from dlm.errors import DLMError
from dlm.experiment import jobs, runs
from dlm.experiment.designs import rows_per_step
from dlm.experiment.launch import per_process_settings

ROOT = Path(__file__).resolve().parent.parent


def tmp_profile(tmp: Path, panel_draws: int = 2, arms: str = "hard,soft") -> Path:
    """The ci profile with every path in `tmp`, a 2-step recipe of short rows and no held-out rows."""
    profile = yaml.safe_load((ROOT / "configs/profiles/ci.yaml").read_text())
    recipe = yaml.safe_load((ROOT / "configs/train/tiny.yaml").read_text())
    recipe.update(per_device_train_batch_size=2, max_length=96, logging_steps=1)
    (tmp / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    shared, books = profile["parameters"], profile["notebooks"]
    shared.update(prism_source=str(tmp / "sample"), model_id=str(tmp / "models/tiny"), panel_draws=panel_draws,
                  max_steps=2, arms=arms)
    books["03_prepare"].update(output_dir=str(tmp / "data"), arms=arms, eval_ratio=0.0)
    books["04_train_dpo"].update(data_dir=str(tmp / "data"), checkpoint_dir=str(tmp / "checkpoints"),
                                 recipe=str(tmp / "recipe.yaml"))
    books["05_questions"]["questions_dir"] = str(tmp / "questions")
    books["06_evaluate"].update(questions_dir=str(tmp / "questions"), checkpoint_dir=str(tmp / "checkpoints"),
                                evaluation_output=str(tmp / "evaluations/compare.jsonl"))
    path = tmp / "ci.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


def fake_checkpoint(design, name: str, steps: int) -> Path:
    """A checkpoint folder as training leaves it (weights + summary naming the dataset's hash)."""
    from dlm.io import sha256_file

    run = design.find(name)
    folder = design.checkpoint(run)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "training_summary.json").write_text(json.dumps(
        {"dataset_sha256": sha256_file(design.dataset_path(run)), "steps": steps}))
    return folder


def fake_dataset(design, name: str) -> Path:
    """A committed dataset (file + output-set manifest)."""
    from dlm.io import commit_output_set, output_lock

    path = design.dataset_path(design.find(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(path):
        commit_output_set(path, {path: lambda tmp: tmp.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')},
                          {"kind": "test"})
    return path


# ----------------------------------------------------------------------------- fast


@pytest.mark.parametrize("text, minutes", [("90", 90), ("04:00:00", 240), ("1-00", 1440), ("30:30", 31),
                                           ("0-01:30", 90)])
def test_time_limits_take_minutes_or_slurm_spellings(text, minutes):
    assert parse_minutes(text) == minutes


def test_a_run_is_finished_only_with_weights_a_summary_of_its_dataset_and_the_design_steps(tmp_path):
    design, _, _ = jobs.profile_settings(str(tmp_profile(tmp_path)), "train")
    assert [r.name for r in design.runs()] == ["hard", "hard-r1", "soft"]  # the design's run names
    for name in ("hard", "hard-r1", "soft"):
        fake_dataset(design, name)
    assert {s.name: s.state for s in jobs.status("train", design)} == dict.fromkeys(("hard", "hard-r1", "soft"),
                                                                                   "not submitted")
    folder = fake_checkpoint(design, "hard", steps=2)
    fake_checkpoint(design, "soft", steps=3)  # another budget: not this design's run
    states = {s.name: s for s in jobs.status("train", design)}
    assert states["hard"].state == "done"
    assert "3 steps" in states["soft"].detail and states["soft"].state == "not submitted"
    (folder / "model.safetensors").unlink()
    assert runs.unfinished("train", design, "hard") == f"no weights in {folder}"
    (folder / "model.safetensors").write_bytes(b"weights")
    design.dataset_path(design.find("hard")).write_text("{}\n")  # the dataset changed since training
    assert "another version" in runs.unfinished("train", design, "hard")


def test_a_dataset_is_finished_when_its_output_set_verifies(tmp_path):
    design, _, _ = jobs.profile_settings(str(tmp_profile(tmp_path)), "prepare")
    path = fake_dataset(design, "soft")
    assert runs.unfinished("prepare", design, "soft") == ""
    path.write_text("changed\n")
    assert "does not match" in runs.unfinished("prepare", design, "soft")
    assert runs.unfinished("prepare", design, "hard").endswith("hard.jsonl missing")


def test_a_failed_job_is_reported_with_its_error_and_resubmitted(tmp_path, monkeypatch):
    design, _, _ = jobs.profile_settings(str(tmp_profile(tmp_path)), "train")
    for name in ("hard", "hard-r1", "soft"):
        fake_dataset(design, name)
    folder = jobs.jobs_dir(design) / "train"
    folder.mkdir(parents=True)
    with open(folder / "7_0_result.pkl", "wb") as fh:
        pickle.dump(("error", "Traceback (most recent call last):\n  ...\ndlm.errors.DLMError: boom"), fh)
    record = {"job_id": "7", "executor": "local", "result": str(folder / "7_0_result.pkl"),
              "log": str(folder / "7_0_log.out"), "err": str(folder / "7_0_log.err"), "submitted": "now"}
    (folder / "jobs.json").write_text(json.dumps({"hard": record}))
    states = {s.name: s for s in jobs.status("train", design)}
    assert states["hard"].state == "failed" and "DLMError: boom" in states["hard"].detail
    assert states["hard"].log == record["log"]
    submitted = []
    monkeypatch.setattr(jobs, "_run_local", lambda stage, d, a, o, f, todo, records, log, launch: submitted.extend(todo))
    monkeypatch.setattr(jobs, "model_available", lambda path: True)
    jobs.submit("train", design, jobs.ClusterOptions("local"), log=lambda line: None)
    assert submitted == ["hard", "hard-r1", "soft"]  # failed and never-submitted runs alike


def test_submit_without_sbatch_or_inputs_is_one_clear_line(tmp_path, monkeypatch, capsys):
    profile = tmp_profile(tmp_path)
    assert main(["submit", "--profile", str(profile), "--stage", "train", "--executor", "local"]) == 2
    assert "base model" in capsys.readouterr().err
    (tmp_path / "models/tiny").mkdir(parents=True)
    assert main(["submit", "--profile", str(profile), "--stage", "train", "--executor", "local"]) == 2
    err = capsys.readouterr().err
    assert "hard.jsonl" in err and "--stage prepare" in err
    design, _, _ = jobs.profile_settings(str(profile), "train")
    for name in ("hard", "hard-r1", "soft"):
        fake_dataset(design, name)
    monkeypatch.setattr(shutil, "which", lambda name, path=None: None)
    assert main(["submit", "--profile", str(profile), "--stage", "train", "--executor", "slurm"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sbatch" in err and "--executor local" in err


def test_runs_that_would_train_another_batch_than_the_design_are_refused(tmp_path, monkeypatch, capsys):
    """One process on N GPUs trains N x the design's rows per step (DataParallel): arms would not be matched."""
    import torch

    profile = tmp_profile(tmp_path)
    design, _, _ = jobs.profile_settings(str(profile), "train")
    (tmp_path / "models/tiny").mkdir(parents=True)
    for name in ("hard", "hard-r1", "soft"):
        fake_dataset(design, name)
    monkeypatch.setattr(shutil, "which", lambda name, path=None: "/usr/bin/sbatch")
    # the recipe's 2 rows per step cannot be split over 3 processes: refused before anything is submitted
    assert main(["submit", "--profile", str(profile), "--stage", "train", "--gpus-per-run", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 rows per optimizer step do not split over 3 processes" in err
    assert "--gpus-per-run" in err
    assert main(["submit", "--profile", str(profile), "--stage", "train", "--executor", "local", "--nodes", "2"]) == 2
    assert "--executor slurm" in capsys.readouterr().err
    assert not (jobs.jobs_dir(design) / "train" / "jobs.json").exists()  # nothing submitted or recorded
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(jobs.DLMError, match="4 GPUs visible.*CUDA_VISIBLE_DEVICES"):
        runs.train_run(design, "hard")
    # under `accelerate launch`, each process's batch must add up to the design's
    planned, settings = design.effective_batch(), runs.train_settings(design, "hard")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(jobs.DLMError, match=f"{2 * planned} rows per optimizer step, the design's runs {planned}; "
                                            f"with 2 processes, make .* {planned // 2}"):
        runs.train_run(design, "hard")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(jobs.DLMError, match="--per_device_train_batch_size"):
        runs.train_run(design, "hard", {**settings, "gradient_accumulation_steps": 3})
    assert not design.checkpoint(design.find("hard")).exists()


@pytest.mark.parametrize("per_device, accumulation, processes, split", [
    (8, 4, 2, (8, 2)), (8, 1, 2, (4, 1)), (8, 4, 8, (1, 4)), (6, 2, 4, (3, 1)), (2, 1, 2, (1, 1))])
def test_each_process_trains_its_share_of_the_designs_rows_per_step(per_device, accumulation, processes, split):
    settings = {"per_device_train_batch_size": per_device, "gradient_accumulation_steps": accumulation, "seed": 3}
    out = per_process_settings(settings, processes)
    assert (out["per_device_train_batch_size"], out["gradient_accumulation_steps"]) == split
    assert rows_per_step(out) * processes == per_device * accumulation and out["seed"] == 3
    with pytest.raises(DLMError, match="do not split over 5 processes"):
        per_process_settings(settings, 5)


def test_launch_arguments_pick_the_config_by_fine_tuning_and_hardware():
    from dlm.experiment.launch import Launch, launcher_arguments

    two = Launch(2)
    assert launcher_arguments(two, "lora", 2)[:1] == ["--multi_gpu"]
    assert launcher_arguments(two, "full", 2)[1].endswith("configs/accelerate/fsdp.yaml")
    assert launcher_arguments(two, "lora", 0)[1].endswith("configs/accelerate/cpu_2proc.yaml")
    zero3 = str(ROOT / "configs/accelerate/deepspeed_zero3.yaml")
    args = launcher_arguments(Launch(4, 2, zero3), "full", 4)
    assert args[:2] == ["--config_file", zero3] and args[2:] == ["--num_processes", "8", "--num_machines", "2"]


def test_memory_per_job_defaults_from_the_model_size(tmp_path):
    from dlm.training.tiny_model import make_tiny_model

    assert jobs.default_mem_gb("meta-llama/Llama-3.1-8B", "train") == 40  # 2 x 16 GB of bf16 weights + 8
    assert jobs.default_mem_gb("meta-llama/Llama-3.1-70B", "answers") == 288
    assert jobs.default_mem_gb("meta-llama/Llama-3.1-8B", "prepare") == 8
    assert jobs.default_mem_gb(str(make_tiny_model(tmp_path / "tiny", warmup_steps=0)), "train") == 9
    options = jobs.ClusterOptions("local")
    assert jobs.make_executor(options, tmp_path / "j", "train", "org/Model-8B").parameters["mem_gb"] == 40
    assert jobs.make_executor(jobs.ClusterOptions("local", mem_gb=12), tmp_path / "j", "train",
                              "org/Model-8B").parameters["mem_gb"] == 12


def test_slurm_jobs_are_warned_before_their_time_limit_and_nodes_go_to_sbatch(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, path=None: "/usr/bin/sbatch")
    options = jobs.ClusterOptions("slurm", gpus_per_run=8, nodes=2, signal_delay_s=300, max_requeues=9)
    executor = jobs.make_executor(options, tmp_path / "j", "train", "org/Model-8B")
    params = executor._executor.parameters
    assert params["signal_delay_s"] == 300 and params["nodes"] == 2 and params["gpus_per_node"] == 8
    assert executor._executor.max_num_timeout == 9
    with pytest.raises(DLMError, match="--nodes 2 is for train jobs"):
        jobs.make_executor(options, tmp_path / "j", "answers", "org/Model-8B")
    with pytest.raises(DLMError, match="--signal-delay"):
        jobs.ClusterOptions("slurm", signal_delay_s=0)


def test_status_says_killed_and_exits_1_when_a_job_ended_without_a_result(tmp_path, capsys):
    profile = tmp_profile(tmp_path, panel_draws=1)
    design, _, _ = jobs.profile_settings(str(profile), "train")
    folder = jobs.jobs_dir(design).absolute() / "train"
    folder.mkdir(parents=True)
    record = {"job_id": "999999999", "executor": "local", "result": str(folder / "gone.pkl"),
              "log": str(folder / "x.out"), "err": str(folder / "x.err"), "submitted": "2026-01-01T00:00:00"}
    (folder / "jobs.json").write_text(json.dumps({"hard": record}))
    assert main(["status", "--profile", str(profile), "--stage", "train"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"hard +killed", out) and re.search(r"soft +not submitted", out) and "1 run(s) failed" in out


# ----------------------------------------------------------------------------- slow: real processes


@pytest.fixture()
def prepared(tmp_path):
    """A tmp ci profile with its generated sample and tiny base model."""
    from dlm.data.synth import generate_sample
    from dlm.training.tiny_model import make_tiny_model

    def build(panel_draws: int = 2) -> Path:
        profile = tmp_profile(tmp_path, panel_draws)
        generate_sample(tmp_path / "sample", "demo", 0)
        make_tiny_model(tmp_path / "models/tiny", warmup_steps=0)
        return profile
    return build


@pytest.mark.slow
def test_submit_local_trains_every_run_then_submits_nothing_then_only_the_deleted_run(prepared, tmp_path, capsys):
    profile = str(prepared())
    args = ["--profile", profile, "--executor", "local", "--max-parallel", "3", "--poll-seconds", "1"]
    assert main(["submit", "--stage", "prepare", *args]) == 0
    assert "3 done" in capsys.readouterr().out
    assert main(["submit", "--stage", "train", *args]) == 0
    out = capsys.readouterr().out
    assert out.count("started as local job") == 3 and "3 done" in out
    design, _, _ = jobs.profile_settings(profile, "train")
    for run in design.runs():
        summary = json.loads((design.checkpoint(run) / "training_summary.json").read_text())
        assert summary["steps"] == 2 and (design.checkpoint(run) / "model.safetensors").is_file()

    assert main(["submit", "--stage", "train", *args]) == 0
    out = capsys.readouterr().out
    assert "started" not in out and "nothing to submit" in out

    shutil.rmtree(design.checkpoint(design.find("hard-r1")))
    assert main(["status", "--profile", profile, "--stage", "train"]) == 0
    assert re.search(r"hard-r1 +incomplete", capsys.readouterr().out)
    assert main(["submit", "--stage", "train", *args]) == 0
    out = capsys.readouterr().out
    assert out.count("started as local job") == 1 and "train hard-r1: started" in out
    assert runs.unfinished("train", design, "hard-r1") == ""


@pytest.mark.slow
def test_a_two_gpu_train_job_runs_two_processes_with_the_designs_batch_and_one_processes_weights(
        prepared, tmp_path, capsys):
    """`--gpus-per-run 2` on the CPU path: accelerate launch inside a local job, 2 gloo processes, 1 row each per step."""
    import torch
    from safetensors.torch import load_file

    profile = str(prepared(panel_draws=1))
    recipe = yaml.safe_load((tmp_path / "recipe.yaml").read_text())
    # SGD: Adam's normalised first steps would magnify all-reduce rounding (as in tests/test_fsdp.py)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({**recipe, "optim": "sgd", "learning_rate": 0.05}))
    design, _, _ = jobs.profile_settings(profile, "train")
    for run in design.datasets():
        runs.prepare_run(design, run.dataset)
    args = ["--profile", profile, "--executor", "local", "--poll-seconds", "1"]
    assert main(["submit", "--stage", "train", *args, "--gpus-per-run", "2"]) == 0, capsys.readouterr()
    log = Path(json.loads((jobs.jobs_dir(design) / "train/jobs.json").read_text())["hard"]["log"]).read_text()
    assert "accelerate.commands.launch" in log and "--num_processes 2" in log
    folder = design.checkpoint(design.find("hard"))
    summary = json.loads((folder / "training_summary.json").read_text())
    assert summary["distributed"]["world_size"] == 2 and summary["steps"] == design.steps()
    assert summary["effective_batch_size"] == design.effective_batch() == 2  # the design's rows per step, kept
    assert summary["config"]["dpo"]["per_device_train_batch_size"] == 1  # each process trains its half
    assert runs.unfinished("train", design, "hard") == ""  # done: the batch's split over processes is not stale
    one = runs.train_run(design, "hard", output_dir=tmp_path / "one")
    assert one["distributed"]["world_size"] == 1
    a, b = load_file(folder / "model.safetensors"), load_file(tmp_path / "one/model.safetensors")
    base = load_file(tmp_path / "models/tiny/model.safetensors")
    assert max((a[k] - base[k]).abs().max().item() for k in a) > 1e-3  # training moved the weights
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)  # two processes = one process


@pytest.mark.slow
def test_dlm_train_with_profile_and_run_trains_that_run_as_submit_would(prepared, capsys):
    profile = str(prepared(panel_draws=1))
    design, _, _ = jobs.profile_settings(profile, "train")
    runs.prepare_run(design, "hard")
    assert main(["train", "--profile", profile, "--run", "hard"]) == 0
    assert str(design.checkpoint(design.find("hard"))) in capsys.readouterr().out
    assert runs.unfinished("train", design, "hard") == ""  # `dlm submit` would now skip it
    summary = json.loads((design.checkpoint(design.find("hard")) / "training_summary.json").read_text())
    assert summary["steps"] == 2 and summary["config"]["finetune"] == "full"  # the tiny recipe's
    assert summary["effective_batch_size"] == design.effective_batch()


@pytest.mark.slow
def test_answer_jobs_make_the_answers_that_06_then_reuses(prepared, tmp_path, capsys):
    from dlm.judging import evaluation
    from dlm.judging.questions import generate_questions

    profile = str(prepared(panel_draws=1))
    design, _, answers = jobs.profile_settings(profile, "answers")
    for run in design.datasets():
        runs.prepare_run(design, run.dataset)
    for run in design.runs():
        runs.train_run(design, run.name)
    generate_questions(ROOT / "constitution.txt", answers.questions_dir, backend="template", n_questions=2,
                       end_clause=2)
    assert main(["submit", "--profile", profile, "--stage", "answers", "--executor", "local", "--max-parallel", "3",
                 "--poll-seconds", "1"]) == 0
    assert "3 done" in capsys.readouterr().out  # base, hard, soft
    files = {p: p.read_bytes() for p in answers.responses_dir.glob("*.jsonl")}
    assert len(files) == 3
    summary = evaluation.evaluate(answers.questions_dir, design.model_specs(), answers.evaluation_output,
                                  ["oracle:55+"], judge_backend="oracle", oracle_spec=tmp_path / "sample/oracle_spec.json",
                                  max_new_tokens=answers.max_new_tokens, seed=answers.seed, pairs=design.pairs(),
                                  arms=design.arms_of_models())
    assert summary["settings"]["n_judgments"] > 0
    assert {p: p.read_bytes() for p in answers.responses_dir.glob("*.jsonl")} == files  # reused, none made again


@pytest.mark.slow
def test_two_training_jobs_run_through_a_real_single_node_slurm(prepared, tmp_path, capsys, monkeypatch):
    from slurm_local import LocalSlurm, missing_programs, missing_reason

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    assert not missing_programs(), f"slurm-wlm/munge programs missing: {missing_programs()} (.ci/run installs them)"
    profile = str(prepared(panel_draws=1))
    design, _, _ = jobs.profile_settings(profile, "train")
    assert [r.name for r in design.runs()] == ["hard", "soft"]
    for run in design.datasets():
        runs.prepare_run(design, run.dataset)
    with LocalSlurm(tmp_path / "slurm", cpus=2) as env:
        for key in ("SLURM_CONF", "PATH"):
            monkeypatch.setenv(key, env[key])
        code = main(["submit", "--profile", profile, "--stage", "train", "--executor", "slurm", "--gpus-per-run", "0",
                     "--cpus-per-run", "1", "--time", "00:20:00", "--wait", "--poll-seconds", "2"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert out.count("submitted as SLURM job") == 2 and "2 done" in out
        array = {line.split("SLURM job ")[1].split(";")[0].split("_")[0] for line in out.splitlines()
                 if "SLURM job" in line}
        assert len(array) == 1  # one job array
        for run in design.runs():
            assert runs.unfinished("train", design, run.name) == ""
        assert main(["status", "--profile", profile, "--stage", "train"]) == 0
        assert capsys.readouterr().out.count(" done ") == 2


@pytest.mark.slow
def test_a_training_job_past_its_slurm_time_limit_is_requeued_and_resumes_to_the_uninterrupted_weights(
        tmp_path, capsys, monkeypatch):
    """A 2-minute limit and a warning timed for half the run: the job checkpoints, requeues itself, then finishes."""
    import torch
    from safetensors.torch import load_file
    from slurm_local import LocalSlurm, missing_programs, missing_reason

    from dlm.data.synth import generate_sample
    from dlm.training.tiny_model import make_tiny_model

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    assert not missing_programs(), f"slurm-wlm/munge programs missing: {missing_programs()} (.ci/run installs them)"
    path = tmp_profile(tmp_path, panel_draws=1, arms="hard")
    profile = yaml.safe_load(path.read_text())
    profile["parameters"]["max_steps"] = 3000
    path.write_text(yaml.safe_dump(profile))
    recipe = yaml.safe_load((tmp_path / "recipe.yaml").read_text())
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({**recipe, "save_strategy": "steps", "save_steps": 100,
                                                          "save_total_limit": 2, "logging_steps": 100}))
    generate_sample(tmp_path / "sample", "demo", 0)
    make_tiny_model(tmp_path / "models/tiny", warmup_steps=0)
    design, _, _ = jobs.profile_settings(str(path), "train")
    assert [r.name for r in design.runs()] == ["hard"]
    runs.prepare_run(design, "hard")
    whole = runs.train_run(design, "hard", output_dir=tmp_path / "whole")  # the uninterrupted reference
    assert whole["restarts"] == []
    # SLURM warns `--signal-delay` seconds before the 2-minute limit: time the warning for about half of
    # this machine's training time (after ~15 s of start-up), so the first run stops mid-way and a second,
    # as long, finishes it
    delay = int(min(110, max(30, 120 - 15 - whole["metrics"]["train_runtime"] / 2)))
    with LocalSlurm(tmp_path / "slurm", cpus=2) as env:
        for key in ("SLURM_CONF", "PATH"):
            monkeypatch.setenv(key, env[key])
        code = main(["submit", "--profile", str(path), "--stage", "train", "--executor", "slurm", "--gpus-per-run",
                     "0", "--cpus-per-run", "2", "--time", "2", "--signal-delay", str(delay), "--max-requeues", "4",
                     "--wait", "--poll-seconds", "2"])
        out = capsys.readouterr().out
        assert code == 0, out
        log = Path(json.loads((jobs.jobs_dir(design) / "train/jobs.json").read_text())["hard"]["log"])
        assert "this job is timed-out" in log.with_suffix(".err").read_text(), "the job was never warned"
        assert "Requeued job" in log.read_text()
    folder = design.checkpoint(design.find("hard"))
    summary = json.loads((folder / "training_summary.json").read_text())
    assert summary["steps"] == 3000 and len(summary["restarts"]) >= 1, summary["restarts"]
    assert all(r["from_step"] >= 100 for r in summary["restarts"])  # each requeued run went on from a checkpoint
    a, b = load_file(folder / "model.safetensors"), load_file(tmp_path / "whole/model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_a_profile_with_executor_slurm_gives_its_options_and_flags_override_them(tmp_path):
    path = tmp_profile(tmp_path)
    profile = yaml.safe_load(path.read_text())
    profile["parameters"].update(executor="slurm", slurm_partition="gpu", gpus_per_run=2, job_time_min=600)
    path.write_text(yaml.safe_dump(profile))
    _, options, answers = jobs.profile_settings(str(path), "answers")
    assert options == jobs.ClusterOptions("slurm", "gpu", None, 2, None, time_min=600)
    assert answers.max_new_tokens == 16 and answers.responses_dir == tmp_path / "evaluations/responses"  # 06's values
    assert jobs.with_overrides(options, executor="local", partition=None).executor == "local"
    _, none, _ = jobs.profile_settings(str(tmp_profile(tmp_path)), "train")
    assert none is None  # no executor: notebooks 04 and 06 train and answer in-process


@pytest.mark.slow
def test_a_killed_local_training_job_resumes_when_resubmitted_to_the_uninterrupted_weights(prepared, tmp_path):
    import torch
    from safetensors.torch import load_file

    profile_path = prepared(panel_draws=1)
    profile = yaml.safe_load(profile_path.read_text())
    profile["parameters"]["max_steps"] = 30
    profile_path.write_text(yaml.safe_dump(profile))
    recipe = yaml.safe_load((tmp_path / "recipe.yaml").read_text())
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({**recipe, "save_strategy": "steps", "save_steps": 3}))
    design, _, _ = jobs.profile_settings(str(profile_path), "train")
    for run in design.datasets():
        runs.prepare_run(design, run.dataset)
    folder = design.checkpoint(design.find("hard"))
    args = [sys.executable, "-m", "dlm", "submit", "--profile", str(profile_path), "--stage", "train", "--executor",
            "local", "--poll-seconds", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    submitter = subprocess.Popen([*args, "--max-parallel", "1"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not list(folder.glob("checkpoint-*/trainer_state.json")):
            assert time.monotonic() < deadline and submitter.poll() is None, "no checkpoint was saved"
            time.sleep(0.2)
        record = json.loads((jobs.jobs_dir(design) / "train/jobs.json").read_text())["hard"]
        os.kill(int(record["job_id"]), signal.SIGTERM)  # a plain `kill` of the local job
        out, _ = submitter.communicate(timeout=300)
    finally:
        if submitter.poll() is None:
            submitter.kill()
    assert submitter.returncode == 1 and "hard: killed" in out, out
    status = subprocess.run([sys.executable, "-m", "dlm", "status", "--profile", str(profile_path), "--stage",
                             "train"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert status.returncode == 1 and re.search(r"hard +killed", status.stdout), status.stdout
    again = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    summary = json.loads((folder / "training_summary.json").read_text())
    assert summary["steps"] == 30 and len(summary["restarts"]) == 1 and summary["restarts"][0]["from_step"] >= 3
    whole = runs.train_run(design, "hard", output_dir=tmp_path / "whole")
    assert whole["restarts"] == []
    a, b = load_file(folder / "model.safetensors"), load_file(tmp_path / "whole/model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_a_missing_tiny_model_hint_rebuilds_the_profiles_model(tmp_path, capsys):
    profile = tmp_profile(tmp_path, panel_draws=1)
    assert main(["submit", "--profile", str(profile), "--stage", "train", "--executor", "local"]) == 2
    err = capsys.readouterr().err
    assert f"make-tiny-model --output-dir {tmp_path / 'models/tiny'} --seed 0 --warmup-steps 30`" in err  # ci's 30


def test_vllm_answers_are_refused_in_one_line_where_vllm_is_not_installed(tmp_path, capsys, monkeypatch):
    from dlm.judging.questions import generate_questions

    profile = tmp_profile(tmp_path, panel_draws=1)
    generate_questions(ROOT / "constitution.txt", tmp_path / "questions", backend="template", n_questions=1,
                       end_clause=1)
    monkeypatch.setattr(jobs, "vllm_missing", lambda: True)
    args = ["submit", "--profile", str(profile), "--stage", "answers", "--executor", "local"]
    assert main([*args, "--answer-backend", "vllm"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --answer-backend vllm needs vLLM")
    assert not (jobs.jobs_dir(jobs.profile_settings(str(profile), "answers")[0]) / "answers").exists()
