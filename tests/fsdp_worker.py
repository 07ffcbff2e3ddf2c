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
    """Elements of the parameters this process holds, and the model wrapper's class, when training starts."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.numel = sum(p.numel() for p in model.parameters())
        self.wrapper = type(model).__name__


if __name__ == "__main__":
    dataset, output_dir, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    seen = LocalParameters()
    summary = train(dataset, output_dir, settings, callbacks=[seen])
    losses = [h["loss"] for h in summary["log_history"] if "loss" in h]
    print("RESULT " + json.dumps({"rank": int(os.environ.get("RANK", "0")),
                                  "world": int(os.environ.get("WORLD_SIZE", "1")),
                                  "local_numel": seen.numel, "wrapper": seen.wrapper, "losses": losses,
                                  "steps": summary["steps"]}))
