"""Preflight for the real experiment: every missing prerequisite in one message, before any work."""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
from pathlib import Path
from typing import Any

from dlm import paths
from dlm.data.prism import FILES, LFS_POINTER_PREFIX
from dlm.errors import DLMError
from dlm.experiment import designs as experiment, mde
from dlm.experiment.mde import PowerPlan
from dlm.experiment.bill import estimate_bill
from dlm.experiment.profiles import notebook_params
from dlm.io import load_yaml
from dlm.judging.calibration import check_judges
from dlm.judging.judge import make_judge
from dlm.judging.listwise import check_list_size

MIN_GPU_GB = {"lora": 40, "qlora": 16, "full": 80}
MIN_DISK_GB = 60  # base weights (16 GB), four adapters or checkpoints, datasets, caches


def estimated_api_cost(profile: dict[str, Any], root: Path | None = None) -> tuple[float, str]:
    """The API part of the profile's bill (USD, at synchronous prices) and what it counts, in words."""
    e = notebook_params(profile, "06_evaluate")
    if e.get("judge_mode", "pairwise") != "pairwise":
        check_list_size(len(experiment.from_profile(profile, "06_evaluate").model_specs()))
    bill = estimate_bill(profile, root=root or paths.project_root())
    parts = [f"{a.requests} {a.unit}" + (f" ({a.model})" if a.served else "") for a in bill.api]
    return bill.api_cost_usd, ", ".join(parts)


def check_real_run(profile: dict[str, Any], root: Path | None = None) -> dict[str, Any]:
    """Raise one DLMError listing everything missing; return the facts checked when all is well."""
    root = root or paths.project_root()
    missing: list[str] = []
    source = str(notebook_params(profile, "01_explore_prism").get("prism_source", "prism-alignment"))
    if source == "hub" or source.startswith("hub:"):
        if not os.environ.get("HF_TOKEN"):
            missing.append("HF_TOKEN (needed to download PRISM from the Hub)")
    else:
        folder = root / source
        absent = [n for n in FILES if not (folder / f"{n}.jsonl").is_file()]
        pointers = [n for n in FILES if n not in absent
                    and (folder / f"{n}.jsonl").read_bytes()[:len(LFS_POINTER_PREFIX)] == LFS_POINTER_PREFIX.encode()]
        if absent:
            missing.append(f"PRISM data in {source}/ ({', '.join(absent)}; git lfs install && git clone "
                           "https://huggingface.co/datasets/HannahRoseKirk/prism-alignment)")
        if pointers:
            missing.append(f"PRISM data in {source}/ is Git LFS pointers ({', '.join(pointers)}; run git lfs pull)")
    train = notebook_params(profile, "04_train_dpo")
    design = experiment.from_profile(profile, "04_train_dpo")  # a bad arm, contrast or budget fails here, first
    planned = f"{len(design.runs())} training runs x {design.steps()} steps"
    model_id = str(train.get("model_id", ""))
    if model_id.startswith("meta-llama/") and not os.environ.get("HF_TOKEN"):
        missing.append(f"HF_TOKEN (needed for the gated model {model_id})")
    uses_openai = (notebook_params(profile, "05_questions").get("question_backend") == "openai"
                   or notebook_params(profile, "06_evaluate").get("judge_backend") == "openai")
    if uses_openai and not os.environ.get("OPENAI_API_KEY"):
        missing.append("OPENAI_API_KEY (question writer and judge)")
    finetune = _recipe_finetune(root / str(train.get("recipe", "configs/train/lora.yaml")))
    gpu = _gpu_memory_gb()
    if gpu is None:
        missing.append(f"a CUDA GPU (the {finetune} recipe needs about {MIN_GPU_GB[finetune]} GB)")
    elif gpu < MIN_GPU_GB[finetune]:
        missing.append(f"GPU memory: {gpu:.0f} GB found, the {finetune} recipe needs about {MIN_GPU_GB[finetune]} GB")
    free = shutil.disk_usage(root).free / 2**30
    if free < MIN_DISK_GB:
        missing.append(f"disk: {free:.0f} GB free, need about {MIN_DISK_GB} GB")
    for package in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "openai") + (
            ("bitsandbytes",) if finetune == "qlora" else ()):
        if importlib.util.find_spec(package) is None:
            missing.append(f"package {package}")
    cost, what = estimated_api_cost(profile, root)
    power = print_power(profile)
    if not power.ok:  # listed with the rest: a profile fixed for one thing should not fail on the next
        missing.append(power.refusal() + f" (`python -m dlm design --profile {power.profile}` proposes the "
                                          "cheapest change)")

    bill = estimate_bill(profile, int(profile.get("gpus", 1) or 1), root)
    print("\n".join(bill.lines()))
    missing += second_judge_missing(profile)
    if missing:
        raise DLMError("the real run cannot start; missing: " + "; ".join(missing)
                       + f". Estimated OpenAI cost once ready: ${cost:.2f} ({what}); planned: {planned}, about "
                       f"{bill.gpu_hours:.0f} GPU-hours (`python -m dlm bill --profile NAME --gpus N` itemises them)")
    calibrate_judges(profile, root)  # a judge below the profile's threshold stops the run here
    return {"gpu_gb": gpu, "disk_gb": free, "estimated_cost_usd": cost, "training_runs": len(design.runs()),
            "steps_per_run": design.steps(), "gpu_hours": bill.gpu_hours, "wall_hours": bill.wall_hours}


