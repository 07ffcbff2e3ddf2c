"""Coverage of every replicate contrast's interval over the simulated grid that tests/test_varcomp.py asserts.

    python benchmarks/varcomp_coverage.py

The same cells and seeds as the slow tests (R × S = 3 × 2, 5 × 1, 1 × 3 and `real`'s 4 × 3; draw-,
seed-dominated and mixed; 12 and 25 clauses or raters; 5,000 repetitions each), for 06's win rates
and 07's per-group differences: the ranges docs/design.md quotes, and each cell. Writes
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
from test_varcomp import CONTRASTS, DESIGNS, SETTINGS, coverage, difference_coverage  # noqa: E402
from varcomp_sim import cell_seed  # noqa: E402


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=5000)
    p.add_argument("--output", default=str(ROOT / "benchmarks/results/varcomp_coverage.json"))
    args = p.parse_args()
    rows = cells(args.reps)
    summary = {k: [min(r[k] for r in rows), max(r[k] for r in rows)] for k in ("win_rate", "group_difference")}
    with open(args.output, "w", encoding="utf-8") as fh:
        json.dump({"reps": args.reps, "range": summary, "cells": rows}, fh, indent=1)
        fh.write("\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
