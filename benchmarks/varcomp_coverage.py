"""Coverage of every replicate contrast's interval over the simulated grid that tests/test_varcomp.py asserts.

    python benchmarks/varcomp_coverage.py

The same cells and seeds as the slow tests (R × S = 3 × 2, 5 × 1, 1 × 3 and `real`'s 4 × 3; draw-,
seed-dominated and mixed; 12 and 25 clauses or raters; 5,000 repetitions each), for 06's win rates
and 07's per-group differences: the ranges docs/design.md quotes, and each cell. `shared_answers`:
06's `soft:hard` in the crossed designs (3 × 2, 4 × 3) when each model's answer to a question is
shared by all its pairs (answer SD 0.1, which the slow tests assert, 0.2 and 0.3). Writes
benchmarks/results/varcomp_coverage.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from test_varcomp import CONTRASTS, CROSSED, DESIGNS, SETTINGS, coverage, difference_coverage  # noqa: E402
from varcomp_sim import cell_seed  # noqa: E402

from dlm.io import write_json_atomic  # noqa: E402


def cells(reps: int) -> list[dict]:
    """One row per contrast, design, setting and size: its win-rate and group-difference coverage."""
    rows = []
    for draws, seeds in DESIGNS:
        for setting in SETTINGS:
            for size in (12, 25):
                for i, (a, b) in enumerate(CONTRASTS):
                    seed = cell_seed(draws, seeds, size, i)  # the tests' seeds
                    rows.append({"contrast": f"{a}:{b}", "draws": draws, "seeds": seeds, "setting": setting,
                                 "clauses_or_raters": size,
                                 "win_rate": round(coverage(a, b, draws, seeds, size, setting, reps, seed=seed)[0], 4),
                                 "group_difference": round(difference_coverage(a, b, draws, seeds, size, setting, reps,
                                                                               seed=seed), 4)})
    return rows


def shared_answers(reps: int) -> list[dict]:
    """06's `soft:hard` coverage when a model's answers are shared by its pairs, per crossed design, setting, size."""
    rows = []
    i = CONTRASTS.index(("soft", "hard"))
    for answer_sd in (0.1, 0.2, 0.3):
        for draws, seeds in CROSSED:
            for setting in SETTINGS:
                for size in (12, 25):
                    cov, _ = coverage("soft", "hard", draws, seeds, size, setting, reps,
                                      seed=cell_seed(draws, seeds, size, i), answer_sd=answer_sd)
                    rows.append({"answer_sd": answer_sd, "draws": draws, "seeds": seeds, "setting": setting,
                                 "clauses": size, "win_rate": round(cov, 4)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=5000)
    p.add_argument("--output", default=str(ROOT / "benchmarks/results/varcomp_coverage.json"))
    args = p.parse_args()
    rows = cells(args.reps)
    summary = {k: [min(r[k] for r in rows), max(r[k] for r in rows)] for k in ("win_rate", "group_difference")}
    shared = shared_answers(args.reps)
    summary["shared_answers"] = {sd: [min(r["win_rate"] for r in shared if r["answer_sd"] == sd),
                                      max(r["win_rate"] for r in shared if r["answer_sd"] == sd)]
                                 for sd in dict.fromkeys(r["answer_sd"] for r in shared)}
    write_json_atomic(args.output, {"reps": args.reps, "range": summary, "cells": rows, "shared_answers": shared})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
