"""Weighted DPO training: recipe + flags → model, tokenizer and data → WeightedDPOTrainer → checkpoint.

Inputs: a preference JSONL from `dlm prepare` (rows with `split` train/eval; `weight` optional,
default 1). Outputs in `--output-dir`: the model (full weights, or a LoRA adapter on the base),
the tokenizer with the plain-text dialogue template, `training_summary.json` (recipe, seed,
dataset hash, final metrics, log history, versions, restarts) and Trainer checkpoints.

Resuming (`resume=True`, what every cluster job does) continues from the newest *complete*
checkpoint (its `trainer_state.json`, written last, names its step) when `training_run.json` says
it was trained on the same dataset with the same settings; otherwise the folder's checkpoints are
stale and training starts again from step 0. Each resume is appended to `training_run.json` and
reported as `restarts` in the summary.

The Hugging Face token comes from `HF_TOKEN` and is passed to `from_pretrained` only: it never
goes into DPOConfig (saved as training_args.bin), logs or summaries.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import shutil
import socket
import sys
import warnings
from pathlib import Path
from typing import Any

from dlm import progress

from dlm.preferences import rows as training_data
from dlm.errors import DLMError
from dlm.io import manifest, output_lock, read_jsonl, sha256_file, write_json_atomic
from dlm.training.models import load_model, load_tokenizer, quiet_progress_bars
from dlm.training.recipes import canonical_settings
from dlm.preferences.template import as_completion_text, as_prompt_text
from dlm.training.weighted_dpo import WeightedDPOTrainer

FINETUNE_MODES = ("lora", "qlora", "full")
# Settings that are ours; every other key is a DPOConfig or ModelConfig field (TRL's names).
DLM_KEYS = {"finetune", "ref_model_id", "budget"}  # budget: steps or epochs, as the design chose (recorded)
DEFAULT_MODEL = "meta-llama/Llama-3.1-8B"


def _fields(cls: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def split_settings(settings: dict[str, Any]) -> tuple[dict, dict, dict]:
    """(model, LoRA, DPOConfig) settings under TRL's names; unknown keys are an error."""
    from trl import DPOConfig, ModelConfig

    settings = canonical_settings(settings)
    dpo_fields, model_fields = _fields(DPOConfig), _fields(ModelConfig)
    unknown = sorted(set(settings) - DLM_KEYS - model_fields - dpo_fields)
    if unknown:
        raise DLMError(f"unknown training setting(s) {', '.join(unknown)}: not a DPOConfig or ModelConfig field "
                       "(`python -m dlm train --help` lists them)")
    for secret in ("hub_token", "push_to_hub_token"):
        if settings.get(secret):
            raise DLMError(f"{secret} may not be set in a recipe: tokens come from the HF_TOKEN environment variable")
    lora_fields = {f for f in model_fields if f.startswith("lora_") or f in ("use_rslora", "use_dora")}
    model = {k: v for k, v in settings.items() if k in DLM_KEYS or (k in model_fields and k not in lora_fields)}
    lora = {k: v for k, v in settings.items() if k in lora_fields}
    dpo = {k: v for k, v in settings.items() if k in dpo_fields and k not in model_fields}
    return model, lora, dpo


def model_config(model_s: dict[str, Any], lora_s: dict[str, Any]) -> tuple[str, Any]:
    """(finetune mode, TRL ModelConfig): `finetune` (lora, qlora, full) sets use_peft and 4-bit loading."""
    from trl import ModelConfig

    finetune, use_peft = model_s.get("finetune"), model_s.get("use_peft")
    if finetune is None:
        finetune = "full" if use_peft is False else ("qlora" if model_s.get("load_in_4bit") else "lora")
    if finetune not in FINETUNE_MODES:
        raise DLMError(f"--finetune must be one of {', '.join(FINETUNE_MODES)}, got {finetune!r}")
    if use_peft is not None and bool(use_peft) != (finetune != "full"):
        raise DLMError(f"finetune {finetune} and use_peft {use_peft} disagree; set one of them")
    if finetune == "full" and (model_s.get("load_in_4bit") or model_s.get("load_in_8bit")):
        raise DLMError("a quantised model cannot be fully fine-tuned; use --finetune qlora (or lora)")
    if not model_s.get("model_name_or_path"):
        raise DLMError("no model: pass --model_name_or_path or set model_name_or_path in the recipe")
    fields = {k: v for k, v in {**model_s, **lora_s}.items() if k not in DLM_KEYS}
    fields["use_peft"] = finetune != "full"
    fields.setdefault("lora_target_modules", "all-linear")
    if finetune == "qlora":
        fields.setdefault("load_in_4bit", True)
        fields.setdefault("use_bnb_nested_quant", True)
    try:
        return finetune, ModelConfig(**fields)
    except (TypeError, ValueError) as exc:
        raise DLMError(f"invalid model settings: {str(exc).splitlines()[0]}") from None


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
                # for shortening over-long histories and counting what TRL keeps (dlm.preferences.rows)
                "prompt_messages": None if isinstance(row["prompt"], str) else row["prompt"],
                "user_id": row.get("user_id")}
        (evaluation if row.get("split") == "eval" else train).append(item)
    if not train:
        raise DLMError(f"{path}: no rows with split 'train'")
    return train, evaluation


