"""The design's runs as jobs: one run's work as a function, and those functions submitted through submitit.

Three stages, one job per run of the design (names as `python -m dlm design` prints them):
`prepare` builds one dataset, `train` trains one run, `answers` makes one model's answers to the
evaluation questions (base and every run; notebook 06 then judges, reusing them). The CLI's
`prepare/train --profile P --run NAME` and every job call the same functions here.

A run's work and when it is finished live in `dlm.experiment.runs`. `submit` skips finished runs
and runs whose job is still queued or running, and submits the rest (never submitted, failed, or
outputs deleted) as one SLURM job array (`executor.batch()`), or as local processes, `max_parallel` at a time.
Submissions are recorded in `<jobs folder>/<stage>/jobs.json` beside submitit's logs; the jobs
folder is `jobs/` beside the design's checkpoint folder.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import json
import math
import os
import pickle
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlm.errors import DLMError
from dlm.experiment import designs as experiment
from dlm.experiment.designs import Design
from dlm.experiment.launch import Launch, per_process_settings
from dlm.experiment.profiles import _default_value, declared_parameters, load_profile, notebooks, resolve_parameters
from dlm.experiment.runs import (STALE, AnswerSettings, RunJob, model_available, model_paths, run_names,
                                 train_settings, unfinished)
from dlm.io import output_lock, read_jsonl, write_json_atomic
from dlm.judging.judge import load_questions, slug

NOTEBOOK_OF = {"prepare": "03_prepare", "train": "04_train_dpo", "answers": "06_evaluate"}
EXECUTORS = ("slurm", "local")
ACTIVE = ("pending", "running", "configuring", "completing", "requeued", "suspended")
FAILED = ("failed", "killed")  # ended without finishing: `dlm status` exits 1


@dataclass(frozen=True)
class ClusterOptions:
    """Where and with what each job runs (SLURM resources; `local` runs processes on this machine)."""

    executor: str = "slurm"
    partition: str | None = None
    account: str | None = None
    gpus_per_run: int | None = None  # None: 1 for train and answers, 0 for prepare
    cpus_per_run: int | None = None  # None: the cluster's default
    mem_gb: float | None = None
    time_min: int = 240
    max_parallel: int | None = None  # local: jobs at a time (default 1); slurm: the array's parallelism
    poll_seconds: float = 10.0
    nodes: int = 1  # train: nodes per job (each runs gpus_per_run training processes)
    accelerate_config: str | None = None  # train on several processes: accelerate's config (None: DDP/FSDP)
    signal_delay_s: int = 90  # SLURM warns a job this long before its time limit; it then requeues itself
    max_requeues: int = 5  # requeues after a time limit per job (preemptions are not counted)

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise DLMError(f"executor {self.executor!r} is not one of {', '.join(EXECUTORS)}")
        if self.nodes < 1:
            raise DLMError(f"nodes per job must be at least 1, got {self.nodes}")
        if self.nodes > 1 and self.executor == "local":
            raise DLMError(f"--nodes {self.nodes} needs --executor slurm (a local job runs on this machine only)")
        if self.accelerate_config and not Path(self.accelerate_config).is_file():
            raise DLMError(f"--accelerate-config {self.accelerate_config}: no such file (see configs/accelerate/)")
        if self.signal_delay_s < 1 or self.max_requeues < 0:
            raise DLMError(f"--signal-delay must be at least 1 second and --max-requeues at least 0, got "
                           f"{self.signal_delay_s} and {self.max_requeues}")
        if self.time_min < 1:
            raise DLMError(f"the time limit per job must be at least 1 minute, got {self.time_min}")
        for name in ("gpus_per_run", "cpus_per_run", "max_parallel"):
            value = getattr(self, name)
            if value is not None and value < (1 if name == "max_parallel" else 0):
                raise DLMError(f"{name.replace('_', '-')} must not be {value}")


@dataclass
class RunState:
    """One run of a stage: its state (done, stale, pending, running, failed, incomplete, not submitted) and log."""

    stage: str
    name: str
    state: str
    job_id: str | None = None
    log: str | None = None
    detail: str = ""


# ----------------------------------------------------------------------------- submitting


def jobs_dir(design: Design) -> Path:
    """Submitit's folder for a design: `jobs/` beside the checkpoint folder."""
    return Path(design.checkpoint_dir).parent / "jobs"


