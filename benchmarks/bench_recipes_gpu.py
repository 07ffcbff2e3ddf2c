"""The shipped training recipes, run through the real CLI on a GPU: `python -m dlm train --config configs/train/X.yaml`.

For each recipe (lora, qlora): a model with Llama-3.1-8B's exact architecture and random weights
(saved once to a local folder with this project's tokenizer: no download), a preference file of
--rows weighted rows of --seq-len tokens, and `dlm train` for --steps optimizer steps with the
recipe's own settings except gradient accumulation 1 and no checkpoints. Reports wall time
(model loading included), training seconds per step (the first included), peak GPU memory (nvidia-smi, polled: the whole process,
CUDA context included), the losses, and whether the adapter was saved. The recipes' comments
promise LoRA in ~25-40 GB and QLoRA on a 24 GB GPU; this is where that is measured.

    python benchmarks/bench_recipes_gpu.py --out benchmarks/results/recipes_gpu_h200.json   # on a GPU
    python benchmarks/bench_recipes_gpu.py --dry-run            # tiny model, lora only, on the CPU (tested)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dpo_gpu import LLAMA_31_8B, TINY, make_rows, random_llama  # noqa: E402


def save_model(folder: Path, arch: dict, device: str) -> int:
    """Random-weight Llama of the given architecture, in bf16 on a GPU, saved with our tokenizer; returns #params."""
    import torch

    from dlm.training.tiny_model import default_corpus, train_tokenizer

    tokenizer = train_tokenizer(default_corpus(0, 300), vocab_size=1024)
    model = random_llama(arch, device)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return n


def write_rows(path: Path, folder: Path, n: int, seq_len: int) -> None:
    """Preference rows with uneven weights (as `soft` has)."""
    from transformers import AutoTokenizer

    rng = random.Random(1)
    rows = make_rows(AutoTokenizer.from_pretrained(folder), n, seq_len, 0)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps({**row, "weight": round(rng.uniform(0.2, 3.0), 3), "split": "train"}) + "\n")


class GpuMemory:
    """Peak memory in use on GPU 0, polled with nvidia-smi while a child process runs."""

    def __init__(self, interval: float = 0.2):
        self.peak_mib, self.interval, self._stop = 0, interval, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                                 capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip():
                self.peak_mib = max(self.peak_mib, int(out.stdout.split()[0]))
            time.sleep(self.interval)

    def __enter__(self) -> GpuMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_recipe(recipe: str, model: Path, data: Path, out: Path, steps: int, batch: int | None, gpu: bool) -> dict:
    """`dlm train` with the recipe; returns timings, memory, losses and what it saved."""
    cmd = [sys.executable, "-m", "dlm", "train", "--config", str(ROOT / "configs/train" / f"{recipe}.yaml"),
           "--model_name_or_path", str(model), "--dataset", str(data), "--output-dir", str(out), "--max-steps", str(steps),
           "--gradient-accumulation-steps", "1", "--save-strategy", "no", "--logging-steps", "1"]
    if batch:
        cmd += ["--per-device-train-batch-size", str(batch)]
    t = time.perf_counter()
    if gpu:
        with GpuMemory() as memory:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    else:
        memory, proc = None, subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    result = {"recipe": recipe, "returncode": proc.returncode, "wall_seconds": round(wall, 1)}
    if proc.returncode != 0:
        return {**result, "stderr_tail": proc.stderr[-3000:]}
    summary = json.loads((out / "training_summary.json").read_text())
    logs = summary["log_history"]
    losses = [h["loss"] for h in logs if "loss" in h]
    settings = {**summary["config"]["model"], **summary["config"]["dpo"]}
    result.update(
        train_runtime_s=summary["metrics"]["train_runtime"],
        seconds_per_step=round(summary["metrics"]["train_runtime"] / steps, 2),
        losses=losses, losses_finite=all(loss == loss and abs(loss) < 1e6 for loss in losses),
        batch_size=settings.get("per_device_train_batch_size"), finetune=summary["config"]["finetune"],
        activation_checkpointing=settings.get("activation_checkpointing", settings.get("gradient_checkpointing")),
        adapter_saved=(out / "adapter_model.safetensors").exists(),
        peak_gpu_memory_gib=round(memory.peak_mib / 1024, 1) if memory else None)
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--dry-run", action="store_true", help="tiny model on the CPU, lora only")
    p.add_argument("--recipes", nargs="+", default=["lora", "qlora"])
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    gpu = not args.dry_run
    if args.dry_run:
        args.recipes, args.steps, args.seq_len = ["lora"], 2, 128
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        n_params = save_model(tmp / "model", TINY if args.dry_run else LLAMA_31_8B, "cuda" if gpu else "cpu")
        model_seconds = round(time.perf_counter() - t, 1)
        write_rows(tmp / "prefs.jsonl", tmp / "model", 64, args.seq_len)
        runs = [run_recipe(r, tmp / "model", tmp / "prefs.jsonl", tmp / r, args.steps, 2 if args.dry_run else None, gpu)
                for r in args.recipes]
    import torch

    summary = {"architecture": "tiny" if args.dry_run else "Llama-3.1-8B", "params": n_params, "seq_len": args.seq_len,
               "steps": args.steps, "model_build_seconds": model_seconds,
               "gpu": torch.cuda.get_device_name(0) if gpu else None, "runs": runs,
               "versions": {m: __import__(m).__version__ for m in ("torch", "transformers", "trl", "peft")}}
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    main()
