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


def _panel_args(p: argparse.ArgumentParser, algorithm_flag: str) -> None:
    p.add_argument("--panel-config", default="configs/panel_config.yaml")
    p.add_argument(algorithm_flag, dest="panel_algorithm", default="legacy", choices=["legacy", "leximin", "random"])
    p.add_argument("--num-panel-samples", type=int, default=2000, help="Monte Carlo panels (legacy, random)")
    p.add_argument("--panel-seed", type=int, default=0)
    p.add_argument("--leximin-time-limit", type=float, default=600.0, help="seconds; an uncertified level is an error")


def _sortition_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--survey", default="prism-alignment/survey.jsonl")
    _panel_args(p, "--algorithm")
    p.add_argument("--output", default="artifacts/sortition/probs.csv", help="user_id,probability[,stderr] CSV")
    p.add_argument("--panel-output", default=None, help="also write one drawn panel (user_id per line) here")


@command("sortition", _sortition_args)
def run_sortition(args: argparse.Namespace) -> int:
    """Selection probabilities for every pool member, and optionally one drawn panel."""
    from dlm.data import load_survey
    from dlm.sortition import build_pool, load_panel_config, select, write_selection

    config = load_panel_config(args.panel_config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pool = build_pool(load_survey(args.survey), config)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    sel = select(pool, args.panel_algorithm, args.num_panel_samples, args.panel_seed,
                 leximin_time_limit=args.leximin_time_limit, draw_panel=bool(args.panel_output), progress=True)
    write_selection(sel, args.output, args.panel_output, [args.survey, args.panel_config], args.num_panel_samples)
    s = sel.diagnostics["summary"]
    extra = f", failure rate {sel.diagnostics['failure_rate']:.3f}" if "failure_rate" in sel.diagnostics else ""
    print(f"{args.panel_algorithm}: pool {pool.n}, panel {pool.k}; π min {s['min']:.4f} max {s['max']:.4f} "
          f"gini {s['gini']:.3f} sum {s['sum']:.3f}{extra}; wrote {args.output}")
    return 0


# ----------------------------------------------------------------------------- prepare


def _prepare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", required=True, choices=["hard", "soft", "us_rep", "full", "random"],
                   help="random: a size-matched random panel from the same pool (control)")
    p.add_argument("--survey", default="prism-alignment/survey.jsonl")
    p.add_argument("--utterances", default="prism-alignment/utterances.jsonl")
    p.add_argument("--conversations", default=None, help="default: conversations.jsonl beside --utterances")
    _panel_args(p, "--panel-algorithm")
    p.add_argument("--output", required=True)
    p.add_argument("--dataset-format", default="chat", choices=["chat", "raw"])
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--min-score-gap", type=int, default=1)
    p.add_argument("--eval-ratio", type=float, default=0.0)
    p.add_argument("--split-by", default="interaction", choices=["interaction", "rater"])
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--weight-normalization", default="mean", choices=["mean", "per-rater", "none"])


@command("prepare", _prepare_args)
def run_prepare(args: argparse.Namespace) -> int:
    """Build one DPO preference dataset (JSONL + manifest)."""
    from dlm.preferences import PrepareOptions, prepare

    opts = PrepareOptions(
        mode=args.mode, panel_config=args.panel_config if args.mode in ("hard", "soft", "random") else None,
        panel_algorithm=args.panel_algorithm, panel_seed=args.panel_seed, num_panel_samples=args.num_panel_samples,
        leximin_time_limit=args.leximin_time_limit, dataset_format=args.dataset_format,
        system_prompt=args.system_prompt, min_score_gap=args.min_score_gap, eval_ratio=args.eval_ratio,
        split_by=args.split_by, split_seed=args.split_seed, weight_normalization=args.weight_normalization)
    data = prepare(args.survey, args.utterances, args.output, opts, args.conversations, progress=True)
    c = data.counts
    if c["raters_zero_probability"]:
        print(f"warning: {c['raters_zero_probability']} raters have estimated probability 0 "
              f"({c['dropped']['zero_weight_rows']} rows); raise --num-panel-samples or use leximin", file=sys.stderr)
    print(f"{args.mode}: {c['rows']} pairs from {c['raters']} raters (ESS {c['effective_sample_size']:.0f}); "
          f"wrote {args.output}")
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
    p.add_argument("--dataset", required=True, help="preference JSONL from `dlm prepare`")
    p.add_argument("--output-dir", required=True)
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


@command("questions", _questions_args)
def run_questions(args: argparse.Namespace) -> int:
    """Write N evaluation questions per constitution clause (one file per clause, resumable)."""
    from dlm import llm
    from dlm.questions import generate_questions

    llm.DEFAULT_TIMEOUT = args.timeout
    summary = generate_questions(args.constitution_path, args.output_dir, backend=args.backend,
                                 model=args.question_model, n_questions=args.n_questions,
                                 num_workers=args.num_workers, start_clause=args.start_clause,
                                 end_clause=args.end_clause, temperature=args.temperature, seed=args.seed,
                                 base_url=args.base_url, cache_dir=args.cache_dir, progress=True)
    usage = summary.get("usage") or {}
    print(f"questions: {summary['written']} clause(s) written, {summary['skipped']} already complete; "
          f"{usage.get('requests', 0)} requests, {usage.get('cache_hits', 0)} cached; wrote {args.output_dir}")
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


@command("evaluate", _evaluate_args)
def run_evaluate(args: argparse.Namespace) -> int:
    """Answer constitution questions with each model and judge every pair, clause by clause."""
    from dlm import llm
    from dlm.evaluation import evaluate, parse_model_specs

    llm.DEFAULT_TIMEOUT = args.timeout
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
    summary = evaluate(args.questions_dir, models, args.output, judges,
                       judge_backend="hf" if args.use_hf_judge else "openai", judge_base_url=args.judge_base_url,
                       answer_backend=args.answer_backend, answer_base_url=args.answer_base_url,
                       both_orders=args.both_orders, questions_per_clause=args.questions_per_clause,
                       max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed,
                       primary=primary, pairs=pairs, arms=arms)
    for name, pair in summary.get("arms", {}).items():
        label = f", conditional on {', '.join(pair['conditional_on'])}" if pair["conditional_on"] else ""
        print(f"{name} (pooled over {pair['runs']} replicate runs, {pair['units']} independent units{label}): "
              f"{_describe(pair)}")
    for name, pair in summary["pairs"].items():
        inc = pair["inconsistency_rate"]
        print(f"{name}: win rate {pair['win_rate']:.3f} [{pair['ci_low']:.3f}, {pair['ci_high']:.3f}] "
              f"({pair['wins']}W/{pair['ties']}T/{pair['losses']}L"
              + (f", inconsistency {inc:.2f})" if inc is not None else ")"))
    print(f"wrote {args.output}")
    return 0


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
