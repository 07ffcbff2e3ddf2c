"""Weighted DPO training: recipe + flags → model, tokenizer and data → WeightedDPOTrainer → checkpoint.

Inputs: a preference JSONL from `dlm prepare` (rows with `split` train/eval; `weight` optional,
default 1). Outputs in `--output-dir`: the model (full weights, or a LoRA adapter on the base),
the tokenizer with the plain-text dialogue template, `training_summary.json` (recipe, seed,
dataset hash, final metrics, log history, versions) and Trainer checkpoints.

The Hugging Face token comes from `HF_TOKEN` and is passed to `from_pretrained` only: it never
goes into DPOConfig (saved as training_args.bin), logs or summaries.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from dlm import progress, training_data
from dlm.errors import DLMError
from dlm.io import load_yaml, manifest, output_lock, read_jsonl, sha256_file, write_json_atomic
from dlm.template import CHAT_TEMPLATE, render_completion, render_prompt

FINETUNE_MODES = ("lora", "qlora", "full")
# Recipe keys that are ours (the rest must be DPOConfig fields).
MODEL_KEYS = {"model_id", "torch_dtype", "attn_implementation", "finetune", "ref_model_id"}
LORA_KEYS = {"lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"}
LLAMA3_PAD = "<|finetune_right_pad_id|>"  # Llama 3.1's reserved padding token


def load_recipe(path: str | Path | None) -> dict[str, Any]:
    """A flat YAML recipe (see configs/train/); keys are validated in `split_settings`."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise DLMError(f"training recipe {path} not found")
    data = load_yaml(path, "training recipe") or {}
    if not isinstance(data, dict):
        raise DLMError(f"{path}: a recipe is a mapping of setting: value")
    return data


def split_settings(settings: dict[str, Any]) -> tuple[dict, dict, dict]:
    """Separate model, LoRA and DPOConfig settings; unknown keys are an error."""
    from trl import DPOConfig

    dpo_fields = {f.name for f in dataclasses.fields(DPOConfig)}
    unknown = sorted(set(settings) - MODEL_KEYS - LORA_KEYS - dpo_fields)
    if unknown:
        raise DLMError(f"unknown training setting(s) {', '.join(unknown)}: not a model, LoRA or DPOConfig field")
    for secret in ("hub_token", "push_to_hub_token"):
        if settings.get(secret):
            raise DLMError(f"{secret} may not be set in a recipe: tokens come from the HF_TOKEN environment variable")
    model = {k: v for k, v in settings.items() if k in MODEL_KEYS}
    lora = {k: v for k, v in settings.items() if k in LORA_KEYS}
    dpo = {k: v for k, v in settings.items() if k in dpo_fields}
    return model, lora, dpo


def load_preference_rows(path: str | Path) -> tuple[list[dict], list[dict]]:
    """Train and eval rows as plain-text prompt/completion pairs, validated (weights finite and >= 0)."""
    path = Path(path)
    if not path.is_file():
        raise DLMError(f"dataset {path} not found; build it with `python -m dlm prepare`")
    train, evaluation = [], []
    for i, row in enumerate(read_jsonl(path), start=1):
        for key in ("prompt", "chosen", "rejected"):
            if key not in row:
                raise DLMError(f"{path}: line {i} lacks '{key}'")
        weight = row.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight) or weight < 0:
            raise DLMError(f"{path}: line {i} has weight {weight!r}; weights must be finite numbers >= 0")
        item = {"prompt": as_prompt_text(row["prompt"]), "chosen": as_completion_text(row["chosen"]),
                "rejected": as_completion_text(row["rejected"]), "weight": float(weight),
                # for shortening over-long histories and counting what TRL keeps (dlm.training_data)
                "prompt_messages": None if isinstance(row["prompt"], str) else row["prompt"],
                "user_id": row.get("user_id")}
        (evaluation if row.get("split") == "eval" else train).append(item)
    if not train:
        raise DLMError(f"{path}: no rows with split 'train'")
    return train, evaluation


def as_prompt_text(prompt: Any) -> str:
    """A chat-format prompt rendered with the dialogue template; a string is taken as already rendered."""
    return prompt if isinstance(prompt, str) else render_prompt(prompt)


