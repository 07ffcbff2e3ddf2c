"""One process of the FSDP test: `dlm.training.train`, then this process's share of the parameters and its losses.

Run under `accelerate launch` (configs/accelerate/cpu_2proc.yaml), or alone for the single-process
reference; prints one JSON line.

accelerate 1.15 turns `distributed_type: FSDP` into FSDP only for accelerator back ends
(`AcceleratorState.__init__` checks MULTI_GPU, MULTI_XPU, …), never MULTI_CPU, although torch's
FSDP2 shards on a gloo CPU mesh. `lift_cpu_fsdp_gate` does on a CPU what that branch does on a GPU
(record FSDP as the state's distributed type, keep the plugin, write the type back to the shared
`PartialState`), and nothing else: model preparation (`fsdp2_prepare_model`), the Trainer's FSDP
branches (full-state-dict save) and our weighted loss are the code that runs on GPUs.
"""

from __future__ import annotations

import json
import os
import sys


def lift_cpu_fsdp_gate() -> None:
    """Let accelerate run its FSDP path on CPU processes (test harness only; see the module docstring)."""
    from accelerate import state
    from accelerate.utils import DistributedType

    original = state.AcceleratorState.__init__

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if self.distributed_type == DistributedType.MULTI_CPU and fsdp_plugin is not None:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    state.AcceleratorState.__init__ = init


if __name__ == "__main__":
    lift_cpu_fsdp_gate()
    from dlm.training.train_dpo import train

    dataset, output_dir, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    summary = train(dataset, output_dir, settings)
    losses = [h["loss"] for h in summary["log_history"] if "loss" in h]
    d = summary["distributed"]
    print("RESULT " + json.dumps({"rank": int(os.environ.get("RANK", "0")), "world": d["world_size"], "fsdp": d["fsdp"],
                                  "local_numel": d["parameters_on_this_process"], "losses": losses,
                                  "steps": summary["steps"]}))