def _records_path(folder: Path, stage: str) -> Path:
    return folder / stage / "jobs.json"


def _read_records(folder: Path, stage: str) -> dict[str, dict[str, Any]]:
    path = _records_path(folder, stage)
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError:
        raise DLMError(f"{path} is not valid JSON; delete it (the jobs it lists are then resubmitted)") from None


def default_mem_gb(model_id: str, stage: str) -> float:
    """Host memory a job asks for when `--mem-gb` is not given: the model's weights twice (loading) plus 8 GB.

    Training and answers load the base model in 16-bit (2 bytes per parameter); the size comes
    from the model folder's config.json, else from a size in its name (`Llama-3.1-8B`: 8e9), else 8B.
    """
    if stage == "prepare":
        return 8.0
    params = model_parameters(model_id) or 8e9
    return float(math.ceil(2 * 2 * params / 1e9 + 8))


def model_parameters(model_id: str) -> float | None:
    """Approximate parameters of a decoder model from its config.json, or from a size in its name."""
    config = Path(model_id) / "config.json"
    if config.is_file():
        try:
            c = json.loads(config.read_text(encoding="utf-8"))
            h, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
            inter = c.get("intermediate_size", 4 * h)
        except (ValueError, KeyError, TypeError):
            return None
        return float(layers * (4 * h * h + 3 * h * inter) + 2 * vocab * h)
    m = re.search(r"(\d+(?:\.\d+)?)[bB](?![a-zA-Z])", Path(model_id).name)
    return float(m.group(1)) * 1e9 if m else None


def make_executor(options: ClusterOptions, folder: Path, stage: str, design_model: str | None = None):
    """A submitit executor for one stage's jobs, with the options' resources (memory by default from the model)."""
    import submitit

    if options.executor == "slurm" and not shutil.which("sbatch"):
        raise DLMError("--executor slurm needs SLURM's sbatch on PATH (run on a cluster's login node), or use "
                       "--executor local")
    executor = submitit.AutoExecutor(folder=folder, cluster=options.executor, slurm_max_num_timeout=options.max_requeues)
    gpus = gpus_per_job(options, stage)
    if stage != "train" and options.nodes > 1:
        raise DLMError(f"--nodes {options.nodes} is for train jobs; {stage} jobs run on one node")
    params: dict[str, Any] = {"name": f"dlm-{stage}", "timeout_min": options.time_min}
    if options.nodes > 1:
        params["nodes"] = options.nodes  # one task per node: each launches its node's training processes
    if options.executor == "slurm" or gpus:  # a local job with 0 GPUs would hide none: CUDA_VISIBLE_DEVICES=""
        params["gpus_per_node"] = gpus
    if options.cpus_per_run:
        params["cpus_per_task"] = options.cpus_per_run
    mem_gb = options.mem_gb or (default_mem_gb(design_model, stage) if design_model else None)
    if mem_gb:
        params["mem_gb"] = mem_gb
    if options.executor == "slurm":
        # SLURM sends USR2 `signal_delay_s` before the time limit (and at a preemption): submitit then calls
        # RunJob.checkpoint and requeues the job, which resumes from the run's newest complete checkpoint
        params.update(slurm_partition=options.partition, slurm_account=options.account,
                      slurm_signal_delay_s=options.signal_delay_s)
        if options.max_parallel:
            params["slurm_array_parallelism"] = options.max_parallel
    executor.update_parameters(**params)
    return executor


def gpus_per_job(options: ClusterOptions, stage: str) -> int:
    """GPUs per node a stage's job asks for (default 1; 0 for prepare)."""
    return options.gpus_per_run if options.gpus_per_run is not None else (0 if stage == "prepare" else 1)


def launch_of(options: ClusterOptions, stage: str, design: Design) -> Launch | None:
    """A train job's processes (one per GPU on each node), checked against the design's batch; None otherwise."""
    if stage != "train":
        return None
    launch = Launch(max(gpus_per_job(options, stage), 1), options.nodes, options.accelerate_config)
    if launch.processes > 1:
        first = design.runs()[0].name
        per_process_settings(train_settings(design, first), launch.processes, first)  # one line if it cannot
    return launch