def hf_token(cli_token: str | None = None) -> str | None:
    """The Hugging Face token: HF_TOKEN from the environment, else a --hf-token flag (with a warning)."""
    if cli_token:
        warnings.warn("--hf-token shows in the process list and shell history; prefer the HF_TOKEN environment "
                      "variable", stacklevel=2)
        return cli_token
    return os.environ.get("HF_TOKEN") or None


def train(dataset: str | Path, output_dir: str | Path, settings: dict[str, Any], token: str | None = None,
          resume: bool = False) -> dict[str, Any]:
    """`_train` while holding the output folder's lock: a second run into the same folder stops at once.

    Under `accelerate launch` every process trains; the first (RANK 0) holds the lock and writes the files.
    """
    if int(os.environ.get("RANK", "0")) != 0:
        return _train(dataset, output_dir, settings, token, resume)
    with output_lock(output_dir, "training output folder"):
        return _train(dataset, output_dir, settings, token, resume)


def _train(dataset: str | Path, output_dir: str | Path, settings: dict[str, Any], token: str | None = None,
           resume: bool = False) -> dict[str, Any]:
    """Train with weighted DPO and save model, tokenizer and `training_summary.json`.

    Args:
        dataset: preference JSONL (`dlm prepare`).
        output_dir: checkpoint folder.
        settings: flat recipe (DPOConfig and ModelConfig fields, `finetune`, `ref_model_id`, or the
            older names `model_id`, `torch_dtype`), flags already merged in.
        token: Hugging Face token for gated models (never saved).
        resume: continue from the last checkpoint in `output_dir`.
    """
    import torch
    from datasets import Dataset
    from trl import DPOConfig, get_peft_config, get_quantization_config

    model_s, lora_s, dpo_s = split_settings(settings)
    # ModelConfig's own default is float32; ours is bfloat16 on a GPU. TRL defaults to bf16
    # training, which fails on a CPU: train in float32 there.
    model_s.setdefault("dtype", "bfloat16" if torch.cuda.is_available() else "float32")
    finetune, margs = model_config(model_s, lora_s)
    model_id = margs.model_name_or_path
    train_rows, eval_rows = load_preference_rows(dataset)
    output_dir = Path(output_dir)
    dpo_s = {"report_to": "none", "disable_tqdm": not sys.stderr.isatty(), **dpo_s}
    if not torch.cuda.is_available():
        dpo_s.setdefault("bf16", False)
        dpo_s.setdefault("use_cpu", True)
    quiet_progress_bars()
    if not eval_rows:
        dpo_s["eval_strategy"] = "no"
    try:
        args = DPOConfig(output_dir=str(output_dir), **dpo_s)
    except (TypeError, ValueError) as exc:
        raise DLMError(f"invalid training settings: {str(exc).splitlines()[0]}") from None
    tokenizer = load_tokenizer(model_id, token, margs.model_revision)
    train_rows, shortening = training_data.fit_rows(train_rows, tokenizer, args.max_length)
    eval_rows, _ = training_data.fit_rows(eval_rows, tokenizer, args.max_length)
    load = {"token": token, "dtype": margs.dtype, "attn": margs.attn_implementation, "revision": margs.model_revision,
            "trust_remote_code": getattr(margs, "trust_remote_code", False)}
    model = load_model(model_id, quantization_config=get_quantization_config(margs), **load)
    ref_model, peft_config = None, None
    if finetune == "full":
        # TRL would reload the reference from name_or_path without our token: load it here.
        ref_model = load_model(model_s.get("ref_model_id", model_id), **load)
    else:
        peft_config = get_peft_config(margs)
    eval_data = Dataset.from_list(training_data.trl_rows(eval_rows)) if eval_rows else None
    trainer = WeightedDPOTrainer(model=model, ref_model=ref_model, args=args,
                                 train_dataset=Dataset.from_list(training_data.trl_rows(train_rows)),
                                 eval_dataset=eval_data,
                                 processing_class=tokenizer, peft_config=peft_config)
    progress.attach(trainer, output_dir.name)  # a line every few steps instead of the trainer's raw log dicts
    length_filter = training_data.length_filter_report(train_rows, trainer.train_dataset["row"], args.max_length,
                                                       shortening)
    last, restarts, same_run = resume_point(output_dir, dataset, settings, resume)
    trainer.accelerator.wait_for_everyone()  # every process has chosen before the first one removes stale checkpoints
    if trainer.accelerator.is_main_process:
        record_run(output_dir, dataset, settings, restarts, same_run)
    result = trainer.train(resume_from_checkpoint=str(last) if last else None)
    distributed = distribution(trainer)
    trainer.save_model(str(output_dir))  # every process: FSDP gathers the full weights collectively
    main = trainer.accelerator.is_main_process
    if main:
        tokenizer.save_pretrained(str(output_dir))
    summary = manifest("training", config={"model": model_s, "lora": lora_s, "dpo": _public(dpo_s),
                                           "finetune": finetune}, seed=args.seed, inputs=[dataset],
                       dataset_sha256=sha256_file(dataset), budget=model_s.get("budget", "steps"), train_rows=len(train_rows), eval_rows=len(eval_rows),
                       train_weight_sum=sum(r["weight"] for r in train_rows), resumed_from=str(last) if last else None,
                       restarts=restarts,
                       **budget(trainer, train_rows), length_filter=length_filter, distributed=distributed, metrics=result.metrics, log_history=trainer.state.log_history)
    if eval_rows:
        summary["eval_metrics"] = trainer.evaluate()
    if main:
        write_json_atomic(output_dir / "training_summary.json", summary)
    return summary


