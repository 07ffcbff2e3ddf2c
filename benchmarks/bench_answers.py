"""Answer throughput of the hf backend on the CPU (tiny model): batches filled in the given order vs longest first.

Both runs answer the same questions greedily with the same batch size; the answers must be
identical (length-sorting only changes which prompts share a batch). Writes
benchmarks/results/answers_cpu.json. `--dry-run` answers a few questions (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlm.llm.backends import GenerationParams  # noqa: E402


def questions(n: int, seed: int = 0) -> list[list[dict]]:
    """`n` questions of very different lengths (1 to 40 sentences), in a shuffled order as a clause file has them."""
    import numpy as np

    rng = np.random.default_rng(seed)
    sentences = ["Can you help me with travel plans?", "I want to sleep better at night.",
                 "What should I cook for dinner?", "Tell me about climate change."]
    return [[{"role": "user", "content": " ".join(rng.choice(sentences, size=int(rng.integers(1, 41))))}]
            for _ in range(n)]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--dry-run", action="store_true", help="8 questions, 8 new tokens")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/answers_cpu.json"))
    a = ap.parse_args(argv)
    import torch

    from dlm.training.models import generate, load_causal_lm
    from dlm.training.tiny_model import make_tiny_model

    n, new = (8, 8) if a.dry_run else (a.questions, a.max_new_tokens)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = load_causal_lm(str(make_tiny_model(Path(tmp) / "tiny", seed=0, warmup_steps=50)))
    convs = questions(n)
    params = GenerationParams(temperature=0.0, max_tokens=new, seed=0)
    generate(model, tok, convs[:2], params, a.batch_size)  # warm-up
    runs = {}
    for label, sort in (("unsorted", False), ("length_sorted", True)):
        t0 = time.perf_counter()
        answers = generate(model, tok, convs, params, a.batch_size, sort_by_length=sort)
        seconds = time.perf_counter() - t0
        runs[label] = {"seconds": round(seconds, 3), "questions_per_s": round(n / seconds, 3), "answers": answers}
    prompt_tokens = [len(ids) for ids in tok([c[0]["content"] for c in convs])["input_ids"]]
    result = {"model": "tiny (dlm.training.tiny_model, hidden 64, 2 layers)", "device": "cpu", "machine": platform.machine(),
              "threads": torch.get_num_threads(), "questions": n, "batch_size": a.batch_size,
              "max_new_tokens": new, "prompt_tokens_min_max": [min(prompt_tokens), max(prompt_tokens)],
              "unsorted_questions_per_s": runs["unsorted"]["questions_per_s"],
              "sorted_questions_per_s": runs["length_sorted"]["questions_per_s"],
              "speedup": round(runs["unsorted"]["seconds"] / runs["length_sorted"]["seconds"], 3),
              "identical_answers": runs["unsorted"]["answers"] == runs["length_sorted"]["answers"],
              "dry_run": a.dry_run}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    if not result["identical_answers"]:
        raise SystemExit("length-sorted answers differ from unsorted ones")
    return result


if __name__ == "__main__":
    main()