def submit(stage: str, design: Design, options: ClusterOptions, answers: AnswerSettings | None = None,
           wait: bool = False, folder: Path | None = None, log: Callable[[str], None] = print,
           tiny_warmup_steps: int | None = None) -> list[RunState]:
    """Submit one job per unfinished run of `stage` (a job array on SLURM); optionally wait. Returns every run's state.

    Local jobs always run to the end before this returns (`max_parallel` at a time, default 1).
    `tiny_warmup_steps` (the profile's) goes into the command a missing tiny model's hint prints.
    """
    folder = (folder or jobs_dir(design)).absolute()
    _check_inputs(stage, design, answers, tiny_warmup_steps)
    launch = launch_of(options, stage, design)
    names = run_names(stage, design)
    with output_lock(_records_path(folder, stage), "job records"):  # one submitter per stage
        records = _read_records(folder, stage)
        states = {s.name: s for s in status(stage, design, answers, folder, records)}
        todo = [n for n in names if states[n].state not in ("done", *ACTIVE)]
        for n in names:
            if n not in todo:
                log(f"{stage} {n}: {states[n].state}" + (f" (job {states[n].job_id})" if states[n].job_id else "")
                    + ", not submitted")
        if stage == "train":
            missing = [str(design.dataset_path(design.find(n))) for n in todo
                       if not design.dataset_path(design.find(n)).is_file()]
            if missing:
                raise DLMError(f"dataset(s) {', '.join(missing)} not found: `python -m dlm submit --stage prepare` "
                               "(or notebook 03) first")
        if not todo:
            log(f"{stage}: nothing to submit ({len(names)} runs finished or queued)")
        elif options.executor == "local":
            _run_local(stage, design, answers, options, folder, todo, records, log, launch)
        else:
            executor = make_executor(options, folder / stage, stage, design.model_id)
            with executor.batch():
                submitted = [(n, executor.submit(RunJob(), stage, design, n, answers, os.getcwd(), launch)) for n in todo]
            for n, job in submitted:
                records[n] = _record(job, "slurm")
                log(f"{stage} {n}: submitted as SLURM job {job.job_id}; log {records[n]['log']}")
            write_json_atomic(_records_path(folder, stage), records)
    if wait and todo and options.executor == "slurm":
        wait_for(stage, design, answers, folder, todo, options.poll_seconds, log)
    return status(stage, design, answers, folder)


def _run_local(stage, design, answers, options, folder, todo, records, log, launch) -> None:
    """Local jobs, `max_parallel` at a time, each recorded when it starts; returns when all have ended."""
    executor = make_executor(options, folder / stage, stage, design.model_id)
    queue, running = list(todo), {}
    while queue or running:
        while queue and len(running) < (options.max_parallel or 1):
            name = queue.pop(0)
            job = executor.submit(RunJob(), stage, design, name, answers, os.getcwd(), launch)
            running[name] = job
            records[name] = _record(job, "local")
            write_json_atomic(_records_path(folder, stage), records)
            log(f"{stage} {name}: started as local job {job.job_id}; log {records[name]['log']}")
        time.sleep(min(options.poll_seconds, 1.0))
        for name, job in list(running.items()):
            if job.done():
                del running[name]
                outcome, detail = _outcome(records[name])
                log(f"{stage} {name}: {outcome}" + (f" ({detail})" if detail else ""))


def _record(job: Any, executor: str) -> dict[str, Any]:
    return {"job_id": str(job.job_id), "executor": executor, "result": str(job.paths.result_pickle),
            "log": str(job.paths.stdout), "err": str(job.paths.stderr),
            "submitted": dt.datetime.now().isoformat(timespec="seconds")}


def vllm_missing() -> bool:
    """Whether vLLM is missing from this environment (the jobs run in it)."""
    return importlib.util.find_spec("vllm") is None


