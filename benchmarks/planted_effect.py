"""Planted-effect recovery on generated samples: data-level shares and trained-model direction.

    python benchmarks/planted_effect.py --seeds 0 1 2 3 4      # ~1.5 min per seed on 2 CPU cores

For each seed (sample seed = panel seed = training seed): generate the demo-scale sample, prepare
every arm (hard, soft, us_rep, full, random, contrast) with a 10% held-out split, and record the
weighted share of style-differing training pairs won by the formal answer, plus that share per
age group. With --train (default), train the tiny model on `hard` and `contrast` (the demo's
recipe, configs/train/tiny.yaml) and record how often each prefers the formal answer on the
held-out pairs of `full`: the planted direction is recovered when hard > contrast.
Writes benchmarks/results/planted_effect.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT  # noqa: E402

ARMS = {"hard": "configs/panel_config.yaml", "soft": "configs/panel_config.yaml", "us_rep": None, "full": None,
        "random": "configs/panel_config.yaml", "contrast": "configs/panels/crowdworkers.yaml"}


def by_age(dataset: Path, survey: Path) -> dict[str, float]:
    """The planted effect per group: formal-won share of style-differing pairs, raters 55+ vs younger."""
    from dlm import alignment, synth
    from dlm.io import read_jsonl

    people = list(read_jsonl(survey))
    older = {r["user_id"] for r in people if r["age"] in synth.OLDER_AGES}
    younger = {r["user_id"] for r in people} - older
    return {"55+": round(alignment.formal_won_share(dataset, raters=older), 3),
            "under 55": round(alignment.formal_won_share(dataset, raters=younger), 3)}


def one_seed(seed: int, work: Path, train: bool) -> dict:
    from dlm import alignment, preferences, synth, tiny_model, training

    sample = work / "sample"
    synth.generate_sample(sample, "demo", seed)
    for arm, config in ARMS.items():
        opts = preferences.PrepareOptions(mode="hard" if arm == "contrast" else arm,
                                          panel_config=config and str(ROOT / config), panel_seed=seed, eval_ratio=0.1)
        preferences.prepare(sample / "survey.jsonl", sample / "utterances.jsonl", work / f"{arm}.jsonl", opts)
    out = {"seed": seed, "formal_won_share": {a: round(alignment.formal_won_share(work / f"{a}.jsonl"), 3) for a in ARMS},
           "formal_won_share_by_age": by_age(work / "full.jsonl", sample / "survey.jsonl")}
    if train:
        base = work / "tiny"
        tiny_model.make_tiny_model(base, seed=seed, warmup_steps=200)
        settings = {**training.load_recipe(ROOT / "configs/train/tiny.yaml"), "model_id": str(base), "seed": seed}
        pairs = alignment.eval_pairs(work / "full.jsonl", limit=600)
        reference = alignment.pair_margins(str(base), pairs, None)
        out["model_prefers_formal"] = {}
        for arm in ("hard", "contrast"):
            training.train(work / f"{arm}.jsonl", work / f"ck-{arm}", settings)
            margin = alignment.pair_margins(str(work / f"ck-{arm}"), pairs, reference)["margin"]
            out["model_prefers_formal"][arm] = round(alignment.style_preference(pairs, margin), 3)
        share = out["model_prefers_formal"]
        out["recovered"] = share["hard"] > share["contrast"]
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--no-train", dest="train", action="store_false")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(one_seed(seed, Path(tmp), args.train))
        print(json.dumps(rows[-1]), flush=True)
    result = {"seeds": rows, "seconds": round(time.perf_counter() - t0, 1)}
    if args.train:
        result["recovered"] = f"{sum(r['recovered'] for r in rows)}/{len(rows)}"
    path = ROOT / "benchmarks/results/planted_effect.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
