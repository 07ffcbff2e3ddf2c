"""The `real` code path on one GPU in under 5 minutes, with a Llama-3.1-8B-architecture model of random weights.

Stages, each timed (CUDA synchronised) and written to benchmarks/results/gpu_smoke.json, which
`python -m dlm bill` and the preflight read for answer, judge and held-out throughput:
- build: the random-weight model (config only, no download) saved with this project's tokenizer;
- load: `dlm.training.models.load_causal_lm` of the saved model (bf16);
- train: two arms (uniform weights, uneven weights) x --steps LoRA steps through `dlm.training.train_dpo.train`
  with configs/train/lora.yaml (gradient accumulation 1, no checkpoints);
- answers: `dlm.judging.evaluation.answer_questions` (hf backend, batched, length-sorted) of --questions
  questions by the first arm's adapter;
- judge: the HF log-prob judge (`dlm.judging.judge.judge_all`) on both orders of every answer pair;
- heldout: `dlm.alignment.heldout.pair_margins` of the adapter on --pairs held-out pairs against the base.

More than timings, it checks that the path did something (`checks` in the JSON; on a GPU the script
exits 1 when one fails): every trained arm's losses are finite, the judge's verdicts are not all
ties, and the trained arm's held-out log-likelihood margins and accuracy differ from the base
model's. The CPU dry run (a tiny model, 4 steps) reports them without stopping: its judge ties on
every question and its accuracy does not move, while its margins do.

    python benchmarks/gpu_smoke.py                 # on a GPU (about 4 minutes on an H200)
    python benchmarks/gpu_smoke.py --dry-run       # tiny model on the CPU (about a minute): gpu_smoke_cpu_dry_run.json

Wheels needed beyond torch, transformers, peft and accelerate (which the lent GPU machine has):
trl==1.16.0, datasets==5.2.0 and datasets' dill, multiprocess, xxhash and pyarrow. `make
gpu-smoke-bundle` (benchmarks/gpu_smoke_bundle.sh) downloads exactly these for Python 3.12 into
.whl/: 57.4 MB measured; install there with `pip install --no-deps .whl/*.whl`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from bench_dpo_gpu import LLAMA_31_8B, TINY, make_rows  # noqa: E402
from bench_recipes_gpu import save_model  # noqa: E402


class Timer:
    """Wall seconds of a block, with the GPU's queued work finished at both ends."""

    def __enter__(self) -> Timer:
        self._sync()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._sync()
        self.seconds = round(time.perf_counter() - self.t0, 2)

    @staticmethod
    def _sync() -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


