"""LoRA DPO throughput on a GPU: our WeightedDPOTrainer against stock TRL DPOTrainer, same run.

The model has Llama-3.1-8B's exact architecture with random weights (no download), bf16, LoRA
r=16 on all linear layers, activation checkpointing, sequences of --seq-len tokens (prompt half,
completion half). Reports tokens/s (steps after --warmup-steps), peak GPU memory and MFU, where
model FLOPs = 8 · N_params · tokens (policy forward + backward ≈ 6N, reference forward 2N per
token; activation-recompute FLOPs are not counted, so MFU is conservative). Target: ours ≥ 0.97×
stock tokens/s.

    python benchmarks/bench_dpo_gpu.py --out results.json          # on a GPU
    python benchmarks/bench_dpo_gpu.py --dry-run                    # tiny model on the CPU (tested)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
LLAMA_31_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                   num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072, rope_theta=500000.0,
                   rms_norm_eps=1e-5, tie_word_embeddings=False,
                   rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
TINY = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=1024, tie_word_embeddings=False)


def make_rows(tokenizer, n: int, seq_len: int, seed: int) -> list[dict]:
    """Random-word prompts and completions of about seq_len/2 tokens each."""
    import random

    rng = random.Random(seed)
    vocab = [t for t in tokenizer.get_vocab() if t.isalpha() and len(t) > 2][:2000] or ["word"]

    def text(tokens: int) -> str:
        words = []
        while len(tokenizer(" ".join(words))["input_ids"]) < tokens:
            words += rng.choices(vocab, k=max(8, tokens // 8))
        return " ".join(words)

    half = seq_len // 2
    prompt = text(half - 8)
    return [{"prompt": prompt, "chosen": " " + text(half - 8), "rejected": " " + text(half - 8), "weight": 1.0}
            for _ in range(n)]


def random_llama(arch: dict, device: str):
    """A seeded random-weight Llama, initialised directly in bf16 on a GPU (an fp32 8B model would be 32 GB)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16 if device == "cuda" else torch.float32)
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**arch))
    torch.set_default_dtype(torch.float32)
    return model


def run(trainer_cls, model_kwargs, rows, args, tokenizer, device) -> dict:
    """Train for args.steps steps; time the steps after the warm-up."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import DPOConfig

    model = random_llama(model_kwargs, device)
    n_params = sum(p.numel() for p in model.parameters())
    marks: list[tuple[float, int]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if device == "cuda":
                torch.cuda.synchronize()
            marks.append((time.perf_counter(), state.global_step))

    cfg = DPOConfig(output_dir=str(Path(args.tmp) / trainer_cls.__name__), per_device_train_batch_size=args.batch_size,
                    max_steps=args.steps, learning_rate=1e-5, bf16=device == "cuda", use_cpu=device != "cuda",
                    gradient_checkpointing=device == "cuda", max_length=args.seq_len, logging_steps=1,
                    save_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0, seed=0)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = trainer_cls(model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                          peft_config=lora, callbacks=[Clock()])
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    tokens = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h]
    per_step = (tokens[-1] - tokens[args.warmup_steps - 1]) if len(tokens) >= args.warmup_steps else tokens[-1]
    seconds = marks[-1][0] - marks[args.warmup_steps - 1][0]
    tps = per_step / seconds
    out = {"trainer": trainer_cls.__name__, "tokens_per_s": tps, "seconds_timed": seconds,
           "steps_timed": args.steps - args.warmup_steps, "params": n_params}
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        out.update(gpu=name, peak_memory_gb=torch.cuda.max_memory_allocated() / 2**30,
                   mfu=(8 * n_params * tps / 1e12 / peak) if peak else None)
    del trainer, model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> dict:
    import tempfile

    import torch
    from trl import DPOTrainer

    from dlm.training.tiny_model import default_corpus, train_tokenizer
    from dlm.training.weighted_dpo import WeightedDPOTrainer

    p = argparse.ArgumentParser()
    p.add_argument("--dry-run", action="store_true", help="tiny model on the CPU, a few steps")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=14)
    p.add_argument("--warmup-steps", type=int, default=4)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.dry_run:
        args.seq_len, args.batch_size, args.steps, args.warmup_steps = 128, 2, 4, 2
    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: use --dry-run on a CPU")
    tokenizer = train_tokenizer(default_corpus(0, 300), vocab_size=1024)
    rows = make_rows(tokenizer, args.batch_size * args.steps, args.seq_len, 0)
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        kwargs = TINY if args.dry_run else LLAMA_31_8B
        results = [run(cls, kwargs, rows, args, tokenizer, device) for cls in (DPOTrainer, WeightedDPOTrainer)]
    stock, ours = results
    summary = {"seq_len": args.seq_len, "batch_size": args.batch_size, "stock": stock, "ours": ours,
               "ratio_ours_to_stock": ours["tokens_per_s"] / stock["tokens_per_s"], "target_ratio": 0.97,
               "versions": {m: __import__(m).__version__ for m in ("torch", "transformers", "trl", "peft")}}
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
