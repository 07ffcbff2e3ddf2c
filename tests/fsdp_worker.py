"""One process of the FSDP test: `dlm.training.train`, then this process's share of the parameters and its losses.

Run under `accelerate launch`, or alone for the single-process reference; prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys

from dlm.training import train

if __name__ == "__main__":
    dataset, output_dir, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    summary = train(dataset, output_dir, settings)
    losses = [h["loss"] for h in summary["log_history"] if "loss" in h]
    d = summary["distributed"]
    print("RESULT " + json.dumps({"rank": int(os.environ.get("RANK", "0")), "world": d["world_size"], "fsdp": d["fsdp"],
                                  "local_numel": d["parameters_on_this_process"], "losses": losses,
                                  "steps": summary["steps"]}))
