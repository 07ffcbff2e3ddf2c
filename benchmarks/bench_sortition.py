"""Sortition timings.

- LEGACY: 2000 panels on the 7-attribute, 1,500-person benchmark (configs/panels/benchmark_7attr.yaml). Target <= 5 s.
- LEXIMIN, certified, on the default US config (configs/panel_config.yaml). Target <= 60 s.
- With --maximin: the certified first LEXIMIN level on the 7-attribute benchmark by column
  generation alone, within --time-limit (target <= 15 min); reports the bounds reached either way.
- With --full-leximin SECONDS: the full LEXIMIN on the 7-attribute benchmark (default route),
  each certified level's value, bound, gap and time (it reports how far it got if stopped).
- With --cli: the issue's command, `python -m dlm sortition --survey <paper sample> --panel-config
  configs/panels/benchmark_7attr.yaml --panel-algorithm leximin`, in a fresh process (target <= 15 s
  on this 2-core machine): wall and CPU seconds (its own and its children's), whether the manifest
  carries a certificate, and the largest difference from the reference probabilities
  (`benchmarks/results/leximin_7attr_probs.csv`: `dlm sortition` at commit 2131798, before issue 29's
  second round; that code matched the code before issue 29 to 1.2e-7, docs/sortition.md).
- With --scaling SECONDS: the full LEXIMIN on pools of 500 to 6,000 people resampled (seed 0, with
  replacement beyond 1,396) from the benchmark pool, at k = 50, 145, 300 where feasible, each
  bounded by SECONDS ("stopped after X s" otherwise): CPU and wall seconds, the step breakdown,
  and where the decomposition's panels came from.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, paper_sample  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    from dlm import sortition as so
    from dlm.data.prism import load_survey

    p = argparse.ArgumentParser()
    p.add_argument("--maximin", action="store_true", help="also run the long 1,500-person maximin benchmark")
    p.add_argument("--time-limit", type=float, default=900.0)
    p.add_argument("--full-leximin", type=float, default=0.0, metavar="SECONDS",
                   help="also run the full LEXIMIN on the 7-attribute benchmark for at most SECONDS")
    p.add_argument("--scaling", type=float, default=0.0, metavar="SECONDS",
                   help="also run the full LEXIMIN on resampled pools (n x k grid), each for at most SECONDS")
    p.add_argument("--sizes", default="500,1000,1400,3000,6000", help="pool sizes of --scaling")
    p.add_argument("--panel-sizes", default="50,145,300", help="panel sizes of --scaling")
    p.add_argument("--cli", action="store_true", help="also time `python -m dlm sortition --panel-algorithm leximin` "
                   "on the 7-attribute benchmark and compare it with the reference probabilities")
    p.add_argument("--skip-default", action="store_true", help="skip the LEGACY and default-config runs")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    survey = load_survey(paper_sample() / "survey.jsonl")
    bench = so.build_pool(survey, so.load_panel_config(ROOT / "configs/panels/benchmark_7attr.yaml"))
    out: dict = {}
    if args.scaling:
        out["leximin_scaling"] = {"time_limit_s": args.scaling, "rows": scaling(
            bench, [int(v) for v in args.sizes.split(",")], [int(v) for v in args.panel_sizes.split(",")], args.scaling)}
    if args.cli:
        out["leximin_cli"] = leximin_cli()
        print(json.dumps(out["leximin_cli"]), flush=True)
    if args.skip_default:
        return out
    so.legacy_panels(bench, 64, seed=99)  # warm-up (numpy)
    t, cpu = time.perf_counter(), time.process_time()
    mc = so.legacy_panels(bench, 2000, seed=0)
    out["legacy_2000_panels"] = {"seconds": round(time.perf_counter() - t, 2),
                                 "cpu_seconds": round(time.process_time() - cpu, 2), "attempts": mc.attempts,
                                  "failure_rate": round(mc.failure_rate, 3), "pool": bench.n, "k": bench.k,
                                  "target_seconds": 5.0}
    print(json.dumps(out["legacy_2000_panels"]), flush=True)
    us = so.build_pool(survey, so.load_panel_config(ROOT / "configs/panel_config.yaml"))
    t = time.perf_counter()
    lex = so.leximin(us, time_limit=600)
    p_ = lex.probabilities()
    out["leximin_default_us"] = {"seconds": round(time.perf_counter() - t, 1), "method": lex.method,
                                 "levels": len(lex.levels),
                                 "max_gap": max(level.gap for level in lex.levels), "min_probability": float(p_.min()),
                                 "sum": float(p_.sum()), "pool": us.n, "k": us.k, "types": len(lex.types.sizes),
                                 "target_seconds": 60.0}
    print(json.dumps(out["leximin_default_us"]), flush=True)
    if args.maximin:
        out["maximin_7attr"] = maximin(bench, args.time_limit)
        print(json.dumps(out["maximin_7attr"]), flush=True)
    if args.full_leximin:
        out["leximin_7attr"] = full_leximin(bench, args.full_leximin)
        print(json.dumps(out["leximin_7attr"]), flush=True)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def maximin(pool, time_limit: float) -> dict:
    """The certified first level, or the bounds reached when the time limit stops it."""
    from dlm import sortition as so
    from dlm.sortition.relaxation import relaxation_bound

    t = time.perf_counter()
    try:
        lex = so.leximin(pool, time_limit=time_limit, levels_limit=1, method="column_generation")
        level = lex.levels[0]
        return {"certified": True, "value": level.value, "gap": level.gap, "iterations": level.iterations,
                "seconds": round(time.perf_counter() - t, 1), "target_seconds": 900}
    except so.LeximinNotConverged as exc:
        types = so.pool_types(pool)
        lp_bound, _ = relaxation_bound(pool, types, np.full(len(types.sizes), np.nan))
        return {"certified": False, "message": str(exc), "lp_relaxation_bound": lp_bound,
                "seconds": round(time.perf_counter() - t, 1), "target_seconds": 900}


def scaling(bench, sizes: list[int], ks: list[int], time_limit: float) -> list[dict]:
    """Full LEXIMIN over a grid of resampled pool sizes and panel sizes, each run bounded by `time_limit`."""
    from dlm import sortition as so

    rows = []
    for n in sizes:
        rng = np.random.default_rng(0)
        picked = rng.choice(bench.n, n, replace=n > bench.n)
        table = bench.table.iloc[picked].reset_index(drop=True).assign(user_id=[f"r{i}" for i in range(n)])
        for k in ks:
            config = so.parse_panel_config({**bench.config.raw, "panel_size": k}, "benchmark_7attr (resampled)")
            pool = so.build_pool(table, config)
            row = {"n": n, "k": k, "types": len(so.pool_types(pool).sizes)}
            if k > n or not so.is_feasible(pool):
                rows.append({**row, "feasible": False})
                print(json.dumps(rows[-1]), flush=True)
                continue
            cpu, wall = time.process_time(), time.perf_counter()
            try:
                lex = so.leximin(pool, time_limit=time_limit)
                row.update(certified=True, method=lex.method, levels=len(lex.levels),
                           max_gap=max(level.gap for level in lex.levels),
                           steps={key: round(v, 2) for key, v in lex.seconds.items()},
                           decomposition=None if lex.decomposition is None else
                           {key: round(float(v), 10) for key, v in vars(lex.decomposition).items()})
            except so.LeximinNotConverged:
                row.update(certified=False, stopped_after_s=round(time.perf_counter() - wall, 1))
            row.update(cpu_s=round(time.process_time() - cpu, 1), wall_s=round(time.perf_counter() - wall, 1))
            rows.append(row)
            print(json.dumps(rows[-1]), flush=True)
    return rows


REFERENCE = ROOT / "benchmarks" / "results" / "leximin_7attr_probs.csv"


def leximin_cli() -> dict:
    """The issue's command in a fresh process: seconds, certificate, and the difference from the reference."""
    import pandas as pd

    from dlm import sortition as so
    from dlm.io import set_manifest_path

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "probs.csv"
        cmd = [sys.executable, "-m", "dlm", "sortition", "--survey", str(paper_sample() / "survey.jsonl"),
               "--panel-config", "configs/panels/benchmark_7attr.yaml", "--panel-algorithm", "leximin",
               "--output", str(out)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        levels = json.loads(set_manifest_path(out).read_text())["diagnostics"].get("levels", [])
        got = so.read_selection(out).set_index("user_id")["probability"]  # the output set checked as written
    # the reference is the probabilities CSV alone (its manifest named another machine's files)
    reference = pd.read_csv(REFERENCE, dtype={"user_id": str}).set_index("user_id")["probability"]
    diff = float((got - reference).abs().max()) if set(got.index) == set(reference.index) else None
    return {"command": "python -m dlm sortition --survey <paper sample>/survey.jsonl --panel-config "
                       "configs/panels/benchmark_7attr.yaml --panel-algorithm leximin",
            "wall_s": round(wall, 1), "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime
                                                      - before.ru_stime, 1),
            "load_average": round(os.getloadavg()[0], 1), "levels_in_manifest": len(levels),
            "certified": bool(levels) and all(lv.get("gap") is not None and lv["gap"] < 1e-6 for lv in levels),
            "max_difference_from_reference": diff, "people": len(got)}