def _check_inputs(stage: str, design: Design, answers: AnswerSettings | None,
                  tiny_warmup_steps: int | None = None) -> None:
    """Stop before submitting when a stage's inputs are missing (every job would fail the same way)."""
    if stage == "train" and not model_available(design.model_id):
        warmup = f" --warmup-steps {tiny_warmup_steps}" if tiny_warmup_steps is not None else ""
        raise DLMError(f"base model {design.model_id} not found: build it (`python -m dlm make-tiny-model "
                       f"--output-dir {design.model_id} --seed {design.train_seed}{warmup}` for the profile's tiny "
                       "model) or set model_id")
    if stage == "prepare" and not (Path(design.prism_source) / "survey.jsonl").is_file():
        raise DLMError(f"PRISM source {design.prism_source} has no survey.jsonl: run notebook 01 (or `python -m dlm "
                       f"synth --output {design.prism_source}`) first")
    if stage == "answers":
        if answers is None:
            raise DLMError("the answers stage needs 06's answer settings")

        load_questions(answers.questions_dir, answers.questions_per_clause)  # one clear line if there are none
        if answers.backend == "vllm" and vllm_missing():
            raise DLMError("--answer-backend vllm needs vLLM, which is not installed here (pip install vllm on the "
                           "GPU nodes' environment); use --answer-backend hf")


# ----------------------------------------------------------------------------- state


def status(stage: str, design: Design, answers: AnswerSettings | None = None, folder: Path | None = None,
           records: dict[str, dict[str, Any]] | None = None) -> list[RunState]:
    """Every run's state: done (outputs finished), pending/running (its job), failed, incomplete, not submitted."""
    folder = (folder or jobs_dir(design)).absolute()
    records = _read_records(folder, stage) if records is None else records
    out = []
    for name in run_names(stage, design):
        rec = records.get(name)
        reason = unfinished(stage, design, name, answers)
        if not reason:
            out.append(RunState(stage, name, "done", rec and rec["job_id"], rec and rec["log"]))
            continue
        state = job_state(rec) if rec is not None else None
        if reason.startswith(STALE) and state not in ACTIVE:  # outputs made with other settings: redone by submit
            out.append(RunState(stage, name, "stale", rec and rec["job_id"], rec and rec["log"], reason[len(STALE):]))
            continue
        if rec is None:
            out.append(RunState(stage, name, "not submitted", detail=reason))
            continue
        if state in ACTIVE:
            out.append(RunState(stage, name, state, rec["job_id"], rec["log"]))
            continue
        outcome, detail = _outcome(rec)
        out.append(RunState(stage, name, "incomplete" if outcome == "finished" else outcome, rec["job_id"],
                            rec["log"], reason if outcome == "finished" else detail))
    return out


def job_state(record: dict[str, Any]) -> str:
    """pending/running/... while the job is queued or alive, else "ended" (squeue for SLURM, /proc locally)."""
    if record["executor"] == "slurm":
        try:
            out = subprocess.run(["squeue", "--noheader", "--format=%T", f"--jobs={record['job_id']}"],
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        state = out.stdout.strip().split("\n")[0].strip().lower()
        return state if out.returncode == 0 and state else "ended"
    return "running" if _local_alive(int(record["job_id"])) else "ended"


def _local_alive(pid: int) -> bool:
    """Whether a local job's controller process is alive (not a zombie, not a reused pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z" and b"submitit" in cmdline


def _outcome(record: dict[str, Any]) -> tuple[str, str]:
    """("finished", ""), ("failed", last line of the error) or ("killed", ...) from the job's result pickle."""
    try:
        with open(record["result"], "rb") as fh:
            kind, value = pickle.load(fh)
    except FileNotFoundError:
        return "killed", f"ended without a result: killed, timed out or cancelled; see {record['err']}"
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, ImportError, AttributeError):
        return "failed", f"unreadable result; see {record['err']}"
    if kind == "success":
        return "finished", ""
    lines = [ln for ln in str(value).strip().splitlines() if ln.strip()]
    return "failed", (lines[-1].strip() if lines else "error") + f"; see {record['err']}"


def wait_for(stage: str, design: Design, answers: AnswerSettings | None, folder: Path, names: list[str],
             poll_seconds: float = 10.0, log: Callable[[str], None] = print) -> list[RunState]:
    """Poll until no job of `names` is queued or running; returns their states."""
    while True:
        states = [s for s in status(stage, design, answers, folder) if s.name in names]
        if not any(s.state in ACTIVE for s in states):
            for s in states:
                log(f"{stage} {s.name}: {s.state}" + (f" ({s.detail})" if s.detail else ""))
            return states
        time.sleep(poll_seconds)


