"""Steps that train: train, make-tiny-model.

`dlm train` takes its options from TRL's own dataclasses, as alignment-handbook's DPO script does
with `TrlParser((ScriptArguments, DPOConfig, ModelConfig))`: every DPOConfig and ModelConfig field
is a flag (`--learning_rate` or `--learning-rate`) and a recipe key. Earlier spellings stay as
aliases (`--model-id`, `--torch-dtype`, `--batch-size`; recipe keys `model_id`, `torch_dtype`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from typing import get_type_hints

from dlm.cli.common import DeprecatedAlias, command
from dlm.errors import DLMError
from dlm.experiment import designs as experiment, runs
from dlm.training.tiny_model import make_tiny_model
from dlm.training.recipes import canonical_settings, load_recipe
from dlm.training.train_dpo import DEFAULT_MODEL, hf_token, train
from dlm.io import check_outputs, non_negative_int, positive_int

# ----------------------------------------------------------------------------- train

# Dests of the TRL fields on the train parser (filled when the parser is built).
TRL_DESTS: set[str] = set()
USAGE = ("dlm train [--config RECIPE] (--dataset JSONL --output-dir DIR | --profile NAME --run RUN) [--finetune "
         "{lora,qlora,full}] [--resume] [--<any DPOConfig or ModelConfig field> VALUE ...]")


def _trl_fields(p: argparse.ArgumentParser) -> None:
    """One flag per DPOConfig and ModelConfig field (HfArgumentParser's rules); unset flags stay absent."""
    from transformers import HfArgumentParser
    from trl import DPOConfig, ModelConfig

    seen: set[str] = set()
    for cls, title in ((ModelConfig, "ModelConfig (TRL): model loading, LoRA, quantisation"),
                       (DPOConfig, "DPOConfig (TRL): every DPO and Trainer setting")):
        group = p.add_argument_group(title)
        hints = get_type_hints(cls)
        before = len(p._actions)
        for f in dataclasses.fields(cls):
            if not f.init or f.name in seen or f.name in ("hub_token", "push_to_hub_token"):
                continue  # tokens come from HF_TOKEN only; a field in both classes appears once
            f.type = hints[f.name]
            HfArgumentParser._parse_dataclass_field(group, f)
            seen.add(f.name)
        for action in p._actions[before:]:
            shown = str(action.default).replace("%", "%%")
            action.default = argparse.SUPPRESS  # a flag not given leaves the recipe's value alone
            action.required = False
            action.help = f"{(action.help or '').replace('%', '%%')} (default: the recipe's, else {shown})".lstrip()
    TRL_DESTS.update(seen)


def _train_args(p: argparse.ArgumentParser) -> None:
    p.usage = USAGE
    p.add_argument("--dataset", default=None, help="preference JSONL from `dlm prepare` (default with --profile: the design's)")
    p.add_argument("--profile", default=None, help="take every setting from this profile's design (configs/profiles/; default: none)")
    # dest is not `run` (the parser keeps each step's handler there) nor `run_name` (a DPOConfig field)
    p.add_argument("--run", dest="design_run", default=None,
                   help="the run to train, named as `python -m dlm design` prints it (default: none)")
    p.add_argument("--config", default=None, help="recipe YAML (configs/train/*.yaml); flags override it (default: none, LoRA defaults)")
    p.add_argument("--hf-token", default=None, help="deprecated: shows in the process list; set HF_TOKEN instead (default: HF_TOKEN from the environment)")
    p.add_argument("--finetune", choices=["lora", "qlora", "full"], default=None,
                   help="lora (default), qlora (4-bit base, CUDA) or full; sets use_peft and load_in_4bit")
    p.add_argument("--ref-model-id", dest="ref_model_id", default=None,
                   help="reference model for --finetune full (default: the policy's starting weights)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output-dir")
    _trl_fields(p)
    # The seed's own flag (like --dataset and --output-dir): kept working without a warning.
    p.add_argument("--model-id", dest="model_name_or_path", default=argparse.SUPPRESS,
                   help="the seed's spelling of --model_name_or_path (default: the recipe's)")
    p.add_argument("--torch-dtype", dest="dtype", default=argparse.SUPPRESS, action=DeprecatedAlias,
                   choices=["bfloat16", "float16", "float32"], canonical="--dtype",
                   help="deprecated spelling of --dtype (default: the recipe's)")
    p.add_argument("--batch-size", dest="per_device_train_batch_size", type=positive_int, default=argparse.SUPPRESS,
                   action=DeprecatedAlias, canonical="--per_device_train_batch_size",
                   help="deprecated spelling of --per_device_train_batch_size (default: the recipe's)")


def given_settings(args: argparse.Namespace) -> dict:
    """The TRL fields given as flags (and --finetune, --ref-model-id), under TRL's names."""
    out = {k: v for k, v in vars(args).items() if k in TRL_DESTS}
    for key in ("finetune", "ref_model_id"):
        if getattr(args, key, None) is not None:
            out[key] = getattr(args, key)
    return out


@command("train", _train_args)
def run_train(args: argparse.Namespace) -> int:
    """Weighted DPO (TRL) of a causal LM on a preference dataset; every DPOConfig/ModelConfig field is a flag."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        token = hf_token(args.hf_token)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    flags = given_settings(args)
    output_dir = flags.pop("output_dir", None)
    design = None
    if args.profile or args.design_run:
        if not (args.profile and args.design_run):
            raise DLMError("--profile and --run go together (run names as `python -m dlm design --profile NAME` "
                           "prints them)")

        design = experiment.load_design(args.profile, "04_train_dpo")
        run = design.find(args.design_run)
        settings = runs.train_settings(design, run.name, args.config)
        output_dir = output_dir or str(design.checkpoint(run))
    elif not args.dataset or not output_dir:
        raise DLMError("train needs --dataset and --output-dir (or --profile NAME --run RUN)")
    else:
        settings = {"model_name_or_path": DEFAULT_MODEL, **canonical_settings(load_recipe(args.config))}
    if {"use_peft", "load_in_4bit", "load_in_8bit"} & set(flags) and "finetune" not in flags:
        settings.pop("finetune", None)  # TRL's own switches given as flags win over the recipe's finetune
    settings.update(flags)
    check_outputs({"--output-dir": output_dir}, {"--dataset": args.dataset, "--config": args.config},
                  folders=("--output-dir",))
    if design is not None:  # the design's run, as notebook 04 and `dlm submit` train it
        summary = runs.train_run(design, run.name, settings, token=token, resume=args.resume,
                                 dataset=args.dataset, output_dir=output_dir)
    else:
        summary = train(args.dataset, output_dir, settings, token=token, resume=args.resume)
    loss = summary["metrics"].get("train_loss")
    print(f"trained {settings['model_name_or_path']} ({summary['config']['finetune']}) on {summary['train_rows']} "
          f"pairs; train loss {loss:.4f}; saved to {output_dir}")
    return 0


def _tiny_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-dir", required=True, help="folder for the model and tokenizer (required)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the weights and the warm-up")
    p.add_argument("--corpus", default=None, help="text file, one document per line (default: demo dialogues)")
    p.add_argument("--warmup-steps", type=non_negative_int, default=200, help="causal-LM warm-up steps (0: random weights)")


@command("make-tiny-model", _tiny_args)
def run_make_tiny_model(args: argparse.Namespace) -> int:
    """Write a tiny Llama-architecture model with a locally trained tokenizer (demo, tests)."""
    check_outputs({"--output-dir": args.output_dir}, {"--corpus": args.corpus}, folders=("--output-dir",))
    out = make_tiny_model(args.output_dir, seed=args.seed, corpus=args.corpus, warmup_steps=args.warmup_steps)
    print(f"wrote tiny model to {out}")
    return 0
