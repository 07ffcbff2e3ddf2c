"""The bill of a design before any work starts: GPU hours per stage, API requests, tokens and cost, wall time.

GPU time comes from measurements in benchmarks/results/ on an NVIDIA H200:
- training: `dpo_gpu_h200.json` (LoRA DPO of the Llama-3.1-8B architecture, steady-state tokens/s;
  every step counted at the recipe's full `max_length`, so an upper bound) and, for QLoRA,
  `recipes_gpu_h200.json` (seconds per step of `dlm train --config configs/train/qlora.yaml`);
- answers, the HF judge and held-out accuracy: `gpu_smoke.json` (benchmarks/gpu_smoke.py).
A stage without a measurement says so and uses a stated assumption. Runs of the design are
independent jobs, so N GPUs take ceil(runs / N) rounds of one run's time.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlm.experiment import designs as experiment
from dlm.experiment.profiles import notebook_params
from dlm.judging.listwise import listwise_load
from dlm.judging.questions import parse_constitution
from dlm.llm.backends import PRICES

ROOT = Path(__file__).resolve().parents[2]  # the checkout holding dlm/
RESULTS = ROOT / "benchmarks" / "results"
JUDGE_TOKENS = (700, 120)  # prompt, completion tokens per judgment (clause, question, two answers, verdict)
QUESTION_TOKENS = (250, 400)  # per question request
BATCH_DISCOUNT = 0.5  # the OpenAI Batch API's price relative to synchronous requests
# Used only while gpu_smoke.json has no GPU measurement (labelled "assumed" in the bill).
ASSUMED = {"answer_s_per_token": 0.004, "judge_s": 0.15, "heldout_s_per_pair": 0.05, "load_s": 60.0}


@dataclass
class Stage:
    """One stage's GPU work: jobs (independent), GPU seconds per job, and where the rate comes from."""

    name: str
    jobs: int
    seconds_per_job: float | None
    source: str

    @property
    def gpu_hours(self) -> float | None:
        return None if self.seconds_per_job is None else self.jobs * self.seconds_per_job / 3600

    def wall_hours(self, gpus: int) -> float | None:
        """Hours on `gpus` GPUs, one job per GPU at a time."""
        return None if self.seconds_per_job is None else math.ceil(self.jobs / gpus) * self.seconds_per_job / 3600


@dataclass
class ApiLine:
    """Requests and tokens to one API model, with the synchronous and the Batch API price."""

    what: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def cost_usd(self) -> float | None:
        price = PRICES.get(self.model)
        return None if price is None else (self.prompt_tokens * price[0] + self.completion_tokens * price[1]) / 1e6


@dataclass
class Bill:
    """GPU stages and API lines of a design, for `gpus` GPUs."""

    gpus: int
    stages: list[Stage] = field(default_factory=list)
    api: list[ApiLine] = field(default_factory=list)

    @property
    def gpu_hours(self) -> float:
        return sum(s.gpu_hours or 0.0 for s in self.stages)

    @property
    def wall_hours(self) -> float:
        return sum(s.wall_hours(self.gpus) or 0.0 for s in self.stages)

    @property
    def api_cost_usd(self) -> float:
        return sum(a.cost_usd or 0.0 for a in self.api)

    def lines(self) -> list[str]:
        """The bill in plain lines."""
        out = [f"GPU hours (NVIDIA H200), and wall time on {self.gpus} GPU(s):"]
        for s in self.stages:
            if s.seconds_per_job is None:
                out.append(f"  {s.name}: {s.jobs} jobs, not estimated ({s.source})")
                continue
            out.append(f"  {s.name}: {s.jobs} jobs x {s.seconds_per_job / 3600:.2f} h = {s.gpu_hours:.1f} GPU-h, "
                       f"wall {s.wall_hours(self.gpus):.1f} h ({s.source})")
        out.append(f"  total: {self.gpu_hours:.1f} GPU-h, wall {self.wall_hours:.1f} h on {self.gpus} GPU(s)")
        walls = ", ".join(f"{n}: {Bill(n, self.stages).wall_hours:.1f} h" for n in (1, 4, 8, 16))
        out.append(f"  wall time by number of GPUs: {walls}")
        if self.api:
            out.append("API (OpenAI):")
            for a in self.api:
                cost = (f"${a.cost_usd:.2f}, ${a.cost_usd * BATCH_DISCOUNT:.2f} with the Batch API"
                        if a.cost_usd is not None else "price unknown")
                out.append(f"  {a.what}: {a.requests} requests to {a.model}, {a.prompt_tokens:,} prompt + "
                           f"{a.completion_tokens:,} completion tokens, {cost}")
            out.append(f"  total: ${self.api_cost_usd:.2f} (${self.api_cost_usd * BATCH_DISCOUNT:.2f} with the "
                       "Batch API)")
        return out