def as_completion_text(completion: Any) -> str:
    """A completion as text after the prompt (leading space); TRL appends EOS to plain-text completions."""
    if isinstance(completion, str):
        return completion
    return render_completion("".join(m["content"] for m in completion))


def hf_token(cli_token: str | None = None) -> str | None:
    """The Hugging Face token: HF_TOKEN from the environment, else a --hf-token flag (with a warning)."""
    if cli_token:
        warnings.warn("--hf-token shows in the process list and shell history; prefer the HF_TOKEN environment "
                      "variable", stacklevel=2)
        return cli_token
    return os.environ.get("HF_TOKEN") or None


def load_tokenizer(model_id: str, token: str | None):
    """The model's tokenizer with a pad token and the plain-text dialogue template (never Instruct tokens)."""
    from transformers import AutoTokenizer

    tok = from_pretrained(AutoTokenizer, model_id, token=token)
    if tok.pad_token is None:
        tok.pad_token = LLAMA3_PAD if LLAMA3_PAD in tok.get_vocab() else tok.eos_token
    tok.chat_template = CHAT_TEMPLATE
    return tok


def load_model(model_id: str, finetune: str, torch_dtype: str, token: str | None, attn: str | None = None):
    """The policy model (4-bit for qlora); a missing model path or id is a clear error."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": getattr(torch, torch_dtype), "token": token}
    if attn:
        kwargs["attn_implementation"] = attn
    if finetune == "qlora":
        if not torch.cuda.is_available():
            raise DLMError("--finetune qlora needs a CUDA GPU (bitsandbytes 4-bit); use lora or full on this machine")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=getattr(torch, torch_dtype),
                                                           bnb_4bit_use_double_quant=True)
    return from_pretrained(AutoModelForCausalLM, model_id, **kwargs)


def from_pretrained(loader: Any, model_id: str, **kwargs: Any) -> Any:
    """`loader.from_pretrained` with a missing folder or unreachable Hub id turned into one clear line."""
    local = Path(model_id)
    if (local.is_absolute() or model_id.startswith(".")) and not local.exists():
        raise DLMError(f"model folder {model_id} does not exist")
    try:
        return loader.from_pretrained(model_id, **kwargs)
    except (OSError, ValueError) as exc:
        raise DLMError(f"cannot load '{model_id}': {str(exc).splitlines()[0][:200]} "
                       "(a local folder or a Hub id; gated models need HF_TOKEN)") from None


def train(dataset: str | Path, output_dir: str | Path, settings: dict[str, Any], token: str | None = None,
          resume: bool = False) -> dict[str, Any]:
    """`_train` while holding the output folder's lock: a second run into the same folder stops at once."""
    with output_lock(output_dir, "training output folder"):
        return _train(dataset, output_dir, settings, token, resume)


