"""Command line: `python -m dlm <step>` (or `dlm <step>`), one subcommand per pipeline stage.

Every step is a thin face over the stage's module; user errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable

from dlm import __version__
from dlm.errors import DLMError

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, add_args: Callable[[argparse.ArgumentParser], None]):
    """Register `run` as the handler of subcommand `name`."""
    def wrap(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (add_args, run)
        return run
    return wrap


# ----------------------------------------------------------------------------- explore


def _explore_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--survey", default="prism-alignment/survey.jsonl", help="PRISM survey.jsonl")
    p.add_argument("--columns", default="study_locale,gender,age,education,ethnicity",
                   help="comma-separated columns; a nested one by bare name means its `simplified` field")


@command("explore", _explore_args)
def run_explore(args: argparse.Namespace) -> int:
    """Print unique values and counts per survey column."""
    from dlm.data import format_value_counts, load_survey, value_counts

    survey = load_survey(args.survey)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    print(format_value_counts(value_counts(survey, columns)), end="")
    return 0


# ----------------------------------------------------------------------------- synth


def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", default="demo", choices=["demo", "paper"], help="demo: short conversations; paper: real sizes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="artifacts/sample", help="folder for survey/conversations/utterances.jsonl")


@command("synth", _synth_args)
def run_synth(args: argparse.Namespace) -> int:
    """Generate a PRISM-shaped synthetic sample (marked SYNTHETIC)."""
    from dlm.synth import generate_sample

    counts = generate_sample(args.output, args.scale, args.seed)
    print(f"wrote synthetic PRISM-shaped sample to {args.output}: {counts}")
    return 0


# ----------------------------------------------------------------------------- sortition


class _DeprecatedAlias(argparse.Action):
    """Store like the canonical option, with a warning naming it (old spellings keep working)."""

    def __init__(self, *args, canonical: str = "", **kwargs) -> None:
        self.canonical = canonical
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"warning: {option_string} is deprecated; use {self.canonical}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _panel_args(p: argparse.ArgumentParser, algorithm_alias: bool = False) -> None:
    """Panel options shared by sortition and prepare: one spelling each (`--panel-algorithm`)."""
    algorithms = ["legacy", "leximin", "random"]
    p.add_argument("--panel-config", default="configs/panel_config.yaml")
    p.add_argument("--panel-algorithm", dest="panel_algorithm", default="legacy", choices=algorithms)
    if algorithm_alias:  # the seed's `dlm sortition --algorithm`
        p.add_argument("--algorithm", dest="panel_algorithm", choices=algorithms, action=_DeprecatedAlias,
                       canonical="--panel-algorithm", help="deprecated spelling of --panel-algorithm")
    p.add_argument("--num-panel-samples", type=int, default=2000, help="Monte Carlo panels (legacy, random)")
    p.add_argument("--panel-seed", type=int, default=0)
    p.add_argument("--leximin-time-limit", type=float, default=600.0, help="seconds; an uncertified level is an error")


def _split_args(p: argparse.ArgumentParser) -> None:
    """The held-out set: the same flags and defaults in `sortition` and `prepare`, so both see one pool."""
    p.add_argument("--eval-ratio", type=float, default=0.0, help="share of raters (or interactions) held out")
    p.add_argument("--split-by", default="rater", choices=["rater", "interaction"],
                   help="rater (default): a stratified set of raters held out before sortition; interaction: the "
                        "older split, raters on both sides")
    p.add_argument("--split-seed", type=int, default=0)


def _sortition_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--survey", "--pool", dest="survey", default="prism-alignment/survey.jsonl",
                   help="the pool: PRISM survey.jsonl (or its folder, or 'hub'), or any CSV/JSONL with an id column "
                        "and the quota columns (PRISM's locale and survey-only filters apply when their columns exist)")
    _panel_args(p, algorithm_alias=True)
    p.add_argument("--output", default="artifacts/sortition/probs.csv", help="user_id,probability[,stderr] CSV")
    p.add_argument("--panel-output", default=None,
                   help="also write one drawn panel here (CSV, the input's own columns)")
    p.add_argument("--remaining-output", default=None,
                   help="also write the pool minus the drawn panel here (CSV, the input's own columns)")
    p.add_argument("--id-column", default=None,
                   help="the pool's id column (default user_id; respondents.csv without one are numbered by row)")
    p.add_argument("--categories", default=None,
                   help="Sortition Foundation categories.csv (category,feature,min,max or feature,value,min,max); "
                        "replaces --panel-config, needs --respondents and --panel-size")
    p.add_argument("--respondents", default=None, help="Sortition Foundation respondents.csv (one column per category)")
    p.add_argument("--panel-size", type=int, default=None,
                   help="panel size (required with --categories; otherwise replaces the config's panel_size)")
    _split_args(p)


@command("sortition", _sortition_args)
def run_sortition(args: argparse.Namespace) -> int:
    """Selection probabilities for every pool member, and optionally one drawn panel and the remaining pool."""
    from dataclasses import replace

    from dlm.sortition import load_pool_source, select, write_selection
    from dlm.split import training_survey

    source = load_pool_source(args.survey, args.panel_config, categories=args.categories,
                              respondents=args.respondents, panel_size=args.panel_size, id_column=args.id_column)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.eval_ratio > 0 and args.split_by == "rater":
            if source.format != "prism":
                raise DLMError("--eval-ratio with --split-by rater holds out PRISM raters; "
                               "this pool is not a PRISM survey: pass --eval-ratio 0")
            # the same held-out raters as `dlm prepare`, so π here equals the π of its soft arm
            source = replace(source, table=training_survey(source.table, args.eval_ratio, args.split_by,
                                                           args.split_seed)[0])
        pool = source.build()
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    sel = select(pool, args.panel_algorithm, args.num_panel_samples, args.panel_seed,
                 leximin_time_limit=args.leximin_time_limit,
                 draw_panel=bool(args.panel_output or args.remaining_output), progress=True)
    write_selection(sel, args.output, args.panel_output, source.inputs, args.num_panel_samples,
                    remaining_output=args.remaining_output)
    d = sel.diagnostics
    s = d.summary
    extra = f", failure rate {d.failure_rate:.3f}" if d.failure_rate is not None else ""
    print(f"{args.panel_algorithm}: pool {pool.n}, panel {pool.k}; π min {s.min:.4f} max {s.max:.4f} "
          f"gini {s.gini:.3f} sum {s.sum:.3f}{extra}; wrote {args.output}")
    return 0


# ----------------------------------------------------------------------------- prepare


def _profile_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--profile", default=None, help="take every setting from this profile's design (configs/profiles/)")
    # dest is not `run`: the parser keeps each step's handler there
    p.add_argument("--run", dest="run_name", default=None,
                   help=f"the {what} to run, named as `python -m dlm design` prints it")


def _prepare_args(p: argparse.ArgumentParser) -> None:
    from dlm.preferences import MODES

    p.add_argument("--mode", default=None, choices=[*MODES, "random"],
                   help="size_matched: a size-matched no-quota panel from the same pool (control; `random` is its "
                        "deprecated name); soft_resampled: soft rows resampled to the hard panel's size")
    _profile_args(p, "dataset (or run)")
    p.add_argument("--survey", default="prism-alignment/survey.jsonl")
    p.add_argument("--utterances", default="prism-alignment/utterances.jsonl")
    p.add_argument("--conversations", default=None, help="default: conversations.jsonl beside --utterances")
    _panel_args(p)
    p.add_argument("--output", default=None, help="dataset JSONL (with --profile: the design's path)")
    p.add_argument("--dataset-format", default="chat", choices=["chat", "raw"])
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--min-score-gap", type=int, default=1)
    _split_args(p)
    p.add_argument("--weight-normalization", default="mean", choices=["mean", "per-rater", "none"])
    p.add_argument("--allow-unlinked", action="store_true",
                   help="drop utterances whose user or conversation is unknown (counted in the manifest) "
                        "instead of stopping")


@command("prepare", _prepare_args)
def run_prepare(args: argparse.Namespace) -> int:
    """Build one DPO preference dataset (JSONL + manifest)."""
    from pathlib import Path

    from dlm.preferences import DEPRECATED_MODES, PANEL_MODES, PrepareOptions, prepare

    if args.profile or args.run_name:
        return _prepare_from_design(args)
    if not args.mode or not args.output:
        raise DLMError("prepare needs --mode and --output (or --profile NAME --run DATASET)")
    if args.mode in DEPRECATED_MODES:
        print(f"warning: --mode {args.mode} is deprecated; use --mode {DEPRECATED_MODES[args.mode]}", file=sys.stderr)
    mode = DEPRECATED_MODES.get(args.mode, args.mode)
    opts = PrepareOptions(
        mode=mode, panel_config=args.panel_config if mode in PANEL_MODES else None,
        panel_algorithm=args.panel_algorithm, panel_seed=args.panel_seed, num_panel_samples=args.num_panel_samples,
        leximin_time_limit=args.leximin_time_limit, dataset_format=args.dataset_format,
        system_prompt=args.system_prompt, min_score_gap=args.min_score_gap, eval_ratio=args.eval_ratio,
        split_by=args.split_by, split_seed=args.split_seed, weight_normalization=args.weight_normalization)
    return _prepared(args.mode, prepare(args.survey, args.utterances, args.output, opts, args.conversations,
                                        progress=True, allow_unlinked=args.allow_unlinked), Path(args.output))


def _prepare_from_design(args: argparse.Namespace) -> int:
    """`prepare --profile NAME --run DATASET`: the dataset exactly as the profile's design builds it."""
    from pathlib import Path

    from dlm import experiment
    from dlm.preferences import prepare

    if not (args.profile and args.run_name):
        raise DLMError("--profile and --run go together (run names as `python -m dlm design --profile NAME` prints them)")
    design = experiment.load_design(args.profile, "03_prepare")
    run = design.find(args.run_name)
    output = Path(args.output) if args.output else design.dataset_path(run)
    source = Path(design.prism_source)
    data = prepare(source / "survey.jsonl", source / "utterances.jsonl", output, design.prepare_options(run),
                   progress=True, allow_unlinked=args.allow_unlinked)
    return _prepared(run.dataset, data, output)