def _read(name: str, results: Path) -> dict[str, Any] | None:
    path = results / name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def smoke_rates(results: Path = RESULTS) -> dict[str, float] | None:
    """Per-unit GPU seconds measured by benchmarks/gpu_smoke.py on a GPU (None without a GPU measurement)."""
    smoke = _read("gpu_smoke.json", results)
    if not smoke or smoke.get("dry_run") or smoke.get("device") != "cuda":
        return None
    s = smoke["stages"]
    answers = s["answers"]
    return {"answer_s_per_token": answers["seconds"] / (answers["questions"] * answers["max_new_tokens"]),
            "judge_s": s["judge"]["seconds"] / s["judge"]["judgments"],
            "heldout_s_per_pair": s["heldout"]["seconds"] / s["heldout"]["pairs"],
            "load_s": s["load"]["seconds"]}


def train_seconds_per_run(finetune: str, steps: int, batch: int, max_length: int,
                          results: Path = RESULTS) -> tuple[float | None, str]:
    """(GPU seconds of one run, source) from the H200 training measurements."""
    if finetune == "lora":
        dpo = _read("dpo_gpu_h200.json", results)
        if dpo:
            tps = dpo["ours"]["tokens_per_s"]
            return steps * batch * 2 * max_length / tps, f"dpo_gpu_h200.json: {tps:.0f} tokens/s, full-length rows"
    if finetune == "qlora":
        recipes = _read("recipes_gpu_h200.json", results)
        for r in (recipes or {}).get("runs", []):
            if r.get("finetune") == "qlora" and r.get("seconds_per_step"):
                per_pair = r["seconds_per_step"] / r["batch_size"] * max_length / recipes["seq_len"]
                return steps * batch * per_pair, f"recipes_gpu_h200.json: {per_pair:.2f} s per pair"
    return None, f"{finetune} training not measured on a GPU by this project (docs/training.md)"


def estimate_bill(profile: dict[str, Any], gpus: int = 1, root: Path = ROOT, results: Path = RESULTS) -> Bill:
    """The bill of a profile's design on `gpus` GPUs."""
    design = experiment.from_profile(profile, "04_train_dpo")
    recipe = design.recipe_settings()
    q, e = notebook_params(profile, "05_questions"), notebook_params(profile, "06_evaluate")
    n_clauses = len(parse_constitution(root / str(q.get("constitution_path", "constitution.txt"))))
    n_questions = n_clauses * int(e.get("questions_per_clause") or q.get("n_questions", 10))
    runs = len(design.runs())
    bill = Bill(gpus=max(1, gpus))
    seconds, source = train_seconds_per_run(str(recipe.get("finetune", "lora")), design.steps(),
                                            design.effective_batch(), int(recipe.get("max_length", 1024)), results)
    bill.stages.append(Stage("train", runs, seconds, source))
    rates = smoke_rates(results)
    label = "gpu_smoke.json" if rates else "assumed: run benchmarks/gpu_smoke.py on a GPU to measure"
    rates = rates or ASSUMED
    new_tokens = int(e.get("max_new_tokens", 256))
    bill.stages.append(Stage("answers (hf)", runs + 1, rates["load_s"] + n_questions * new_tokens
                             * rates["answer_s_per_token"], label))
    evaluation = experiment.from_profile(profile, "06_evaluate")
    judgments = len(evaluation.pairs()) * n_questions * (2 if e.get("both_orders", True) else 1)
    if e.get("judge_backend", "openai") == "hf":
        bill.stages.append(Stage("judge (hf log-prob)", 1, rates["load_s"] + judgments * rates["judge_s"], label))
    if e.get("second_judge_model"):
        bill.stages.append(Stage(f"second judge ({e['second_judge_model']} on its own server)", 1, None,
                                 "a served model's throughput is not measured by this project"))
    max_pairs = int(notebook_params(profile, "07_aligned_to_whom").get("max_pairs", 2000) or 2000)
    bill.stages.append(Stage("held-out accuracy", runs + 1, rates["load_s"] + max_pairs
                             * rates["heldout_s_per_pair"], label))
    if q.get("question_backend", "openai") == "openai":
        requests = n_clauses * 2  # a first request plus a top-up on average
        bill.api.append(ApiLine("question writing", q.get("question_model", "gpt-4o-mini"), requests,
                                requests * QUESTION_TOKENS[0], requests * QUESTION_TOKENS[1]))
    if e.get("judge_backend", "openai") == "openai":
        bill.api.append(ApiLine("judging", e.get("judge_model", "gpt-4o-mini"), judgments,
                                judgments * JUDGE_TOKENS[0], judgments * JUDGE_TOKENS[1]))
    if e.get("judge_mode", "pairwise") != "pairwise":  # 06's listwise section, beside its pairwise judging
        n_models = len(evaluation.model_specs())
        requests, prompt, completion = listwise_load(n_questions, n_models, int(e.get("list_orders", 2)))
        if e.get("judge_backend", "openai") == "openai":
            bill.api.append(ApiLine(f"listwise judging ({n_models} answers a request)",
                                    e.get("judge_model", "gpt-4o-mini"), requests, prompt, completion))
        elif e.get("judge_backend") == "hf":  # m-1 option scorings per ranking, each prompt ~m/2 times a pair's
            bill.stages.append(Stage("listwise judge (hf log-prob, position by position)", 1, rates["load_s"]
                                     + requests * (n_models - 1) * n_models / 2 * rates["judge_s"], label))
    return bill
