"""One training run on several processes: `accelerate launch` inside its job, the design's rows per step kept.

A train job with `--gpus-per-run N` (N > 1) or `--nodes M` (M > 1) starts N × M training processes
with `accelerate launch`: one per GPU on each of its nodes (on SLURM, submitit runs one task per
node and each task launches its node's processes). Each process trains `per_process_settings`: the
recipe's gradient accumulation (else per-device batch) divided by the number of processes, so the
rows per optimizer step are the design's and the arms stay matched. LoRA runs use data parallelism
(`--multi_gpu`); full fine-tuning uses configs/accelerate/fsdp.yaml (FSDP2) unless `--accelerate-config`
names another (configs/accelerate/deepspeed_zero3.yaml for ZeRO-3). A job that sees no GPU (CPU
tests) launches CPU processes with configs/accelerate/cpu_2proc.yaml. The processes run this
module's `main` (`python -m dlm.experiment.launch PICKLE`: the design, run and settings, pickled
beside the run's checkpoint folder), which trains as a one-process job does (`dlm.training.train`,
resuming from the newest complete checkpoint).
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlm.errors import DLMError
from dlm.experiment.designs import Design, rows_per_step
from dlm.paths import project_root
from dlm import training  # train() imports TRL on first use: submitting a job does not

SPLIT_KEYS = ("per_device_train_batch_size", "gradient_accumulation_steps")  # how a run's batch is split


@dataclass(frozen=True)
class Launch:
    """How many training processes one train job runs: GPUs per node × nodes, and accelerate's config."""

    processes_per_node: int = 1
    nodes: int = 1
    config: str | None = None  # an accelerate config file; None: DDP for LoRA, FSDP for full fine-tuning

    @property
    def processes(self) -> int:
        """Training processes in all."""
        return self.processes_per_node * self.nodes


def per_process_settings(settings: dict[str, Any], processes: int, name: str = "") -> dict[str, Any]:
    """`settings` with each process's share of the rows per optimizer step (the total stays the design's)."""
    if processes == 1:
        return settings
    per_device = int(settings.get("per_device_train_batch_size", 8))
    accumulation = int(settings.get("gradient_accumulation_steps", 1))
    total = rows_per_step(settings)
    if total % processes:
        raise DLMError(f"run {name}: the design's {total} rows per optimizer step do not split over {processes} "
                       f"processes; use a number of GPUs that divides {total} (--gpus-per-run, --nodes) or change the "
                       "recipe's per_device_train_batch_size x gradient_accumulation_steps")
    if accumulation % processes == 0:  # fewer accumulation steps first: the per-device memory stays as planned
        accumulation //= processes
    elif per_device % processes == 0:
        per_device //= processes
    else:  # e.g. 12 rows (6 x 2) over 4 processes: 3 each, the largest per-device batch that divides it
        share = total // processes
        per_device = max(d for d in range(1, min(per_device, share) + 1) if share % d == 0)
        accumulation = share // per_device
    out = {**settings, "per_device_train_batch_size": per_device, "gradient_accumulation_steps": accumulation}
    assert rows_per_step(out) * processes == total
    return out


def check_matched_batch(design: Design, name: str, settings: dict[str, Any]) -> None:
    """Refuse a run whose rows per optimizer step would differ from the design's: its arms would not be matched."""
    import torch

    processes, gpus = int(os.environ.get("WORLD_SIZE", "1")), torch.cuda.device_count()
    if processes == 1 and gpus > 1:  # one process on several GPUs: the Trainer splits batches with DataParallel
        raise DLMError(f"run {name}: {gpus} GPUs visible to one training process would train {gpus}x the design's "
                       "batch per step (DataParallel); set CUDA_VISIBLE_DEVICES to one GPU, or submit the runs as "
                       "jobs with --gpus-per-run N (one process per GPU)")
    rows, planned = rows_per_step(settings) * processes, design.effective_batch()
    if rows != planned:
        how = (f"with {processes} processes, make per_device_train_batch_size x gradient_accumulation_steps "
               f"{planned // processes}" if processes > 1 and planned % processes == 0 else
               "keep the recipe's per_device_train_batch_size and gradient_accumulation_steps")
        raise DLMError(f"run {name} would train {rows} rows per optimizer step, the design's runs {planned}; {how} "
                       "(flags --per_device_train_batch_size, --gradient_accumulation_steps)")


def launcher_arguments(launch: Launch, finetune: str, gpus_visible: int) -> list[str]:
    """accelerate launch's options for a run: its config (or --multi_gpu) and the process count."""
    configs = project_root() / "configs" / "accelerate"
    if gpus_visible == 0:  # CPU processes (gloo): the FSDP-typed CPU config is the one accelerate spawns on a CPU
        config: str | None = str(configs / "cpu_2proc.yaml")
    elif launch.config:
        config = launch.config
    else:
        config = str(configs / "fsdp.yaml") if finetune == "full" else None
    return (["--config_file", config] if config else ["--multi_gpu"]) + [
        "--num_processes", str(launch.processes), "--num_machines", str(launch.nodes)]


def node_arguments(launch: Launch) -> list[str]:
    """This node's rank and the first node's address (submitit's job environment on a multi-node job)."""
    if launch.nodes == 1:
        return ["--machine_rank", "0", "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port())]
    import submitit  # optional: only cluster jobs need it

    env = submitit.JobEnvironment()
    port = 20000 + int("".join(c for c in str(env.job_id) if c.isdigit()) or "0") % 20000  # the same on every node
    return ["--machine_rank", str(env.node), "--main_process_ip", env.hostnames[0], "--main_process_port", str(port)]


def free_port() -> int:
    """A TCP port free on this machine now (one node: the processes meet on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train_on_processes(design: Design, name: str, launch: Launch, settings: dict[str, Any]) -> dict[str, Any]:
    """Train one run with `launch.processes` processes (this node's share of them); returns its training summary."""
    import torch

    folder = design.checkpoint(design.find(name))
    folder.parent.mkdir(parents=True, exist_ok=True)
    # what this node's processes load: one file per node, so no node waits for another to write it
    pickled = folder.parent / f".{folder.name}.launch-{os.environ.get('SLURM_NODEID', '0')}.pkl"
    pickled.write_bytes(pickle.dumps((design, name, settings)))
    command = [sys.executable, "-m", "accelerate.commands.launch",
               *launcher_arguments(launch, str(settings.get("finetune", "lora")), torch.cuda.device_count()),
               *node_arguments(launch), "-m", "dlm.experiment.launch", str(pickled)]
    print("launching: " + " ".join(command), flush=True)
    try:
        threads = os.environ.get("OMP_NUM_THREADS", "1")  # N processes on one node: one math thread each
        done = subprocess.run(command, check=False, env={**os.environ, "OMP_NUM_THREADS": threads})
    finally:
        pickled.unlink(missing_ok=True)
    if done.returncode != 0:
        raise DLMError(f"run {name}: {launch.processes} training processes ended with exit code {done.returncode}; "
                       "see this job's log")
    return json.loads((folder / "training_summary.json").read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> None:
    """One of the launched processes: train the pickled run with this process's share of the batch."""
    (path,) = argv if argv is not None else sys.argv[1:]
    design, name, settings = pickle.loads(Path(path).read_bytes())
    run = design.find(name)
    settings = per_process_settings(settings, int(os.environ.get("WORLD_SIZE", "1")), name)
    check_matched_batch(design, name, settings)
    training.train(design.dataset_path(run), design.checkpoint(run), settings, token=training.hf_token(), resume=True)


if __name__ == "__main__":
    main()