def _train(dataset: str | Path, output_dir: str | Path, settings: dict[str, Any], token: str | None = None,
           resume: bool = False) -> dict[str, Any]:
    """Train with weighted DPO and save model, tokenizer and `training_summary.json`.

    Args:
        dataset: preference JSONL (`dlm prepare`).
        output_dir: checkpoint folder.
        settings: flat recipe (model, LoRA and DPOConfig keys), flags already merged in.
        token: Hugging Face token for gated models (never saved).
        resume: continue from the last checkpoint in `output_dir`.
    """
    from datasets import Dataset
    from trl import DPOConfig

    from dlm.weighted_dpo import WeightedDPOTrainer

    model_s, lora_s, dpo_s = split_settings(settings)
    finetune = model_s.get("finetune", "lora")
    if finetune not in FINETUNE_MODES:
        raise DLMError(f"--finetune must be one of {', '.join(FINETUNE_MODES)}, got {finetune!r}")
    model_id = model_s.get("model_id")
    if not model_id:
        raise DLMError("no model: pass --model-id or set model_id in the recipe")
    train_rows, eval_rows = load_preference_rows(dataset)
    output_dir = Path(output_dir)
    import torch

    dpo_s = {"report_to": "none", "disable_tqdm": not sys.stderr.isatty(), **dpo_s}
    if not torch.cuda.is_available():  # TRL defaults to bf16, which fails on a CPU: train in float32 there
        dpo_s.setdefault("bf16", False)
        dpo_s.setdefault("use_cpu", True)
        model_s.setdefault("torch_dtype", "float32")
    quiet_progress_bars()
    if not eval_rows:
        dpo_s["eval_strategy"] = "no"
    try:
        args = DPOConfig(output_dir=str(output_dir), **dpo_s)
    except (TypeError, ValueError) as exc:
        raise DLMError(f"invalid training settings: {str(exc).splitlines()[0]}") from None
    tokenizer = load_tokenizer(model_id, token)
    train_rows, shortening = training_data.fit_rows(train_rows, tokenizer, args.max_length)
    eval_rows, _ = training_data.fit_rows(eval_rows, tokenizer, args.max_length)
    model = load_model(model_id, finetune, model_s.get("torch_dtype", "bfloat16"), token,
                       model_s.get("attn_implementation"))
    ref_model, peft_config = None, None
    if finetune == "full":
        # TRL would reload the reference from name_or_path without our token: load it here.
        ref_model = load_model(model_s.get("ref_model_id", model_id), "full", model_s.get("torch_dtype", "bfloat16"),
                               token, model_s.get("attn_implementation"))
    else:
        from peft import LoraConfig

        peft_config = LoraConfig(r=lora_s.get("lora_r", 16), lora_alpha=lora_s.get("lora_alpha", 32),
                                 lora_dropout=lora_s.get("lora_dropout", 0.05),
                                 target_modules=lora_s.get("lora_target_modules", "all-linear"), task_type="CAUSAL_LM")
    eval_data = Dataset.from_list(training_data.trl_rows(eval_rows)) if eval_rows else None
    trainer = WeightedDPOTrainer(model=model, ref_model=ref_model, args=args,
                                 train_dataset=Dataset.from_list(training_data.trl_rows(train_rows)),
                                 eval_dataset=eval_data,
                                 processing_class=tokenizer, peft_config=peft_config)
    progress.attach(trainer, output_dir.name)  # a line every few steps instead of the trainer's raw log dicts
    length_filter = training_data.length_filter_report(train_rows, trainer.train_dataset["row"], args.max_length,
                                                       shortening)
    last = _last_checkpoint(output_dir) if resume else None
    result = trainer.train(resume_from_checkpoint=str(last) if last else None)
    trainer.save_model(str(output_dir))
    tokenizer.save_pretrained(str(output_dir))
    summary = manifest("training", config={"model": model_s, "lora": lora_s, "dpo": _public(dpo_s),
                                           "finetune": finetune}, seed=args.seed, inputs=[dataset],
                       dataset_sha256=sha256_file(dataset), train_rows=len(train_rows), eval_rows=len(eval_rows),
                       train_weight_sum=sum(r["weight"] for r in train_rows), resumed_from=str(last) if last else None,
                       **budget(trainer, train_rows), length_filter=length_filter, metrics=result.metrics, log_history=trainer.state.log_history)
    if eval_rows:
        summary["eval_metrics"] = trainer.evaluate()
    write_json_atomic(output_dir / "training_summary.json", summary)
    return summary


def budget(trainer: Any, train_rows: list[dict]) -> dict[str, Any]:
    """What a run was trained with, for side-by-side comparison of arms: steps, epochs, batch, Σw, mean w, ESS."""
    w = [r["weight"] for r in train_rows]
    args = trainer.args
    batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
    return {"steps": int(trainer.state.global_step), "epochs": float(trainer.state.epoch or 0.0),
            "effective_batch_size": int(batch), "train_weight_mean": sum(w) / len(w),
            "train_effective_sample_size": sum(w) ** 2 / sum(x * x for x in w) if any(w) else 0.0}


def quiet_progress_bars() -> None:
    """Hide the libraries' own progress bars when stderr is not a terminal (logs, CI, notebooks)."""
    if sys.stderr.isatty():
        return
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def _public(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings safe to record (nothing token-like)."""
    return {k: v for k, v in settings.items() if "token" not in k.lower() or k == "pad_token"}


def _last_checkpoint(output_dir: Path) -> Path | None:
    """The newest `checkpoint-N` folder, if any."""
    points = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return points[-1] if points else None