def arm_rows(path: Path, model: Path, n: int, seq_len: int, uneven: bool, seed: int) -> list[dict]:
    """n preference rows (train split), weights 1 or uneven as a `soft` arm has; written to `path`."""
    from transformers import AutoTokenizer

    rng = random.Random(seed)
    rows = make_rows(AutoTokenizer.from_pretrained(model), n, seq_len, seed)
    rows = [{**r, "weight": round(rng.uniform(0.2, 3.0), 3) if uneven else 1.0, "split": "train",
             "user_id": f"u{i % 20}", "interaction_id": f"i{i}"} for i, r in enumerate(rows)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="tiny model on the CPU, same stages, fewer steps")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--questions", type=int, default=20)
    p.add_argument("--pairs", type=int, default=200)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    import pandas as pd
    import torch

    from dlm.alignment import heldout as alignment

    from dlm.judging import evaluation

    from dlm import training
    from dlm.llm.backends import GenerationParams
    from dlm.training.models import load_causal_lm
    from dlm.judging.questions import parse_constitution

    gpu = torch.cuda.is_available() and not a.dry_run
    if not gpu and not a.dry_run:
        raise SystemExit("no CUDA GPU: run with --dry-run on a CPU")
    if a.dry_run:
        a.steps, a.seq_len, a.max_new_tokens = min(a.steps, 4), 128, 16
    out = Path(a.out or ROOT / "benchmarks/results" / ("gpu_smoke.json" if gpu else "gpu_smoke_cpu_dry_run.json"))
    stages: dict[str, dict] = {}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with Timer() as t:
            params = save_model(tmp / "base", TINY if a.dry_run else LLAMA_31_8B, "cuda" if gpu else "cpu")
        stages["build"] = {"seconds": t.seconds, "params": params}
        with Timer() as t:
            model, _ = load_causal_lm(str(tmp / "base"))
        stages["load"] = {"seconds": t.seconds}
        del model
        torch.cuda.empty_cache() if gpu else None
        recipe = training.load_recipe(ROOT / "configs/train/lora.yaml")
        stages["train"] = {"arms": []}
        for arm, uneven in (("hard", False), ("soft", True)):
            data = tmp / f"{arm}.jsonl"
            arm_rows(data, tmp / "base", 4 * a.steps, a.seq_len, uneven, seed=len(arm))
            settings = {**recipe, "model_id": str(tmp / "base"), "max_steps": a.steps, "gradient_accumulation_steps": 1,
                        "max_length": a.seq_len, "save_strategy": "no", "eval_strategy": "no", "logging_steps": 1,
                        "per_device_train_batch_size": 4 if gpu else 2, "seed": 0}
            if not gpu:
                settings.update(bf16=False, activation_checkpointing=False, torch_dtype="float32")
            with Timer() as t:
                summary = training.train(data, tmp / arm, settings)
            losses = [h["loss"] for h in summary["log_history"] if "loss" in h]
            stages["train"]["arms"].append({"arm": arm, "steps": summary["steps"], "seconds": t.seconds,
                                            "train_runtime_s": round(summary["metrics"]["train_runtime"], 2),
                                            "losses_finite": all(abs(x) < 1e6 for x in losses)})
        clauses = parse_constitution(ROOT / "constitution.txt")
        questions = [evaluation.Question(f"q{i:02d}", c.clause_id, c.text,
                                         f"How should I think about this: {c.text[:120]}?")
                     for i, c in enumerate((clauses * a.questions)[:a.questions])]
        decoding = GenerationParams(temperature=0.0, max_tokens=a.max_new_tokens, seed=0)
        adapters = {arm: str(tmp / arm) for arm in ("hard", "soft")}
        answers = {}
        for arm, path in adapters.items():
            with Timer() as t:
                answers[arm] = evaluation.answer_questions(path, questions, tmp / "responses", decoding, "hf",
                                                           batch_size=8)
            stages.setdefault("answers_by_arm", {})[arm] = t.seconds  # load + generation
        from dlm.training.models import generate

        lm, tok = load_causal_lm(adapters["hard"])
        with Timer() as t:  # generation alone, the model already loaded
            generate(lm, tok, [[{"role": "user", "content": q.text}] for q in questions], decoding, 8)
        stages["answers"] = {"questions": a.questions, "max_new_tokens": a.max_new_tokens, "batch_size": 8,
                             "seconds": t.seconds}
        judge = evaluation.make_judge("hf", adapters["hard"], None, None, batch_size=8)
        judge._model, judge._tokenizer = lm, tok  # the loaded model, so that the time is the judging alone
        tasks = evaluation._judging_tasks(questions, [("hard", "soft")], answers, [adapters["hard"]], True, 0,
                                          {adapters["hard"]: "smoke"})
        with Timer() as t:
            verdicts = evaluation.judge_all(judge, tasks, True, decoding)
        stages["judge"] = {"judgments": len(tasks), "seconds": t.seconds,
                           "verdicts": {v: sum(x == v for x, _ in verdicts) for v in "ABC"}}
        del lm, judge
        torch.cuda.empty_cache() if gpu else None
        rows = make_rows(tok, a.pairs, min(a.seq_len, 256), 7)
        pairs = pd.DataFrame([{**r, "user_id": f"u{i % 40}", "interaction_id": f"e{i}"} for i, r in enumerate(rows)])
        base = alignment.pair_margins(str(tmp / "base"), pairs, None, batch_size=16)
        with Timer() as t:  # one trained model's margins (load included, as 07 does it)
            trained = alignment.pair_margins(adapters["soft"], pairs, base, batch_size=16)
        stages["heldout"] = {"pairs": a.pairs, "seconds": max(t.seconds - stages["load"]["seconds"], 0.01),
                             "seconds_with_load": t.seconds,
                             "accuracy": float((alignment.agreement(trained["loglik"])).mean()),
                             "base_accuracy": float((alignment.agreement(base["loglik"])).mean()),
                             "mean_abs_margin_change": float(abs(trained["loglik"] - base["loglik"]).mean())}
    result = {"device": "cuda" if gpu else "cpu", "gpu": torch.cuda.get_device_name(0) if gpu else None,
              "dry_run": a.dry_run, "architecture": "tiny" if a.dry_run else "Llama-3.1-8B (random weights)",
              "total_seconds": round(time.perf_counter() - t_all, 1), "stages": stages,
              "versions": {m: __import__(m).__version__ for m in ("torch", "transformers", "trl", "peft")}}
    result["checks"] = smoke_checks(stages)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    failed = [name for name, ok in result["checks"].items() if not ok]
    if failed and gpu:
        sys.exit(f"gpu smoke: failed {', '.join(failed)} ({out})")
    return result


def smoke_checks(stages: dict) -> dict[str, bool]:
    """Whether the path did something: finite losses, verdicts that are not all ties, accuracy that moved."""
    judge, heldout = stages["judge"], stages["heldout"]
    return {"losses_finite": all(a["losses_finite"] for a in stages["train"]["arms"]),
            "verdicts_not_all_ties": judge["verdicts"]["C"] < judge["judgments"],
            "trained_accuracy_differs_from_base": abs(heldout["accuracy"] - heldout["base_accuracy"]) > 1e-9,
            "trained_margins_differ_from_base": heldout["mean_abs_margin_change"] > 1e-6}


if __name__ == "__main__":
    main()
