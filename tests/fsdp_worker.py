"""One process of the FSDP test: `dlm.training.train` with a callback that counts this process's parameters.

Run under `accelerate launch`, or alone for the single-process reference; prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys

from transformers import TrainerCallback

from dlm.training import train


class LocalParameters(TrainerCallback):
    """Elements of the parameters this process holds, and how many modules FSDP wraps, when training starts.

    The callback sees the model Trainer was given; FSDP shards it in place (its parameters become views
    of this process's shard, or DTensors under FSDP2) and wraps its decoder layers.
    """

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.numel = sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in model.parameters())
        self.fsdp_modules = sum("FullyShardedDataParallel" in type(m).__name__ or type(m).__name__.startswith("FSDP")
                                for m in model.modules())


if __name__ == "__main__":
    dataset, output_dir, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    seen = LocalParameters()
    summary = train(dataset, output_dir, settings, callbacks=[seen])
    losses = [h["loss"] for h in summary["log_history"] if "loss" in h]
    print("RESULT " + json.dumps({"rank": int(os.environ.get("RANK", "0")),
                                  "world": int(os.environ.get("WORLD_SIZE", "1")),
                                  "local_numel": seen.numel, "fsdp_modules": seen.fsdp_modules, "losses": losses,
                                  "steps": summary["steps"]}))