def _prepared(name: str, data, output) -> int:
    c = data.counts
    if c["raters_zero_probability"]:
        print(f"warning: {c['raters_zero_probability']} raters have estimated probability 0 "
              f"({c['dropped']['zero_weight_rows']} rows); raise --num-panel-samples or use leximin", file=sys.stderr)
    print(f"{name}: {c['rows']} pairs from {c['raters']} raters (ESS {c['effective_sample_size']:.0f}); "
          f"wrote {output}")
    return 0


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
    p.add_argument("--dataset", default=None, help="preference JSONL from `dlm prepare` (with --profile: the design's)")
    p.add_argument("--output-dir", default=None, help="checkpoint folder (with --profile: the design's)")
    _profile_args(p, "run")
    p.add_argument("--config", default=None, help="recipe YAML (configs/train/*.yaml); flags override it")
    p.add_argument("--model-id", default=None, help="Hub id or local folder (default: the recipe's, else Llama 3.1 8B)")
    p.add_argument("--hf-token", default=None, help="deprecated: shows in the process list; set HF_TOKEN instead")
    p.add_argument("--finetune", choices=["lora", "qlora", "full"], default=None)
    p.add_argument("--per-device-train-batch-size", "--batch-size", type=int, default=None)
    p.add_argument("--gradient-accumulation-steps", type=int, default=None)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--num-train-epochs", type=float, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--beta", type=float, default=None)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--report-to", default=None, help="none (default), wandb, tensorboard, ...")
    p.add_argument("--save-strategy", choices=["no", "steps", "epoch"], default=None)
    p.add_argument("--save-steps", type=int, default=None)
    p.add_argument("--eval-steps", type=int, default=None)
    p.add_argument("--logging-steps", type=int, default=None)
    p.add_argument("--lora-r", type=int, default=None)
    p.add_argument("--lora-alpha", type=int, default=None)
    p.add_argument("--torch-dtype", choices=["bfloat16", "float16", "float32"], default=None)
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
    p.add_argument("--output-dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corpus", default=None, help="text file, one document per line (default: demo dialogues)")
    p.add_argument("--warmup-steps", type=int, default=200, help="causal-LM warm-up steps (0: random weights)")


