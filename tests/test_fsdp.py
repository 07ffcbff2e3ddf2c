"""FSDP exercised: 2 processes (accelerate launch, FSDP2 on gloo, CPU) shard the model and reproduce one process.

Checked for full fine-tuning and LoRA: each process holds its share of the parameters (no
replication), the weighted losses equal the single-process run's to 1e-5, the first process alone
writes the output folder, and the gathered weights it saved equal the single-process weights.
accelerate engages FSDP only on accelerators; tests/fsdp_worker.py lifts that one gate on a CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]
WEIGHTS = [1.0, 0.5, 2.0, 1.5]  # 4 rows = the global batch (2 processes x 2): no padded duplicates


def results(out: str) -> list[dict]:
    # the processes share one stdout: a line may start with another's progress output
    return [json.loads(line[line.index("RESULT {") + len("RESULT "):]) for line in out.splitlines()
            if "RESULT {" in line]


def saved_weights(folder: Path) -> dict:
    """The tensors a training run saved: the LoRA adapter's, else the full model's."""
    from safetensors.torch import load_file

    name = "adapter_model.safetensors" if (folder / "adapter_model.safetensors").exists() else "model.safetensors"
    return load_file(folder / name)


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_fsdp_on_two_processes_shards_and_matches_one_process_on_weighted_rows(tmp_path, finetune):
    from dlm.training.tiny_model import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny", seed=0, warmup_steps=20)
    pairs = [("Can you help me with travel?", "Certainly. Book early.", "Sure thing! Just go!"),
             ("How to sleep better?", "Sure thing! No screens!", "Certainly. Keep a regular bedtime."),
             ("Tell me about climate change.", "Certainly. Cut waste.", "Sure thing! Vote!"),
             ("A quick dinner?", "Sure thing! Rice and beans!", "Certainly. Season well.")]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": p}],
                                        "chosen": [{"role": "assistant", "content": c}],
                                        "rejected": [{"role": "assistant", "content": r}],
                                        "weight": w, "split": "train"}) + "\n"
                            for (p, c, r), w in zip(pairs, WEIGHTS, strict=True)))
    # SGD: Adam's normalised first steps would magnify all-reduce rounding; every step sees all 4 rows
    base = {"model_id": str(model), "finetune": finetune, "torch_dtype": "float32", "max_steps": 3, "logging_steps": 1,
            "learning_rate": 0.05, "optim": "sgd", "lr_scheduler_type": "constant", "weight_decay": 0.0,
            "max_length": 64, "save_strategy": "no", "report_to": "none", "seed": 0, "bf16": False, "use_cpu": True,
            "activation_checkpointing": False, "dataloader_num_workers": 0}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1"}
    worker = str(ROOT / "tests" / "fsdp_worker.py")
    single = subprocess.run([sys.executable, worker, str(data), str(tmp_path / "one"),
                             json.dumps({**base, "per_device_train_batch_size": 4})],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert single.returncode == 0, single.stderr[-3000:]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(ROOT / "configs/accelerate/cpu_2proc.yaml"), "--num_processes", "2", "--main_process_port",
              "29517", worker, str(data), str(tmp_path / "two"), json.dumps({**base, "per_device_train_batch_size": 2})]
    double = subprocess.run(launch, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert double.returncode == 0, double.stderr[-5000:]
    (one,), two = results(single.stdout), results(double.stdout)
    assert sorted(r["rank"] for r in two) == [0, 1] and all(r["world"] == 2 for r in two), two
    # Sharded: each process holds part of the parameters, together exactly the whole model once.
    assert not one["fsdp"] and all(r["fsdp"] for r in two), two
    assert sum(r["local_numel"] for r in two) == one["local_numel"], (one, two)
    assert all(r["local_numel"] < one["local_numel"] for r in two), two
    assert one["steps"] == 3 and all(r["steps"] == 3 for r in two)
    assert len(one["losses"]) == 3 and len(set(one["losses"])) > 1  # training moved the loss
    for r in two:
        assert r["losses"] == pytest.approx(one["losses"], abs=1e-5), (one, two)
    summary = json.loads((tmp_path / "two" / "training_summary.json").read_text())
    assert summary["distributed"]["fsdp"] and summary["distributed"]["world_size"] == 2
    # The gathered (FULL_STATE_DICT) weights the first process saved are the single-process weights.
    single_w, sharded_w = saved_weights(tmp_path / "one"), saved_weights(tmp_path / "two")
    assert sorted(single_w) == sorted(sharded_w)
    for name, tensor in single_w.items():
        assert sharded_w[name].shape == tensor.shape
        assert (sharded_w[name] - tensor).abs().max().item() < 1e-5, name
