"""The bill of a design before any work: GPU hours per stage, API requests, tokens and cost, wall time."""

from __future__ import annotations

import argparse

from dlm.cli.common import command
from dlm.errors import DLMError
from dlm.experiment.bill import estimate_bill
from dlm.experiment.profiles import load_profile
from dlm.io import positive_int


def _bill_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="real", help="profile whose design is billed (configs/profiles/)")
    p.add_argument("--gpus", type=positive_int, default=1, help="GPUs working at once (one run per GPU)")


@command("bill", _bill_args)
def run_bill(args: argparse.Namespace) -> int:
    """GPU hours per stage, API requests/tokens/cost (Batch API or not) and wall time on N GPUs, before any work."""
    if args.gpus < 1:
        raise DLMError(f"--gpus must be at least 1, got {args.gpus}")
    print("\n".join(estimate_bill(load_profile(args.profile), args.gpus).lines()))
    return 0