@command("make-tiny-model", _tiny_args)
def run_make_tiny_model(args: argparse.Namespace) -> int:
    """Write a tiny Llama-architecture model with a locally trained tokenizer (demo, tests)."""
    from dlm.tiny_model import make_tiny_model

    out = make_tiny_model(args.output_dir, seed=args.seed, corpus=args.corpus, warmup_steps=args.warmup_steps)
    print(f"wrote tiny model to {out}")
    return 0


# ----------------------------------------------------------------------------- design


def _design_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="demo", help="profile name in configs/profiles/ or a YAML path")
    p.add_argument("--stage", default="04_train_dpo", choices=["03_prepare", "04_train_dpo", "06_evaluate"],
                   help="whose arm list to show (03 may prepare more arms than 04 trains)")


@command("design", _design_args)
def run_design(args: argparse.Namespace) -> int:
    """Print a profile's design: datasets and runs with rows, raters, ESS, Σw, steps, epochs; the judge pairs."""
    from dlm import experiment

    design = experiment.load_design(args.profile, args.stage)
    print(experiment.format_design(design, experiment.summarise(design)))
    return 0


# ----------------------------------------------------------------------------- questions


def _questions_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--constitution-path", default="constitution.txt")
    p.add_argument("--output-dir", default="artifacts/questions")
    p.add_argument("--question-model", default="gpt-4o-mini")
    p.add_argument("--backend", default="openai", choices=["openai", "hf", "vllm", "template"],
                   help="template: deterministic, offline, no model")
    p.add_argument("--base-url", default=None, help="any OpenAI-compatible server (vLLM, Ollama, llama.cpp)")
    p.add_argument("--n-questions", type=int, default=10)
    p.add_argument("--num-workers", type=int, default=16, help="requests in flight (openai) or batch size (hf)")
    p.add_argument("--start-clause", type=int, default=None, help="1-based, inclusive")
    p.add_argument("--end-clause", type=int, default=None, help="1-based, inclusive")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per API request")
    p.add_argument("--cache-dir", default=None, help="reply cache (default: OUTPUT_DIR/.cache)")
    p.add_argument("--force", action="store_true",
                   help="replace questions OUTPUT_DIR holds from other settings (default: stop and name them)")
    _retry_args(p)