def print_power(profile: dict[str, Any], max_mde: float | None = None) -> PowerPlan:
    """Print every declared contrast's MDE (`dlm.experiment.mde`) and the clause-level ceiling; return the plan."""
    result = mde.plan(profile, max_mde, propose=False)  # `dlm design` searches for the cheapest fix; not here
    lines = result.lines()
    judged = len(experiment.from_profile(profile, "06_evaluate").pairs())
    tests = result.clauses * judged
    q = result.questions_per_clause
    smallest, threshold = 2 * 0.5**q, 0.05 / max(tests, 1)
    needed = math.ceil(math.log2(2 * max(tests, 1) / 0.05))
    lines.append(f"  clause level: the smallest possible p ({smallest:.2g}, every one of {q} questions won) against "
                 f"Holm's first threshold over {tests} clause tests ({threshold:.2g}): "
                 + ("a clause-level finding is possible" if smallest <= threshold else
                    f"no clause-level finding is possible; it needs at least {needed} questions per clause"))
    print("\n".join(lines))
    return result


def second_judge_missing(profile: dict[str, Any]) -> list[str]:
    """What the profile's second judge lacks (its server's URL), as preflight lines."""
    e = notebook_params(profile, "06_evaluate")
    if e.get("second_judge_model") and not (e.get("second_judge_base_url")
                                            or os.environ.get("DLM_SECOND_JUDGE_BASE_URL")):
        return [f"DLM_SECOND_JUDGE_BASE_URL (the OpenAI-compatible server of {e['second_judge_model']}, "
                "e.g. http://localhost:8000/v1 from `vllm serve`)"]
    return []


def calibrate_judges(profile: dict[str, Any], root: Path) -> None:
    """Score the profile's LLM judges on the calibration set; DLMError when one is below the threshold."""
    e = notebook_params(profile, "06_evaluate")
    threshold = e.get("calibration_min_accuracy") or None
    if not threshold or not e.get("calibration_set"):
        return
    urls = {e.get("judge_model", "gpt-4o-mini"): e.get("judge_base_url") or None}
    if e.get("second_judge_model"):
        urls[e["second_judge_model"]] = e.get("second_judge_base_url") or os.environ.get("DLM_SECOND_JUDGE_BASE_URL")
    backend = e.get("judge_backend", "openai")
    judges = {m: make_judge(backend, m, paths.artifacts_root() / "evaluations" / ".cache", u) for m, u in urls.items()}
    check_judges(judges, backend == "hf", root / e["calibration_set"], threshold)


def _recipe_finetune(recipe: Path) -> str:
    try:
        return (load_yaml(recipe, "training recipe") or {}).get("finetune", "lora")
    except OSError:
        return "lora"


def _gpu_memory_gb() -> float | None:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_properties(0).total_memory / 2**30
    except Exception:  # a broken CUDA install counts as no GPU
        return None
    return None
