"""Steps that train: train, make-tiny-model."""

from __future__ import annotations

import argparse
import sys
import warnings

from dlm.cli.common import command, profile_args
from dlm.errors import DLMError


# ----------------------------------------------------------------------------- train

# flag -> recipe key; flags left unset do not override the recipe
TRAIN_FLAGS = {
    "model_id": "model_id", "finetune": "finetune", "per_device_train_batch_size": "per_device_train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps", "learning_rate": "learning_rate",
    "num_train_epochs": "num_train_epochs", "max_steps": "max_steps", "beta": "beta", "max_length": "max_length",
    "weight_decay": "weight_decay", "seed": "seed", "report_to": "report_to", "save_strategy": "save_strategy",
    "save_steps": "save_steps", "eval_steps": "eval_steps", "logging_steps": "logging_steps",
    "lora_r": "lora_r", "lora_alpha": "lora_alpha", "torch_dtype": "torch_dtype",
}


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=None, help="preference JSONL from `dlm prepare` (default with --profile: the design's)")
    p.add_argument("--output-dir", default=None, help="checkpoint folder (default with --profile: the design's)")
    profile_args(p, "run")
    p.add_argument("--config", default=None, help="recipe YAML (configs/train/*.yaml); flags override it (default: none, LoRA defaults)")
    p.add_argument("--model-id", default=None, help="Hub id or local folder (default: the recipe's, else Llama 3.1 8B)")
    p.add_argument("--hf-token", default=None, help="deprecated: shows in the process list; set HF_TOKEN instead (default: HF_TOKEN from the environment)")
    p.add_argument("--finetune", choices=["lora", "qlora", "full"], default=None,
                   help="lora, qlora (4-bit, GPU) or full fine-tuning (default: the recipe's, else lora)")
    p.add_argument("--per-device-train-batch-size", "--batch-size", type=int, default=None,
                   help="rows per device and step (default: the recipe's)")
    p.add_argument("--gradient-accumulation-steps", type=int, default=None,
                   help="steps accumulated per optimizer step (default: the recipe's)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="peak learning rate (default: the recipe's)")
    p.add_argument("--num-train-epochs", type=float, default=None,
                   help="passes over the data when --max-steps is unset (default: the recipe's)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="optimizer steps; overrides epochs (default: the recipe's)")
    p.add_argument("--beta", type=float, default=None,
                   help="DPO beta, the strength of the reference (default: the recipe's)")
    p.add_argument("--max-length", type=int, default=None,
                   help="tokens per prompt + completion (default: the recipe's)")
    p.add_argument("--weight-decay", type=float, default=None,
                   help="AdamW weight decay (default: the recipe's)")
    p.add_argument("--seed", type=int, default=None,
                   help="training seed (default: the recipe's)")
    p.add_argument("--report-to", default=None, help="none (default), wandb, tensorboard, ...")
    p.add_argument("--save-strategy", choices=["no", "steps", "epoch"], default=None,
                   help="when to save checkpoints (default: the recipe's)")
    p.add_argument("--save-steps", type=int, default=None,
                   help="steps between checkpoints with --save-strategy steps (default: the recipe's)")
    p.add_argument("--eval-steps", type=int, default=None,
                   help="steps between evaluations (default: the recipe's)")
    p.add_argument("--logging-steps", type=int, default=None,
                   help="steps between logged losses (default: the recipe's)")
    p.add_argument("--lora-r", type=int, default=None,
                   help="LoRA rank (default: the recipe's, else 16)")
    p.add_argument("--lora-alpha", type=int, default=None,
                   help="LoRA alpha (default: the recipe's, else 32)")
    p.add_argument("--torch-dtype", choices=["bfloat16", "float16", "float32"], default=None,
                   help="weights' dtype (default: the recipe's; float32 on a CPU)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output-dir")


@command("train", _train_args)
def run_train(args: argparse.Namespace) -> int:
    """Weighted DPO (TRL) of a causal LM on a preference dataset."""
    from dlm.training import hf_token, load_recipe, train

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        token = hf_token(args.hf_token)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if args.profile or args.run_name:
        if not (args.profile and args.run_name):
            raise DLMError("--profile and --run go together (run names as `python -m dlm design --profile NAME` "
                           "prints them)")
        from dlm import experiment

        design = experiment.load_design(args.profile, "04_train_dpo")
        run = design.find(args.run_name)
        settings = {"finetune": "lora", **design.train_settings(run),
                    **(load_recipe(args.config) if args.config else {})}
        args.dataset = args.dataset or str(design.dataset_path(run))
        args.output_dir = args.output_dir or str(design.checkpoint(run))
    elif not args.dataset or not args.output_dir:
        raise DLMError("train needs --dataset and --output-dir (or --profile NAME --run RUN)")
    else:
        settings = {"model_id": "meta-llama/Llama-3.1-8B", "finetune": "lora", **load_recipe(args.config)}
    settings.update({key: getattr(args, flag) for flag, key in TRAIN_FLAGS.items() if getattr(args, flag) is not None})
    summary = train(args.dataset, args.output_dir, settings, token=token, resume=args.resume)
    loss = summary["metrics"].get("train_loss")
    print(f"trained {settings['model_id']} ({settings['finetune']}) on {summary['train_rows']} pairs; "
          f"train loss {loss:.4f}; saved to {args.output_dir}")
    return 0


def _tiny_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-dir", required=True, help="folder for the model and tokenizer (required)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the warm-up")
    p.add_argument("--corpus", default=None, help="text file, one document per line (default: demo dialogues)")
    p.add_argument("--warmup-steps", type=int, default=200, help="causal-LM warm-up steps (0: random weights)")


@command("make-tiny-model", _tiny_args)
def run_make_tiny_model(args: argparse.Namespace) -> int:
    """Write a tiny Llama-architecture model with a locally trained tokenizer (demo, tests)."""
    from dlm.tiny_model import make_tiny_model

    out = make_tiny_model(args.output_dir, seed=args.seed, corpus=args.corpus, warmup_steps=args.warmup_steps)
    print(f"wrote tiny model to {out}")
    return 0