def _retry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-retries", type=int, default=4,
                   help="retries of one API request on rate limits, server errors and timeouts (with backoff)")


@command("questions", _questions_args)
def run_questions(args: argparse.Namespace) -> int:
    """Write N evaluation questions per constitution clause (one file per clause, resumable)."""
    from dlm import llm
    from dlm.questions import generate_questions

    llm.DEFAULT_TIMEOUT, llm.DEFAULT_MAX_RETRIES = args.timeout, args.max_retries
    summary = generate_questions(args.constitution_path, args.output_dir, backend=args.backend,
                                 model=args.question_model, n_questions=args.n_questions,
                                 num_workers=args.num_workers, start_clause=args.start_clause,
                                 end_clause=args.end_clause, temperature=args.temperature, seed=args.seed,
                                 base_url=args.base_url, cache_dir=args.cache_dir, progress=True, force=args.force)
    usage = summary["runs"][-1].get("usage") or {}
    total = summary.get("usage") or {}
    cost = f", ${total['cost_usd']:.4f} estimated" if total.get("cost_usd") is not None else ""
    print(f"questions: {summary['written']} clause(s) written, {summary['skipped']} already complete; "
          f"{usage.get('requests', 0)} requests, {usage.get('cache_hits', 0)} cached (folder total: "
          f"{total.get('requests', 0)} requests, {total.get('prompt_tokens', 0)}+{total.get('completion_tokens', 0)} "
          f"tokens{cost}); wrote {args.output_dir}")
    return 0