def distribution(trainer: Any) -> dict[str, Any]:
    """How the model was spread over processes: world size, FSDP or not, parameter elements this process held."""
    params = trainer.model_wrapped.parameters()
    local = sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in params)  # FSDP2: DTensors
    return {"world_size": int(trainer.args.world_size), "fsdp": bool(trainer.is_fsdp_enabled),
            "parameters_on_this_process": int(local)}


def budget(trainer: Any, train_rows: list[dict]) -> dict[str, Any]:
    """What a run was trained with, for side-by-side comparison of arms: steps, epochs, batch, Σw, mean w, ESS."""
    w = [r["weight"] for r in train_rows]
    args = trainer.args
    # train_batch_size counts DataParallel's GPUs in one process; world_size counts processes
    batch = args.train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
    return {"steps": int(trainer.state.global_step), "epochs": float(trainer.state.epoch or 0.0),
            "effective_batch_size": int(batch), "train_weight_mean": sum(w) / len(w),
            "train_effective_sample_size": sum(w) ** 2 / sum(x * x for x in w) if any(w) else 0.0}


def _public(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings safe to record (nothing token-like)."""
    return {k: v for k, v in settings.items() if "token" not in k.lower() or k == "pad_token"}


# Settings that change when and what is logged or saved, not the weights, and the length of the run (a resume
# may train a finished run further): a resumed job may change them.
NOT_FINGERPRINTED = ("save_", "logging_", "eval_steps", "disable_tqdm", "report_to", "dataloader_num_workers",
                     "max_steps", "num_train_epochs")


def run_fingerprint(dataset: str | Path, settings: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint must have been trained on to be resumed from: the dataset's hash and the settings."""
    kept = {k: v for k, v in canonical_settings(settings).items() if not k.startswith(NOT_FINGERPRINTED)}
    return {"dataset_sha256": sha256_file(dataset), "settings": json.loads(json.dumps(kept, sort_keys=True,
                                                                                       default=str))}


def resume_point(output_dir: Path, dataset: str | Path, settings: dict[str, Any],
                 resume: bool) -> tuple[Path | None, list[dict[str, Any]], bool]:
    """(checkpoint to resume from or None, restarts including this one, whether the folder's checkpoints are this run's)."""
    state_path = output_dir / "training_run.json"
    fingerprint = run_fingerprint(dataset, settings)
    try:
        state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    except ValueError:
        state = {}
    same_run = {k: state.get(k) for k in fingerprint} == fingerprint
    last = last_complete_checkpoint(output_dir) if resume and same_run else None
    restarts = list(state.get("restarts", [])) if last else []
    if last:
        restarts.append({"from_step": int(last.name.split("-")[-1]), "host": socket.gethostname(),
                         "time": dt.datetime.now().isoformat(timespec="seconds")})
    return last, restarts, same_run


def record_run(output_dir: Path, dataset: str | Path, settings: dict[str, Any], restarts: list[dict[str, Any]],
               same_run: bool) -> None:
    """Write `training_run.json` (fingerprint and restarts); checkpoints of another dataset or recipe are removed."""
    if not same_run:  # they must never be resumed into this run
        for stale in output_dir.glob("checkpoint-*"):
            shutil.rmtree(stale, ignore_errors=True)
    write_json_atomic(output_dir / "training_run.json", {**run_fingerprint(dataset, settings), "restarts": restarts})


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest `checkpoint-N` whose `trainer_state.json` (the Trainer writes it last) is valid and says step N."""
    points = sorted((p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                    key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for point in points:
        try:
            state = json.loads((point / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # cut off while saving: fall back to the one before
        if state.get("global_step") == int(point.name.split("-")[-1]):
            return point
    return None
