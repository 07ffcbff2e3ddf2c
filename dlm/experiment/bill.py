"""The bill of a design before any work starts: GPU hours per stage, API requests, tokens and cost, wall time.

GPU time comes from measurements in benchmarks/results/ on an NVIDIA H200:
- training: `dpo_gpu_h200.json` (LoRA DPO of the Llama-3.1-8B architecture, steady-state tokens/s;
  every step counted at the recipe's full `max_length`, so an upper bound) and, for QLoRA,
  `recipes_gpu_h200.json` (seconds per step of `dlm train --config configs/train/qlora.yaml`);
- answers, the HF judge and held-out accuracy: `gpu_smoke.json` (benchmarks/gpu_smoke.py).
A stage without a measurement says so and uses a stated assumption. Runs of the design are
independent jobs, so N GPUs take ceil(runs / N) rounds of one run's time. A training job also
loads the model and runs the recipe's evaluation passes (every `eval_steps`, and once at the end).

API and judging: one row per judging kind and judge (06's judging, calibration, judge–human
agreement; the second judge's rows too), each with its prompt tokens computed from the real
prompt template (`judge_messages`, `agreement_messages`, `list_messages`) filled with the constitution's clauses,
the calibration set's texts and answers of `max_new_tokens` tokens (an upper bound), at
CHARS_PER_TOKEN characters a token. Every figure says whether it is measured, computed or assumed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlm.experiment import designs as experiment
from dlm.experiment.profiles import notebook_params
from dlm.judging.agreement import agreement_messages
from dlm.judging.calibration import load_calibration
from dlm.judging.judge import Question, judge_messages
from dlm.judging.listwise import LABELS, list_messages
from dlm.judging.questions import parse_constitution
from dlm.llm.backends import PRICES

ROOT = Path(__file__).resolve().parents[2]  # the checkout holding dlm/
RESULTS = ROOT / "benchmarks" / "results"
CHARS_PER_TOKEN = 4.0  # English text under GPT and Llama tokenizers (about 4 characters a token)
VERDICT_TOKENS = 120  # assumed: "explain briefly, then [[A]]" replies (max_tokens 512 caps them)
QUESTION_TEXT_CHARS = 120  # assumed: one evaluation question (the 05 writer's are one or two sentences)
AGREEMENT_CONVERSATION_TOKENS = 400  # assumed: a PRISM conversation so far, before the two held-out answers
AGREEMENT_ANSWER_TOKENS = 150  # assumed: one held-out PRISM answer
QUESTION_TOKENS = (250, 400)  # assumed: per question-writing request
RANKING_TOKENS = 150  # assumed: a listwise reply (a short reason, then the JSON ranking)
BATCH_DISCOUNT = 0.5  # the OpenAI Batch API's price relative to synchronous requests
# Used only while gpu_smoke.json has no GPU measurement (labelled "assumed" in the bill).
ASSUMED = {"answer_s_per_token": 0.004, "judge_s": 0.15, "heldout_s_per_pair": 0.05, "load_s": 60.0}


@dataclass
class Stage:
    """One stage's GPU work: jobs (independent), GPU seconds per job, and where the rate comes from."""

    name: str
    jobs: int
    seconds_per_job: float | None
    source: str  # "measured: FILE ...", "assumed: ..." or "not estimated: why"

    @property
    def gpu_hours(self) -> float | None:
        return None if self.seconds_per_job is None else self.jobs * self.seconds_per_job / 3600

    def wall_hours(self, gpus: int) -> float | None:
        """Hours on `gpus` GPUs, one job per GPU at a time."""
        return None if self.seconds_per_job is None else math.ceil(self.jobs / gpus) * self.seconds_per_job / 3600