# ----------------------------------------------------------------------------- evaluate


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--questions-dir", default="artifacts/questions")
    p.add_argument("--model-a", default=None)
    p.add_argument("--model-b", default=None)
    p.add_argument("--models", nargs="+", default=None, help="two or more models; every pair is compared")
    p.add_argument("--output", default="artifacts/evaluations/compare.jsonl")
    p.add_argument("--judge-model", default="gpt-4o-mini")
    p.add_argument("--judge-models", nargs="+", default=None, help="several judges: a verdict each plus the majority")
    p.add_argument("--use-hf-judge", action="store_true", help="judge with a local Hugging Face model (log-probs)")
    p.add_argument("--judge-base-url", default=None, help="any OpenAI-compatible server for the judge")
    p.add_argument("--answer-backend", default="hf", choices=["hf", "openai", "vllm"],
                   help="how the evaluated models answer (openai: models served by --answer-base-url)")
    p.add_argument("--answer-base-url", default=None)
    orders = p.add_mutually_exclusive_group()
    orders.add_argument("--both-orders", dest="both_orders", action="store_true", default=True)
    orders.add_argument("--single-order", dest="both_orders", action="store_false")
    p.add_argument("--questions-per-clause", type=int, default=None)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--primary", default=None, help="MODEL_A:MODEL_B, the comparison declared in advance")
    p.add_argument("--replicates", action="store_true",
                   help="models named ARM-rR-sS are replicate runs: judge matched replicates of each pair of "
                        "arms (plus base against every run) and pool them per arm pair")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per API request")
    _retry_args(p)
    _judge_args(p)


def _judge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge-backend", default=None, choices=["openai", "hf", "vllm", "oracle"],
                   help="default openai (hf with --use-hf-judge); oracle: the generated sample's own rule, "
                        "--judge-model oracle:GROUP with --oracle-spec")
    p.add_argument("--oracle-spec", default=None, help="SAMPLE/oracle_spec.json written by `dlm synth` (oracle judge)")
    p.add_argument("--judge-base-urls", nargs="+", default=None, metavar="MODEL=URL",
                   help="a server per judge (e.g. an open-weights judge on vLLM beside gpt-4o-mini)")
    p.add_argument("--calibration", default=None,
                   help="score each judge on this calibration set first (constitution_calibration.yaml)")
    p.add_argument("--min-calibration-accuracy", type=float, default=None,
                   help="stop before judging any model when a judge's both-orders calibration accuracy is below")


def _judge_choice(args: argparse.Namespace) -> tuple[str, dict[str, str] | None]:
    """The judge backend and the per-judge servers from the judge flags."""
    backend = args.judge_backend or ("hf" if args.use_hf_judge else "openai")
    urls = None
    if args.judge_base_urls:
        urls = {}
        for spec in args.judge_base_urls:
            model, sep, url = spec.partition("=")
            if not sep or not model or not url:
                raise DLMError(f"--judge-base-urls {spec}: use MODEL=URL")
            urls[model] = url
    return backend, urls


