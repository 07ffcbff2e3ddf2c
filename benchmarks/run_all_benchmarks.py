"""Run the CPU benchmarks, store each result in benchmarks/results/, and write benchmarks/results.md.

    python benchmarks/run_all_benchmarks.py            # load, prepare, sortition, LLM backend (~2 min)
    python benchmarks/run_all_benchmarks.py --long     # plus the 1,500-person maximin by column generation
                                                       # and the full 1,500-person LEXIMIN (about 8 min)
    python benchmarks/run_all_benchmarks.py --full-leximin 3600   # the full LEXIMIN alone, with its time limit

GPU results (benchmarks/bench_dpo_gpu.py --out benchmarks/results/dpo_gpu_<card>.json,
benchmarks/bench_recipes_gpu.py --out benchmarks/results/recipes_gpu_<card>.json) are read from their files. The README's benchmark table is a copy of results.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"


def save(name: str, result) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")


def load(name: str):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def ok(value: float, target: float, higher_is_better: bool = False) -> str:
    return "yes" if (value >= target if higher_is_better else value <= target) else "**no**"


def table() -> str:
    rows = ["| benchmark | measured | target | met |", "| --- | --- | --- | --- |"]
    if (r := load("load")):
        rows.append(f"| load paper-scale sample (3 files, validated) | {r['seconds']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB "
                    f"| ≤ 3 s, ≤ 1.5 GB | {ok(r['seconds'], 3)} / {ok(r['peak_rss_mb'], 1536)} |")
    for r in load("prepare") or []:
        rows.append(f"| prepare `{r['mode']}` (paper scale{', 2000 LEGACY panels' if r['mode'] == 'soft' else ''}) | "
                    f"{r['process_seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB | ≤ 10 s, ≤ 2 GB | "
                    f"{ok(r['process_seconds'], 10)} / {ok(r['peak_rss_mb'], 2048)} |")
    if (s := load("sortition")):
        lg, lx = s["legacy_2000_panels"], s["leximin_default_us"]
        rows.append(f"| LEGACY, 2000 panels, 7 attributes, pool {lg['pool']}, k={lg['k']} | {lg['seconds']:.1f} s "
                    f"({lg['attempts']} draws, failure rate {lg['failure_rate']:.2f}) | ≤ 5 s | {ok(lg['seconds'], 5)} |")
        rows.append(f"| LEXIMIN certified, default US config (pool {lx['pool']}, k={lx['k']}, {lx['types']} types) | "
                    f"{lx['seconds']:.1f} s ({lx.get('method', 'column_generation').replace('_', ' ')} route), "
                    f"{lx['levels']} levels, max gap {lx['max_gap']:.1e} | ≤ 60 s | "
                    f"{ok(lx['seconds'], 60)} |")
    if (m := load("maximin_7attr")):
        text = (f"certified {m['value']:.7f} (gap {m['gap']:.1e}) in {m['seconds']:.0f} s" if m["certified"]
                else f"not certified in {m['seconds']:.0f} s: {m['message']}")
        rows.append(f"| LEXIMIN level 1 (maximin) by column generation alone, 7 attributes, pool 1,396, k=145 | "
                    f"{text} | ≤ 15 min | "
                    f"{'yes' if m['certified'] and m['seconds'] <= 900 else '**no**'} |")
    if (f := load("leximin_7attr")):
        rows.append(f"| LEXIMIN, all levels, 7 attributes, pool {f['pool']}, k=145 | {full_leximin_text(f, m)} "
                    f"| reported | — |")
    if (c := load("leximin_cli")):
        diff = c["max_difference_from_reference"]
        text = (f"{c['wall_s']:.1f} s wall, {c['cpu_s']:.1f} CPU s (load average {c['load_average']}), "
                f"{'certified' if c['certified'] else '**not certified**'} ({c['levels_in_manifest']} levels in the "
                f"manifest), largest π difference from the reference {'n/a' if diff is None else f'{diff:.1e}'}")
        met = c["certified"] and c["wall_s"] <= 15 and diff is not None and diff <= 1e-5
        rows.append(f"| `python -m dlm sortition --panel-algorithm leximin`, 7 attributes, pool 1,396, k=145 "
                    f"(the whole command) | {text} | ≤ 15 s, π within 1e-5 | {'yes' if met else '**no**'} |")
    if (sc := load("leximin_scaling")):
        cells = [f"n={r['n']}, k={r['k']}: " + ("infeasible" if not r.get("feasible", True) else
                 f"{r['cpu_s']:.0f} CPU s ({r['wall_s']:.0f} s wall)" if r["certified"] else
                 f"stopped after {r['stopped_after_s']:.0f} s ({r['cpu_s']:.0f} CPU s)") for r in sc["rows"]]
        rows.append(f"| LEXIMIN, all levels, 7 attributes, pools resampled from the benchmark pool "
                    f"({sc['time_limit_s']:.0f} s limit each) | {'; '.join(cells)} | reported | — |")
    if (b := load("llm_backend")):
        rows.append(f"| openai backend: {b['requests']} requests, {b['in_flight']} in flight, {b['latency_s']*1000:.0f} ms "
                    f"server latency | {b['seconds']:.2f} s = {b['ratio_to_ideal']:.2f}× ideal | ≤ 1.3× of "
                    f"{b['ideal_seconds']} s | {ok(b['ratio_to_ideal'], 1.3)} |")
    if (a := load("answers_cpu")):
        rows.append(f"| hf answers, tiny model on the CPU, {a['questions']} questions of {a['prompt_tokens_min_max'][0]}–"
                    f"{a['prompt_tokens_min_max'][1]} prompt tokens, batch {a['batch_size']}, {a['max_new_tokens']} new "
                    f"tokens, greedy | unsorted {a['unsorted_questions_per_s']:.2f} q/s, length-sorted "
                    f"{a['sorted_questions_per_s']:.2f} q/s = {a['speedup']:.2f}×; answers identical: "
                    f"{a['identical_answers']} | identical answers | {'yes' if a['identical_answers'] else '**no**'} |")
    if (smoke := load("gpu_smoke")) and not smoke.get("dry_run"):
        st = smoke["stages"]
        arms = ", ".join(f"{x['arm']} {x['steps']} steps {x['seconds']:.0f} s" for x in st["train"]["arms"])
        rows.append(f"| `benchmarks/gpu_smoke.py`: the real code path, {smoke['architecture']}, {smoke['gpu']} | total "
                    f"{smoke['total_seconds']:.0f} s: load {st['load']['seconds']:.0f} s; train {arms}; "
                    f"{st['answers']['questions']} answers {st['answers']['seconds']:.1f} s; {st['judge']['judgments']} "
                    f"HF judgments {st['judge']['seconds']:.1f} s; {st['heldout']['pairs']} held-out pairs "
                    f"{st['heldout']['seconds']:.1f} s | ≤ 300 s | {ok(smoke['total_seconds'], 300)} |")
    for path in sorted(RESULTS.glob("dpo_gpu_*.json")):
        g = json.loads(path.read_text())
        rows.append(f"| LoRA DPO, Llama-3.1-8B architecture, seq {g['seq_len']}, batch {g['batch_size']}, bf16, "
                    f"{g['ours']['gpu']} | ours {g['ours']['tokens_per_s']:.0f} tok/s vs stock "
                    f"{g['stock']['tokens_per_s']:.0f} tok/s = {g['ratio_ours_to_stock']:.3f}×; peak "
                    f"{g['ours']['peak_memory_gb']:.1f} GB; MFU {g['ours']['mfu']:.2f} | ours ≥ 0.97× stock | "
                    f"{ok(g['ratio_ours_to_stock'], 0.97, True)} |")
    for path in sorted(RESULTS.glob("recipes_gpu_*.json")):
        g = json.loads(path.read_text())
        for r in g["runs"]:
            budget = RECIPE_MEMORY_GIB[r["recipe"]]
            rows.append(f"| `dlm train --config configs/train/{r['recipe']}.yaml`, {g['architecture']} architecture, "
                        f"seq {g['seq_len']}, batch {r['batch_size']}, {g['steps']} steps, {g['gpu']} | "
                        f"{r['seconds_per_step']:.2f} s/step (first step included), "
                        f"peak {r['peak_gpu_memory_gib']:.1f} GiB (nvidia-smi), "
                        f"losses finite: {r['losses_finite']}, adapter saved: {r['adapter_saved']} | fits a "
                        f"{budget} GB GPU | {ok(r['peak_gpu_memory_gib'], budget)} |")
    return "\n".join(rows) + "\n"


RECIPE_MEMORY_GIB = {"lora": 80, "qlora": 24}  # the GPU each recipe's header comment promises it fits


def full_leximin_text(f: dict, maximin: dict | None) -> str:
    """The full-LEXIMIN cell: how far it got, where the time went, and the cross-check with column generation."""
    gap = max((lv["gap"] for lv in f["levels"]), default=0.0)
    text = (f"{'complete' if f['complete'] else 'stopped by its time limit'} ({f['method'].replace('_', ' ')} route): "
            f"{f['levels_certified']} levels certified in {f['seconds']:.0f} s"
            + (f" ({f['cpu_seconds']:.0f} CPU s)" if "cpu_seconds" in f else ""))
    if (steps := f.get("seconds_by_step", {})).get("decomposition") is not None:
        text += f" (relaxation LPs {steps['relaxation_levels']:.0f} s, decomposition {steps['decomposition']:.0f} s)"
    text += f", {f['people_fixed']} of {f['pool']} people fixed, max gap {gap:.1e}"
    if f["complete"]:
        text += f", min π {f['min_probability']:.7f}, Σπ {f['sum']:.6f}, {f['panels_in_support']} panels in support"
    if f["levels"] and maximin and maximin.get("certified"):
        text += (f"; level 1 differs from column generation's maximin by "
                 f"{abs(f['levels'][0]['value'] - maximin['value']):.1e}")
    return text + f"; peak RSS {f['peak_rss_mb']:.0f} MB"


def main() -> None:
    import bench_answers
    import bench_llm_backend
    import bench_load
    import bench_prepare
    import bench_sortition

    p = argparse.ArgumentParser()
    p.add_argument("--long", action="store_true",
                   help="include the 1,500-person maximin (column generation) and full LEXIMIN (30 min limit)")
    p.add_argument("--table-only", action="store_true", help="rewrite results.md from stored results")
    p.add_argument("--full-leximin", type=float, default=0.0, metavar="SECONDS",
                   help="include the full 1,500-person LEXIMIN, stopped after SECONDS")
    p.add_argument("--leximin-cli", action="store_true",
                   help="include `python -m dlm sortition --panel-algorithm leximin` on the 7-attribute benchmark")
    p.add_argument("--leximin-scaling", type=float, default=0.0, metavar="SECONDS",
                   help="include full LEXIMIN on resampled pools of 500 to 6,000 people, each stopped after SECONDS")
    p.add_argument("--sortition-only", action="store_true",
                   help="run only the sortition benchmarks asked for (with --long, --full-leximin, --leximin-cli, "
                        "--leximin-scaling), keeping the other stored results")
    args = p.parse_args()
    if not args.table_only:
        if not args.sortition_only:
            save("load", bench_load.main())
            save("prepare", bench_prepare.main())
        full = args.full_leximin or (1800.0 if args.long else 0.0)
        sort = bench_sortition.main((["--maximin"] if args.long else [])
                                    + (["--full-leximin", str(full)] if full else [])
                                    + (["--scaling", str(args.leximin_scaling)] if args.leximin_scaling else [])
                                    + (["--cli"] if args.leximin_cli or args.long else [])
                                    + (["--skip-default"] if args.sortition_only else []))
        for name in ("maximin_7attr", "leximin_7attr", "leximin_scaling", "leximin_cli"):
            if name in sort:
                save(name, sort.pop(name))
        if not args.sortition_only:
            save("sortition", sort)
            save("llm_backend", bench_llm_backend.main())
            bench_answers.main([])  # writes answers_cpu.json
    header = ("Measured on the project's 2-core CPU machine (and a lent GPU where named) by the scripts in "
              "benchmarks/; regenerate with `python benchmarks/run_all_benchmarks.py`.\n\n")
    (HERE / "results.md").write_text(header + table())
    update_readme(table())
    print(table())


def update_readme(text: str) -> None:
    """Replace the README's table between the BENCHMARKS markers with `text`."""
    readme = HERE.parent / "README.md"
    body = readme.read_text()
    start, end = "<!-- BENCHMARKS -->\n", "<!-- /BENCHMARKS -->"
    i, j = body.index(start) + len(start), body.index(end)
    readme.write_text(body[:i] + text + body[j:])


if __name__ == "__main__":
    main()