def full_leximin(pool, time_limit: float) -> dict:
    """Every LEXIMIN level certified within the time limit: value, gap, bound and seconds of each."""
    from dlm import sortition as so

    t, cpu = time.perf_counter(), time.process_time()
    try:
        lex = so.leximin(pool, time_limit=time_limit)
        levels, complete, method = lex.levels, True, lex.method
        p = lex.probabilities()
        cpu = time.process_time() - cpu
        extra = {"min_probability": float(p.min()), "sum": float(p.sum()), "max_probability": float(p.max()),
                 "cpu_seconds": round(cpu, 1),
                 "panels_in_support": int((lex.weights > 1e-12).sum()),
                 "seconds_by_step": {k: round(v, 1) for k, v in lex.seconds.items()}}
    except so.LeximinNotConverged as exc:
        levels, complete, method, extra = exc.levels, False, "column_generation", {"message": str(exc)}
    keep = ("level", "value", "upper_bound", "gap", "bound", "seconds", "types_fixed", "people_fixed")
    return {"complete": complete, "method": method, **extra, "levels_certified": len(levels),
            "seconds": round(time.perf_counter() - t, 1),
            "people_fixed": sum(level.people_fixed for level in levels), "pool": pool.n,
            "levels": [{k: getattr(level, k) for k in keep} for level in levels],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


if __name__ == "__main__":
    print(json.dumps(main()))