@command("evaluate", _evaluate_args)
def run_evaluate(args: argparse.Namespace) -> int:
    """Answer constitution questions with each model and judge every pair, clause by clause."""
    from dlm import llm
    from dlm.evaluation import evaluate, parse_model_specs

    llm.DEFAULT_TIMEOUT, llm.DEFAULT_MAX_RETRIES = args.timeout, args.max_retries
    models = args.models or [m for m in (args.model_a, args.model_b) if m]
    judges = args.judge_models or [args.judge_model]
    primary, pairs, arms = None, None, None
    if args.replicates:
        from dlm import replicates

        names = list(parse_model_specs(models))
        arms = replicates.arms_of(names)
        runs = [replicates.parse_run(n) for n in names if n != "base"]
        pairs = replicates.matched_pairs(list(dict.fromkeys(r.arm for r in runs)), runs,
                                         base="base" if "base" in names else None)
    if args.primary:
        if args.primary.count(":") != 1:
            raise DLMError("--primary takes MODEL_A:MODEL_B")
        primary = tuple(args.primary.split(":"))
    from dlm.agreement import question_writer, same_family_warning

    judge_backend, judge_base_urls = _judge_choice(args)
    warning = same_family_warning(question_writer(args.questions_dir), judges)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    summary = evaluate(args.questions_dir, models, args.output, judges,
                       judge_backend=judge_backend, judge_base_url=args.judge_base_url,
                       answer_backend=args.answer_backend, answer_base_url=args.answer_base_url,
                       both_orders=args.both_orders, questions_per_clause=args.questions_per_clause,
                       max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed,
                       primary=primary, pairs=pairs, arms=arms, oracle_spec=args.oracle_spec,
                       judge_base_urls=judge_base_urls, calibration=args.calibration,
                       min_calibration_accuracy=args.min_calibration_accuracy)
    for judge, c in (summary.get("calibration") or {}).items():
        print(f"calibration of {judge}: accuracy {c['accuracy']:.2f}, both orders {c['accuracy_both_orders']:.2f}, "
              f"ties {c['tie_rate']:.2f}, inconsistency {c['inconsistency_rate']:.2f} on {c['n_pairs']} known pairs")
    for name, pair in summary.get("arms", {}).items():
        label = f", conditional on {', '.join(pair['conditional_on'])}" if pair["conditional_on"] else ""
        print(f"{name} (pooled over {pair['runs']} replicate runs, {pair['units']} independent units{label}): "
              f"{_describe(pair)}")
    for name, pair in summary["pairs"].items():
        inc = pair["inconsistency_rate"]
        print(f"{name}: win rate {pair['win_rate']:.3f} [{pair['ci_low']:.3f}, {pair['ci_high']:.3f}] "
              f"({pair['wins']}W/{pair['ties']}T/{pair['losses']}L"
              + (f", inconsistency {inc:.2f})" if inc is not None else ")"))
    for role, per_model in summary.get("usage", {}).items():
        for model, u in per_model.items():
            cost = f", ${u['cost_usd']:.4f} estimated" if u.get("cost_usd") is not None else ""
            print(f"usage ({role[:-1]} {model}, all runs into this output): {u['requests']} requests, "
                  f"{u['prompt_tokens']}+{u['completion_tokens']} tokens{cost}, {u['failures']} failed")
    print(f"wrote {args.output}")
    return 0


# ----------------------------------------------------------------------------- judge-agreement


def _agreement_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="a prepared dataset with held-out rows (split: eval), e.g. full.jsonl")
    p.add_argument("--survey", default="prism-alignment/survey.jsonl")
    p.add_argument("--judge-model", default="gpt-4o-mini")
    p.add_argument("--judge-base-url", default=None, help="any OpenAI-compatible server for the judge")
    p.add_argument("--use-hf-judge", action="store_true", help="judge with a local Hugging Face model (log-probs)")
    p.add_argument("--judge-backend", default=None, choices=["openai", "hf", "vllm", "oracle"])
    p.add_argument("--oracle-spec", default=None, help="SAMPLE/oracle_spec.json (oracle judge)")
    p.add_argument("--max-pairs", type=int, default=None, help="judge at most this many held-out pairs (seeded sample)")
    p.add_argument("--panel-config", default="configs/panel_config.yaml", help="its quota attributes define the groups")
    p.add_argument("--output", default="artifacts/evaluations/agreement.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per API request")


