"""The registry of arms (configs/arms.yaml) and how runs are named and paired across panel draws and seeds."""

from dlm.arms.registry import Arm, load_arms
from dlm.arms.replicates import Run, drawn_arms, draws_for, datasets, runs, matched_pairs, arm_of, parse_run, arms_of
