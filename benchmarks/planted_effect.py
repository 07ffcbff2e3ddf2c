"""Planted-effect recovery on generated samples under matched budgets, with LEGACY vs LEXIMIN arms.

    python benchmarks/planted_effect.py --seeds 0 1 2 3 4

For each seed (sample seed = panel seed = training seed): generate the demo-scale sample and
prepare every arm of the `demo` profile's design (configs/arms.yaml: hard, soft, us_rep, full,
size_matched, contrast, soft_resampled, soft_leximin, hard_leximin) with its held-out split, and
record the weighted share of style-differing training pairs won by the formal answer, plus that
share per age group. With --train (default), train the tiny model on `hard`, `contrast`,
`hard_leximin`, `soft`, `soft_leximin` and `soft_resampled` under the design's matched budget (the same optimizer
steps, batch and mean weight for every arm: `dlm.experiment.designs`) and record how often each prefers
the formal answer on the held-out pairs of `full`; then `hard` and `contrast` answer the demo's
template questions and each oracle judge (raters 55+, raters under 55; dlm.judging.oracle) judges them in
both orders, as 06 does: the expected win rate of hard is above 0.5 under the 55+ judge and below
under the younger one, when the answers carry the styles. The planted direction is recovered when
the interval of hard − contrast (over held-out raters, conditional on the seed's trained models)
lies above 0; the seeds' differences are pooled with a t interval over seeds. `carried` is each arm's
model share ÷ its data share of the planted preference (for the weighted arms soft and soft_leximin,
how much of their data's preference their models carry at the matched budget). Beside it, the LEGACY vs LEXIMIN differences hard_leximin − hard and
soft_leximin − soft (data and model), which the planted effect does not predict: they are findings.
Writes benchmarks/results/planted_effect.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT  # noqa: E402

TRAINED = ("hard", "contrast", "hard_leximin", "soft", "soft_leximin", "soft_resampled")
WEIGHTED = ("soft", "soft_leximin")  # arms trained on weighted rows (soft_resampled: their resampled control)
LEGACY_VS_LEXIMIN = (("hard", "hard_leximin"), ("soft", "soft_leximin"))


def by_age(dataset: Path, survey: Path) -> dict[str, float]:
    """The planted effect per group: formal-won share of style-differing pairs, raters 55+ vs younger."""
    from dlm.alignment import heldout as alignment
    from dlm.data import synth
    from dlm.io import read_jsonl

    people = list(read_jsonl(survey))
    older = {r["user_id"] for r in people if r["age"] in synth.OLDER_AGES}
    younger = {r["user_id"] for r in people} - older
    return {"55+": round(alignment.formal_won_share(dataset, raters=older), 3),
            "under 55": round(alignment.formal_won_share(dataset, raters=younger), 3)}


def seed_design(seed: int, work: Path, max_steps: int = 0, budget: str = "steps", train_epochs: float = 0.0):
    """The demo profile's design (every arm, its budget and split) on the sample of `seed`, in `work`.

    Under `budget` epochs every arm takes `train_epochs` passes over its own rows (0: the passes that the
    steps budget gives `hard`, so the planted arm trains alike under both budgets and the others differ).
    """
    from dlm.experiment import designs as experiment

    demo = experiment.load_design("demo", "03_prepare")
    return dataclasses.replace(demo, prism_source=str(work / "sample"), panel_seed=seed, train_seed=seed,
                               data_dir=str(work / "data"), checkpoint_dir=str(work / "ck"),
                               model_id=str(work / "tiny"), max_steps=max_steps or demo.max_steps, budget=budget,
                               train_epochs=train_epochs or -1.0)


def hard_epochs(design) -> float:
    """The passes over its rows that the matched steps give `hard` (its dataset must exist)."""
    from dlm.training.train_dpo import load_preference_rows

    rows = len(load_preference_rows(design.dataset_path(design.find("hard")))[0])
    return design.steps() * design.effective_batch() / rows


def one_seed(seed: int, work: Path, train: bool, max_steps: int = 0, budget: str = "steps",
             train_epochs: float = 0.0) -> dict:
    from dlm.alignment import heldout as alignment
    from dlm.preferences import build as preferences
    from dlm.data import synth
    from dlm.training import tiny_model
    from dlm.training import train_dpo as training

    design = seed_design(seed, work, max_steps)
    sample = Path(design.prism_source)
    synth.generate_sample(sample, "demo", seed)
    for d in design.datasets():
        preferences.prepare(sample / "survey.jsonl", sample / "utterances.jsonl", design.dataset_path(d),
                            design.prepare_options(d))
    if budget == "epochs":
        design = dataclasses.replace(design, budget="epochs", train_epochs=train_epochs or hard_epochs(design))
    path = {d.arm: design.dataset_path(d) for d in design.datasets() if d.draw == 0}
    out = {"seed": seed, "budget": budget, "effective_batch": design.effective_batch(),
           "steps_per_arm": design.steps() if budget == "steps" else None,
           "epochs_per_arm": round(design.epochs(), 3) if budget == "epochs" else None,
           "formal_won_share": {a: round(alignment.formal_won_share(p), 3) for a, p in path.items()},
           "formal_won_share_by_age": by_age(path["full"], sample / "survey.jsonl")}
    out["data_leximin_minus_legacy"] = {f"{b} - {a}": round(out["formal_won_share"][b] - out["formal_won_share"][a], 3)
                                        for a, b in LEGACY_VS_LEXIMIN}
    if train:
        tiny_model.make_tiny_model(design.model_id, seed=seed, warmup_steps=200)  # as the demo builds it
        pairs = alignment.eval_pairs(path["full"], limit=600)
        reference = alignment.pair_margins(design.model_id, pairs, None)
        share, epochs, steps, margins = {}, {}, {}, {}
        for arm in TRAINED:
            run = design.find(arm)
            summary = training.train(design.dataset_path(run), design.checkpoint(run), design.train_settings(run))
            margins[arm] = alignment.pair_margins(str(design.checkpoint(run)), pairs, reference)["margin"]
            share[arm] = round(alignment.style_preference(pairs, margins[arm]), 3)
            epochs[arm], steps[arm] = round(summary["epochs"], 2), summary["steps"]
        # The verdict: hard − contrast with its interval over held-out raters (conditional on these models);
        # "recovered" only when the interval lies above 0.
        d = alignment.style_difference(pairs, margins, "hard", "contrast", alignment.planted_spec().marker)
        verdict = {k: round(float(d[k]), 4) for k in ("estimate", "ci_low", "ci_high", "p_value")}
        out.update(model_prefers_formal=share, epochs=epochs, steps=steps,
                   verdict={**verdict, "raters": d["raters"], "estimand": d["scope"]},
                   recovered=bool(d["ci_low"] > 0),
                   # how much of its data's planted preference an arm's model carries (model ÷ data share)
                   carried={a: round(share[a] / out["formal_won_share"][a], 3) for a in TRAINED},
                   model_leximin_minus_legacy={f"{b} - {a}": round(share[b] - share[a], 3)
                                               for a, b in LEGACY_VS_LEXIMIN})
        out["judged"] = judged(design, sample, work, seed)
    return out


def judged(design, sample: Path, work: Path, seed: int) -> list[dict]:
    """hard vs contrast as the demo's 06 judges them: answers to the demo's questions, each oracle judge."""
    from dlm.judging import planted
    from dlm.judging import questions
    from dlm.experiment.profiles import notebook_params
    from dlm.experiment.profiles import load_profile

    demo = load_profile("demo")  # the demo's question and answer settings
    params, e = notebook_params(demo, "05_questions"), notebook_params(demo, "06_evaluate")
    questions.generate_questions(ROOT / "constitution.txt", work / "questions", backend="template",
                                 n_questions=int(params["n_questions"]), end_clause=int(params["end_clause"]),
                                 seed=seed)
    rates = planted.planted_effect_win_rates(design.checkpoint(design.find("hard")),
                                            design.checkpoint(design.find("contrast")), work / "questions",
                                            sample / "oracle_spec.json", work / "evaluation",
                                            max_new_tokens=int(e["max_new_tokens"]), seed=seed)
    return [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in dataclasses.asdict(r).items()}
            for r in rates]


def pooled(differences: list[float], level: float = 0.95) -> dict:
    """Mean hard − contrast over seeds with a t interval (each seed its own sample, draws and training)."""
    from scipy import stats as sps

    d = np.asarray(differences, float)
    if len(d) < 2:
        return {"estimate": round(float(d.mean()), 4), "ci_low": None, "ci_high": None, "seeds": len(d),
                "recovered": False}
    half = sps.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return {"estimate": round(float(d.mean()), 4), "ci_low": round(float(d.mean() - half), 4),
            "ci_high": round(float(d.mean() + half), 4), "seeds": len(d), "recovered": bool(d.mean() - half > 0)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--no-train", dest="train", action="store_false")
    p.add_argument("--max-steps", type=int, default=0,
                   help="override the demo design's step budget (a quick check that the script runs; not a result)")
    p.add_argument("--budget", nargs="+", choices=["steps", "epochs"], default=["steps"],
                   help="budget policy (or both, one after the other): matched steps, or the same epochs for every arm")
    p.add_argument("--train-epochs", type=float, default=0.0,
                   help="passes over its rows of every arm under budget epochs (0: those the steps budget gives hard)")
    p.add_argument("--output", default=str(ROOT / "benchmarks/results/planted_effect.json"))
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    results = {}
    for budget in args.budget:
        t0 = time.perf_counter()
        rows = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(one_seed(seed, Path(tmp), args.train, args.max_steps, budget, args.train_epochs))
            print(json.dumps(rows[-1]), flush=True)
        result = {"budget": budget, "seeds": rows, "seconds": round(time.perf_counter() - t0, 1),
                  "max_steps": rows[0].get("steps_per_arm")}
        if args.train:
            result["recovered"] = f"{sum(r['recovered'] for r in rows)}/{len(rows)}"
            result["pooled"] = pooled([r["verdict"]["estimate"] for r in rows])
            result["weighted_arms"] = list(WEIGHTED)
        results[budget] = result
    # one budget: the layout readers know; several: one result per budget
    out = results[args.budget[0]] if len(results) == 1 else {"budgets": results}
    Path(args.output).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
