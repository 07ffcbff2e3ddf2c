"""Steps that run the design's runs as cluster jobs: submit, status."""

from __future__ import annotations

import argparse
import dataclasses
import re

from dlm.cli.common import command
from dlm.errors import DLMError
from dlm.experiment import jobs, runs
from dlm.io import non_negative_int, positive_float, positive_int


def parse_minutes(text: str) -> int:
    """A time limit as minutes: `90`, `HH:MM:SS`, `MM:SS` or `D-HH[:MM[:SS]]` (SLURM's spellings)."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: write minutes (240) or SLURM's HH:MM:SS / D-HH:MM")
    days, a, b, c = (int(x) if x else None for x in m.groups())
    if days is None and b is None:
        minutes = a
    elif days is None and c is None:  # MM:SS
        minutes = a + (b > 0)
    elif days is None:  # HH:MM:SS
        minutes = a * 60 + b + (c > 0)
    else:  # D-HH[:MM[:SS]]
        minutes = days * 1440 + a * 60 + (b or 0) + ((c or 0) > 0)
    if minutes < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the time limit must be at least one minute")
    return minutes


def _submit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", required=True, help="profile name in configs/profiles/ or a YAML path")
    p.add_argument("--stage", required=True, choices=["prepare", "train", "answers"],
                   help="prepare: one job per dataset; train: one per run; answers: one per model (06 reuses them)")
    p.add_argument("--executor", choices=["slurm", "local"], default=None,
                   help="slurm: a job array through sbatch; local: processes on this machine, waited for "
                        "(default: the profile's `executor`, else slurm)")
    p.add_argument("--partition", default=None, help="SLURM partition (default: the profile's slurm_partition)")
    p.add_argument("--account", default=None, help="SLURM account (default: the profile's slurm_account)")
    p.add_argument("--gpus-per-run", type=non_negative_int, default=None,
                   help="GPUs per job and node (default 1; 0 for prepare); train with N > 1 runs N processes under "
                        "accelerate launch, the design's rows per optimizer step split over them")
    p.add_argument("--nodes", type=positive_int, default=None,
                   help="train: nodes per job (SLURM; default 1), each running --gpus-per-run training processes")
    p.add_argument("--accelerate-config", default=None, metavar="YAML",
                   help="train on several processes: accelerate's config (default: data parallel for LoRA, "
                        "configs/accelerate/fsdp.yaml for full fine-tuning; deepspeed_zero3.yaml for ZeRO-3)")
    p.add_argument("--cpus-per-run", type=positive_int, default=None, help="CPUs per job (default: the cluster's)")
    p.add_argument("--mem-gb", type=positive_float, default=None,
                   help="memory per job in GB (default: twice the base model's 16-bit weights plus 8 GB; 8 for prepare)")
    p.add_argument("--time", type=parse_minutes, default=None, metavar="LIMIT",
                   help="time limit per job: minutes or HH:MM:SS (default 240 minutes)")
    p.add_argument("--signal-delay", type=positive_int, default=None, metavar="SECONDS",
                   help="SLURM signals a job this long before its time limit; the job requeues itself and resumes "
                        "from its newest checkpoint (default 90; allow for saving one checkpoint)")
    p.add_argument("--max-requeues", type=non_negative_int, default=None,
                   help="requeues per job after reaching its time limit (default 5; preemptions are not counted)")
    p.add_argument("--max-parallel", type=positive_int, default=None,
                   help="jobs running at once (local default 1; SLURM: the array's %%N limit)")
    p.add_argument("--answer-backend", choices=["hf", "vllm"], default=None,
                   help="answers stage: generate with transformers (hf, default: 06's answer_backend) or vLLM (the same "
                        "prompts and stop rules; needs vllm installed on the GPU nodes)")
    p.add_argument("--wait", action="store_true", help="wait for the SLURM jobs to end and report each (local always "
                                                      "waits)")
    p.add_argument("--poll-seconds", type=positive_float, default=None, help="seconds between checks while waiting (default: 10)")


@command("submit", _submit_args)
def run_submit(args: argparse.Namespace) -> int:
    """Submit one job per unfinished run of a stage (submitit: a SLURM job array, or local processes)."""
    design, options, answers = jobs.profile_settings(args.profile, args.stage)
    if args.answer_backend and answers is not None:
        answers = dataclasses.replace(answers, backend=args.answer_backend)
    options = jobs.with_overrides(options, executor=args.executor, partition=args.partition, account=args.account,
                                  gpus_per_run=args.gpus_per_run, nodes=args.nodes,
                                  accelerate_config=args.accelerate_config, cpus_per_run=args.cpus_per_run,
                                  mem_gb=args.mem_gb, time_min=args.time, signal_delay_s=args.signal_delay,
                                  max_requeues=args.max_requeues, max_parallel=args.max_parallel,
                                  poll_seconds=args.poll_seconds)
    states = jobs.submit(args.stage, design, options, answers, wait=args.wait,
                         log=lambda line: print(line, flush=True), tiny_warmup_steps=jobs.tiny_warmup_steps(args.profile))
    counts: dict[str, int] = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
    print(f"{args.stage}: " + ", ".join(f"{n} {state}" for state, n in counts.items())
          + f"; `python -m dlm status --profile {args.profile}` shows each run")
    return 1 if any(s.state in (*jobs.FAILED, "incomplete") for s in states) else 0


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", required=True, help="profile name in configs/profiles/ or a YAML path")
    p.add_argument("--stage", choices=["prepare", "train", "answers"], action="append", default=None,
                   help="only this stage (repeatable; default: every stage)")


@command("status", _status_args)
def run_status(args: argparse.Namespace) -> int:
    """Each run's state per stage (done, pending, running, failed, incomplete, not submitted) and its job's log."""
    states = []
    for stage in args.stage or list(runs.STAGES):
        design, _, answers = jobs.profile_settings(args.profile, stage)
        try:
            states += jobs.status(stage, design, answers)
        except DLMError as exc:
            if stage != "answers" or args.stage:
                raise
            print(f"answers: not shown ({exc})")
    print(jobs.format_status(states))
    failed = [s for s in states if s.state in jobs.FAILED]
    if failed:
        print(f"{len(failed)} run(s) failed or were killed; `python -m dlm submit` resubmits them")
    return 1 if failed else 0