@dataclass
class ApiLine:
    """One row of the requests table: a judging kind (or question writing) sent to one model, and its price."""

    what: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    basis: str = ""  # how the token counts were obtained (computed from the template, assumed, ...)
    served: bool = False  # on the user's own server (no API price; its GPU time is not measured here)
    unit: str = "requests"  # what one request is, in words ("judgments", "listwise rankings", ...)

    @property
    def cost_usd(self) -> float | None:
        price = None if self.served else PRICES.get(self.model)
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
                out.append(f"  {s.name}: {s.jobs} jobs, {s.source}")
                continue
            out.append(f"  {s.name}: {s.jobs} jobs x {s.seconds_per_job / 3600:.2f} h = {s.gpu_hours:.1f} GPU-h, "
                       f"wall {s.wall_hours(self.gpus):.1f} h ({s.source})")
        out.append(f"  total: {self.gpu_hours:.1f} GPU-h, wall {self.wall_hours:.1f} h on {self.gpus} GPU(s)")
        walls = ", ".join(f"{n}: {Bill(n, self.stages).wall_hours:.1f} h" for n in (1, 4, 8, 16))
        out.append(f"  wall time by number of GPUs: {walls}")
        if self.api:
            out.append("Requests (every judging kind, per judge):")
            for a in self.api:
                cost = (f"${a.cost_usd:.2f}, ${a.cost_usd * BATCH_DISCOUNT:.2f} with the Batch API"
                        if a.cost_usd is not None else
                        "on your own server: no API price" if a.served else "price unknown")
                per = a.prompt_tokens / a.requests if a.requests else 0
                out.append(f"  {a.what}: {a.requests:,} requests to {a.model}, {a.prompt_tokens:,} prompt "
                           f"({per:,.0f} per request) + {a.completion_tokens:,} completion tokens, {cost} "
                           f"[{a.basis}]")
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
    return {"gpu": smoke.get("gpu", "a GPU"),
            "answer_s_per_token": answers["seconds"] / (answers["questions"] * answers["max_new_tokens"]),
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
            return steps * batch * 2 * max_length / tps, (f"measured: dpo_gpu_h200.json, {tps:.0f} tokens/s, "
                                                          "full-length rows")
    if finetune == "qlora":
        recipes = _read("recipes_gpu_h200.json", results)
        for r in (recipes or {}).get("runs", []):
            if r.get("finetune") == "qlora" and r.get("seconds_per_step"):
                per_pair = r["seconds_per_step"] / r["batch_size"] * max_length / recipes["seq_len"]
                return steps * batch * per_pair, f"measured: recipes_gpu_h200.json, {per_pair:.2f} s per pair"
    return None, f"not estimated: {finetune} training not measured on a GPU by this project (docs/training.md)"


def tokens(text: str) -> int:
    """Tokens of `text` at CHARS_PER_TOKEN characters a token."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def judge_prompt_tokens(clauses: list[str], answer_tokens: int) -> int:
    """Mean prompt tokens of one 06 judgment: the real template, each clause, a question, two answers of `answer_tokens`."""
    answer = "x" * int(answer_tokens * CHARS_PER_TOKEN)
    question = "q" * QUESTION_TEXT_CHARS
    sizes = [sum(tokens(m["content"]) for m in judge_messages(Question("", "", c, question), answer, answer))
             for c in clauses]
    return math.ceil(sum(sizes) / len(sizes))


def listwise_line(judge: str, clauses: list[str], n_questions: int, n_models: int, orders: int,
                  answer_tokens: int) -> ApiLine:
    """06's listwise requests of one judge: one per question and display order, every model's answer in each."""
    requests = n_questions * orders
    what = f"listwise judging ({n_models} answers a request)"
    if n_models > len(LABELS):
        return ApiLine(what, judge, 0, 0, 0, f"refused: a listwise request ranks at most {len(LABELS)} models",
                       unit="listwise rankings")
    answers = ["x" * int(answer_tokens * CHARS_PER_TOKEN)] * n_models
    question = "q" * QUESTION_TEXT_CHARS
    per = math.ceil(sum(sum(tokens(m["content"]) for m in list_messages(Question("", "", c, question), answers))
                        for c in clauses) / len(clauses))
    return ApiLine(what, judge, requests, requests * per, requests * RANKING_TOKENS,
                   f"template computed with each clause, a {QUESTION_TEXT_CHARS}-character question and "
                   f"{n_models} answers of {answer_tokens} tokens (max_new_tokens: an upper bound); {RANKING_TOKENS} "
                   "reply tokens assumed", unit="listwise rankings")


def calibration_line(judge: str, path: Path, constitution: Path, served: bool) -> ApiLine | None:
    """Calibration requests of one judge: every known pair in both orders, prompts computed from the set's own texts."""
    if not path.is_file():
        return None
    pairs = load_calibration(path, constitution)
    prompt = sum(sum(tokens(m["content"]) for m in judge_messages(Question("", "", p.clause, p.question), a, b))
                 for p in pairs for a, b in ((p.follows, p.violates), (p.violates, p.follows)))
    return ApiLine("calibration", judge, 2 * len(pairs), prompt, 2 * len(pairs) * VERDICT_TOKENS,
                   f"prompts computed from {path.name}; {VERDICT_TOKENS} reply tokens assumed", served,
                   unit="calibration requests")


def agreement_line(judge: str, max_pairs: int, served: bool) -> ApiLine:
    """Judge–human agreement requests of one judge: `max_pairs` held-out pairs in both orders."""
    answer = "x" * int(AGREEMENT_ANSWER_TOKENS * CHARS_PER_TOKEN)
    conversation = "c" * int(AGREEMENT_CONVERSATION_TOKENS * CHARS_PER_TOKEN)
    per = sum(tokens(m["content"]) for m in agreement_messages(conversation, answer, answer))
    n = 2 * max_pairs
    return ApiLine("judge-human agreement", judge, n, n * per, n * VERDICT_TOKENS,
                   f"template computed; conversation {AGREEMENT_CONVERSATION_TOKENS} and answers "
                   f"{AGREEMENT_ANSWER_TOKENS} tokens assumed (at most {max_pairs} pairs)", served,
                   unit="agreement requests")


def judging_lines(profile: dict[str, Any], root: Path, n_judgments: int, clauses: list[str]) -> list[ApiLine]:
    """One row per judging kind and judge: 06's judging, calibration, agreement; the second judge's rows too."""
    e = notebook_params(profile, "06_evaluate")
    if e.get("judge_backend", "openai") != "openai":
        return []
    answer_tokens = int(e.get("max_new_tokens", 256))
    per = judge_prompt_tokens(clauses, answer_tokens)
    basis = (f"template computed with each clause, a {QUESTION_TEXT_CHARS}-character question and two "
             f"{answer_tokens}-token answers (max_new_tokens: an upper bound); {VERDICT_TOKENS} reply tokens assumed")
    judges = [(str(e.get("judge_model", "gpt-4o-mini")), False)]
    if e.get("second_judge_model"):
        judges.append((str(e["second_judge_model"]), True))
    q = notebook_params(profile, "05_questions")
    constitution = root / str(q.get("constitution_path", "constitution.txt"))
    out = []
    for judge, served in judges:
        out.append(ApiLine("judging (06)", judge, n_judgments, n_judgments * per, n_judgments * VERDICT_TOKENS,
                           basis, served, unit="judgments"))
        if e.get("calibration_set"):
            line = calibration_line(judge, root / str(e["calibration_set"]), constitution, served)
            out.append(line or ApiLine("calibration", judge, 0, 0, 0, f"{e['calibration_set']} not found", served,
                                       unit="calibration requests"))
        if e.get("agreement_dataset") and e.get("agreement_llm_judges", True):
            out.append(agreement_line(judge, int(e.get("agreement_max_pairs", 200)), served))
    return out


def training_seconds(design: Any, recipe: dict[str, Any], rates: dict[str, Any], e_ratio: float,
                     results: Path) -> tuple[float | None, str]:
    """(GPU seconds of one training job, source): steps, plus loading the model and the recipe's evaluation passes."""
    steps, batch = design.steps(), design.effective_batch()
    seconds, source = train_seconds_per_run(str(recipe.get("finetune", "lora")), steps, batch,
                                            int(recipe.get("max_length", 1024)), results)
    if seconds is None:
        return None, source
    passes = 0
    if recipe.get("eval_strategy", "no") == "steps" and e_ratio > 0:
        passes = steps // int(recipe.get("eval_steps") or steps) + 1  # every eval_steps, and once at the end
    # held-out rows: eval_ratio of the rows trained on (one epoch); a forward pass is about a third of a step
    eval_rows = steps * batch * e_ratio / max(1e-9, 1 - e_ratio)
    eval_s = passes * eval_rows * seconds / (steps * batch) / 3
    return seconds + rates["load_s"] + eval_s, (f"{source}; + {rates['load_s']:.0f} s loading and {passes} evaluation "
                                                f"pass(es) of ~{eval_rows:.0f} rows at 1/3 of a training step's time "
                                                "(assumed)")


def estimate_bill(profile: dict[str, Any], gpus: int = 1, root: Path = ROOT, results: Path = RESULTS) -> Bill:
    """The bill of a profile's design on `gpus` GPUs."""
    design = experiment.from_profile(profile, "04_train_dpo")
    recipe = design.recipe_settings()
    q, e = notebook_params(profile, "05_questions"), notebook_params(profile, "06_evaluate")
    clauses = [c.text if hasattr(c, "text") else str(c)
               for c in parse_constitution(root / str(q.get("constitution_path", "constitution.txt")))]
    n_clauses = len(clauses)
    n_questions = n_clauses * int(e.get("questions_per_clause") or q.get("n_questions", 10))
    runs = len(design.runs())
    bill = Bill(gpus=max(1, gpus))
    measured = smoke_rates(results)
    label = (f"measured: gpu_smoke.json on {measured['gpu']}" if measured else
             "assumed: run benchmarks/gpu_smoke.py on a GPU to measure")
    rates = measured or ASSUMED
    e_ratio = float(notebook_params(profile, "03_prepare").get("eval_ratio", 0.0) or 0.0)
    seconds, source = training_seconds(design, recipe, rates, e_ratio, results)
    bill.stages.append(Stage("train", runs, seconds, source if measured or seconds is None else
                             source.replace("s loading", "s loading (assumed)")))
    new_tokens = int(e.get("max_new_tokens", 256))
    bill.stages.append(Stage("answers (hf)", runs + 1, rates["load_s"] + n_questions * new_tokens
                             * rates["answer_s_per_token"], label))
    evaluation = experiment.from_profile(profile, "06_evaluate")
    judgments = len(evaluation.pairs()) * n_questions * (2 if e.get("both_orders", True) else 1)
    if e.get("judge_backend", "openai") == "hf":
        bill.stages.append(Stage("judge (hf log-prob)", 1, rates["load_s"] + judgments * rates["judge_s"], label))
    if e.get("second_judge_model"):
        bill.stages.append(Stage(f"second judge ({e['second_judge_model']} on its own server)", 1, None,
                                 "not estimated: a served model's throughput is not measured by this project"))
    max_pairs = int(notebook_params(profile, "07_aligned_to_whom").get("max_pairs", 2000) or 2000)
    bill.stages.append(Stage("held-out accuracy", runs + 1, rates["load_s"] + max_pairs
                             * rates["heldout_s_per_pair"], label))
    if q.get("question_backend", "openai") == "openai":
        requests = n_clauses * 2  # a first request plus a top-up on average
        bill.api.append(ApiLine("question writing", q.get("question_model", "gpt-4o-mini"), requests,
                                requests * QUESTION_TOKENS[0], requests * QUESTION_TOKENS[1],
                                "assumed: a first request and a top-up per clause", unit="question requests"))
    bill.api += judging_lines(profile, root, judgments, clauses)
    if e.get("judge_mode", "pairwise") != "pairwise":  # 06's listwise section, beside its pairwise judging
        n_models, orders = len(evaluation.model_specs()), int(e.get("list_orders", 2))
        if e.get("judge_backend", "openai") == "openai":
            bill.api.append(listwise_line(str(e.get("judge_model", "gpt-4o-mini")), clauses, n_questions, n_models,
                                          orders, new_tokens))
        elif e.get("judge_backend") == "hf":  # m-1 option scorings per ranking, each prompt ~m/2 times a pair's
            bill.stages.append(Stage("listwise judge (hf log-prob, position by position)", 1, rates["load_s"]
                                     + n_questions * orders * (n_models - 1) * n_models / 2 * rates["judge_s"], label))
    return bill