@command("judge-agreement", _agreement_args)
def run_judge_agreement(args: argparse.Namespace) -> int:
    """Agreement of a judge with PRISM raters on held-out pairs, overall and per group."""
    from dlm import llm
    from dlm.agreement import judge_agreement
    from dlm.data import load_survey
    from dlm.sortition import load_panel_config

    llm.DEFAULT_TIMEOUT = args.timeout
    backend = args.judge_backend or ("hf" if args.use_hf_judge else "openai")
    attributes = [(a.name, a.column) for a in load_panel_config(args.panel_config).attributes]
    r = judge_agreement(args.dataset, load_survey(args.survey), args.judge_model, args.output, attributes,
                        judge_backend=backend, judge_base_url=args.judge_base_url, oracle_spec=args.oracle_spec,
                        max_pairs=args.max_pairs, seed=args.seed, batch_size=args.batch_size)
    print(f"{r.judge_model}: agreement with raters {r.agreement:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] on "
          f"{r.n_pairs} pairs from {r.n_raters} raters; kappa {r.kappa:.3f}, ties {r.tie_rate:.2f}, "
          f"inconsistency {r.inconsistency_rate:.2f}; wrote {args.output}")
    return 0


# ----------------------------------------------------------------------------- summarize


def _summarize_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--records", required=True, help="judgments JSONL written by `dlm evaluate --output`")
    p.add_argument("--output", required=True, help="summary JSON to write")
    p.add_argument("--primary", default=None, help="MODEL_A:MODEL_B (or ARM_A:ARM_B with --replicates), declared "
                                                   "in advance; the other comparisons are secondary")
    p.add_argument("--replicates", action="store_true",
                   help="models named ARM-rR-sS are replicate runs: pool them per arm pair, as evaluate --replicates")


@command("summarize", _summarize_args)
def run_summarize(args: argparse.Namespace) -> int:
    """Recompute every statistic from judgment records (no answering, no judging)."""
    from dlm.reanalysis import summarize

    primary = None
    if args.primary:
        if args.primary.count(":") != 1:
            raise DLMError("--primary takes MODEL_A:MODEL_B")
        primary = tuple(args.primary.split(":"))
    summary = summarize(args.records, args.output, primary, args.replicates)
    for name, pair in summary.get("arms", {}).items():
        print(f"{name}: {_describe(pair)}")
    for name, pair in summary["pairs"].items():
        print(f"{name}: {_describe(pair)}")
    print(f"wrote {args.output}")
    return 0


def _describe(result: dict) -> str:
    """One result as 'win rate X [lo, hi]', or flagged uninformative."""
    if result["uninformative"]:
        return f"win rate {result['win_rate']:.3f}, uninformative (all ties, all one way, or too few clauses)"
    return (f"win rate {result['win_rate']:.3f} [{result['ci_low']:.3f}, {result['ci_high']:.3f}], "
            f"p = {result['p_value']:.3g}")


# ----------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered step."""
    parser = argparse.ArgumentParser(prog="dlm", description="democratic-llm: sortition-aligned DPO on PRISM")
    parser.add_argument("--version", action="version", version=f"dlm {__version__}")
    sub = parser.add_subparsers(dest="step", required=True, metavar="step")
    for name, (add_args, run) in COMMANDS.items():
        p = sub.add_parser(name, help=(run.__doc__ or "").strip().splitlines()[0], description=run.__doc__)
        add_args(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one step; user errors become one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except DLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