def format_status(states: list[RunState]) -> str:
    """A table: stage, run, state, job id, log path, and why a run is not done."""
    lines = [f"{'stage':<8} {'run':<22} {'state':<14} {'job':<12} log / detail"]
    for s in states:
        extra = " | ".join(x for x in (s.log or "", s.detail) if x)
        lines.append(f"{s.stage:<8} {s.name:<22} {s.state:<14} {s.job_id or '-':<12} {extra}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- notebooks and profiles


def run_stage(stage: str, design: Design, options: ClusterOptions, answers: AnswerSettings | None = None,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """What notebooks 04 and 06 call with an executor: submit the unfinished runs, wait, stop if any failed.

    Returns the training summaries per run (train) or the number of answers per model (answers).
    """
    states = submit(stage, design, options, answers, wait=True, log=log)
    bad = [s for s in states if s.state != "done"]
    if bad:
        raise DLMError(f"{len(bad)} {stage} job(s) did not finish: " + "; ".join(
            f"{s.name} {s.state}" + (f" ({s.detail})" if s.detail else "") for s in bad[:3])
            + "; `python -m dlm status` shows every run, rerun to resubmit the failed ones")
    if stage == "train":
        return {s.name: json.loads((design.checkpoint(design.find(s.name)) / "training_summary.json").read_text())
                for s in states}
    if stage == "answers" and answers is not None:
        return {s.name: len([r for r in read_jsonl(answers.responses_dir / _slug(model_paths(design)[s.name]))])
                for s in states}
    return {s.name: s.state for s in states}


def _slug(path: str) -> str:
    return f"{slug(path)}.jsonl"


def cluster_options(executor: str, partition: str = "", account: str = "", gpus_per_run: int = -1,
                    cpus_per_run: int = 0, time_min: int = 240, **extra: Any) -> ClusterOptions | None:
    """ClusterOptions from notebook parameters ("" or None executor: None, train in-process)."""
    if not executor:
        return None
    return ClusterOptions(executor, partition or None, account or None, None if gpus_per_run < 0 else gpus_per_run,
                          cpus_per_run or None, time_min=time_min, **extra)


def tiny_warmup_steps(profile: str) -> int:
    """The warm-up steps notebook 04 builds the profile's tiny model with (for a hint that rebuilds the same model)."""
    book = next(nb for nb in notebooks() if nb.stem == NOTEBOOK_OF["train"])
    params = {k: _default_value(v) for k, v in declared_parameters(book).items()}
    params.update(resolve_parameters(load_profile(profile), [book])[book.stem])
    return int(params.get("tiny_warmup_steps", 200))


def profile_settings(profile: str, stage: str) -> tuple[Design, ClusterOptions | None, AnswerSettings | None]:
    """A profile's design for a stage, its cluster options (notebook parameters) and 06's answer settings."""
    loaded = load_profile(profile)
    design = experiment.from_profile(loaded, NOTEBOOK_OF[stage])
    book = next(nb for nb in notebooks() if nb.stem == NOTEBOOK_OF[stage])
    params = {k: _default_value(v) for k, v in declared_parameters(book).items()}
    params.update(resolve_parameters(loaded, [book])[book.stem])
    options = None
    if params.get("executor"):
        options = cluster_options(params["executor"], params.get("slurm_partition", ""),
                                  params.get("slurm_account", ""), int(params.get("gpus_per_run", -1)),
                                  int(params.get("cpus_per_run", 0)), int(params.get("job_time_min", 240)))
    answers = None
    if stage == "answers":
        answers = AnswerSettings(params["questions_dir"], params["evaluation_output"], int(params["max_new_tokens"]),
                                 int(params["eval_seed"]), int(params["questions_per_clause"]) or None)
    return design, options, answers


def with_overrides(options: ClusterOptions | None, **overrides: Any) -> ClusterOptions:
    """`options` (default: slurm) with every override that is not None."""
    base = options or ClusterOptions()
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
