"""Steps that evaluate: questions, evaluate, judge-agreement, summarize."""

from __future__ import annotations

import argparse
import sys

from dlm.arms import replicates
from dlm.cli.common import ProjectPath, batch_api_args, command, describe, retry_args, set_batch_api
from dlm.data.prism import load_survey
from dlm.errors import DLMError
from dlm.judging.agreement import judge_agreement, question_writer, same_family_warning
from dlm.judging.evaluation import MODES, evaluate, parse_model_specs
from dlm.judging.listwise import rank_summary, rankings_path
from dlm.judging.questions import generate_questions
from dlm.llm import backends as llm
from dlm.sortition import load_panel_config
from dlm.io import read_jsonl, write_json_atomic
from dlm.stats.reanalysis import summarize
from dlm.io import check_outputs, non_negative_float, non_negative_int, positive_float, positive_int, probability


# ----------------------------------------------------------------------------- questions


def _questions_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--constitution-path", default=ProjectPath("constitution.txt"), help="clauses, one per line")
    p.add_argument("--output-dir", default=ProjectPath("artifacts/questions"), help="folder for clause_XX.json files")
    p.add_argument("--question-model", default="gpt-4o-mini", help="the model that writes questions")
    p.add_argument("--backend", default="openai", choices=["openai", "hf", "vllm", "template"],
                   help="template: deterministic, offline, no model")
    p.add_argument("--base-url", default=None,
                   help="any OpenAI-compatible server (vLLM, Ollama, llama.cpp; default: api.openai.com)")
    p.add_argument("--n-questions", type=positive_int, default=10, help="questions per clause")
    p.add_argument("--num-workers", type=positive_int, default=16, help="requests in flight (openai) or batch size (hf)")
    p.add_argument("--start-clause", type=positive_int, default=None, help="first clause, 1-based, inclusive (default: the first)")
    p.add_argument("--end-clause", type=positive_int, default=None, help="last clause, 1-based, inclusive (default: the last)")
    p.add_argument("--temperature", type=non_negative_float, default=0.7, help="sampling temperature of the question writer")
    p.add_argument("--seed", type=non_negative_int, default=0, help="sampling seed")
    p.add_argument("--timeout", type=positive_float, default=60.0, help="seconds per API request")
    p.add_argument("--cache-dir", default=None, help="reply cache (default: OUTPUT_DIR/.cache)")
    p.add_argument("--force", action="store_true",
                   help="replace questions OUTPUT_DIR holds from other settings (default: stop and name them)")
    retry_args(p)
    batch_api_args(p)


@command("questions", _questions_args)
def run_questions(args: argparse.Namespace) -> int:
    """Write N evaluation questions per constitution clause (one file per clause, resumable)."""
    check_outputs({"--output-dir": args.output_dir, "--cache-dir": args.cache_dir},
                  {"--constitution-path": args.constitution_path}, folders=("--output-dir", "--cache-dir"))
    llm.DEFAULT_TIMEOUT, llm.DEFAULT_MAX_RETRIES = args.timeout, args.max_retries
    set_batch_api(args)
    summary = generate_questions(args.constitution_path, args.output_dir, backend=args.backend,
                                 model=args.question_model, n_questions=args.n_questions,
                                 num_workers=args.num_workers, start_clause=args.start_clause,
                                 end_clause=args.end_clause, temperature=args.temperature, seed=args.seed,
                                 base_url=args.base_url, cache_dir=args.cache_dir, progress=True, force=args.force,
                                 openai_batch=args.openai_batch)
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
    p.add_argument("--questions-dir", default=ProjectPath("artifacts/questions"), help="clause files from `dlm questions`")
    p.add_argument("--model-a", default=None, help="first model, NAME=PATH or a path/Hub id (default: none; or --models)")
    p.add_argument("--model-b", default=None, help="second model, compared with --model-a (default: none)")
    p.add_argument("--models", nargs="+", default=None,
                   help="two or more models; every pair is compared (default: --model-a and --model-b)")
    p.add_argument("--output", default=ProjectPath("artifacts/evaluations/compare.jsonl"),
                   help="judgments JSONL; summaries are written beside it")
    p.add_argument("--judge-model", default="gpt-4o-mini", help="the judge")
    p.add_argument("--judge-models", nargs="+", default=None,
                   help="several judges: a verdict each plus the majority (default: --judge-model alone)")
    p.add_argument("--use-hf-judge", action="store_true", help="judge with a local Hugging Face model (log-probs)")
    p.add_argument("--judge-base-url", default=None,
                   help="any OpenAI-compatible server for the judge (default: api.openai.com)")
    p.add_argument("--answer-backend", default="hf", choices=["hf", "openai", "vllm"],
                   help="how the evaluated models answer (openai: models served by --answer-base-url)")
    p.add_argument("--answer-base-url", default=None,
                   help="OpenAI-compatible server of the evaluated models (default: api.openai.com)")
    orders = p.add_mutually_exclusive_group()
    orders.add_argument("--both-orders", dest="both_orders", action="store_true", default=True,
                        help="judge each pair in both orders; a win needs both (default)")
    orders.add_argument("--single-order", dest="both_orders", action="store_false",
                        help="judge each pair in one order only")
    p.add_argument("--questions-per-clause", type=positive_int, default=None, help="use at most this many (default: all)")
    p.add_argument("--max-new-tokens", type=positive_int, default=256, help="answer length budget, the same for every model")
    p.add_argument("--batch-size", type=positive_int, default=8, help="questions answered per batch (hf)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of answering and judging")
    p.add_argument("--primary", default=None,
                   help="MODEL_A:MODEL_B, the comparison declared in advance (default: none; all secondary)")
    p.add_argument("--replicates", action="store_true",
                   help="models named ARM-rR-sS are replicate runs: judge matched replicates of each pair of "
                        "arms (plus base against every run) and pool them per arm pair")
    p.add_argument("--mode", default="pairwise", choices=list(MODES),
                   help="pairwise (every pair judged), listwise (every model's answer ranked at once; records in "
                        "OUTPUT_STEM.rankings.jsonl) or both, compared side by side (default: pairwise)")
    p.add_argument("--list-orders", type=positive_int, default=2,
                   help="listwise: display orders per question, a seeded balanced rotation (default: 2)")
    p.add_argument("--timeout", type=positive_float, default=60.0, help="seconds per API request")
    p.add_argument("--allow-partial", action="store_true",
                   help="judge the finished clauses of a questions folder whose run failed or is unfinished (default: "
                        "refuse it); the summary's partial_questions says what was missing")
    retry_args(p)
    batch_api_args(p)
    _judge_args(p)


def _judge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge-backend", default=None, choices=["openai", "hf", "vllm", "oracle"],
                   help="default openai (hf with --use-hf-judge); oracle: the generated sample's own rule, "
                        "--judge-model oracle:GROUP with --oracle-spec")
    p.add_argument("--oracle-spec", default=None,
                   help="SAMPLE/oracle_spec.json written by `dlm synth` (oracle judge; default: none)")
    p.add_argument("--judge-base-urls", nargs="+", default=None, metavar="MODEL=URL",
                   help="a server per judge (e.g. an open-weights judge on vLLM beside gpt-4o-mini; default: "
                        "--judge-base-url for every judge)")
    p.add_argument("--calibration", default=None,
                   help="score each judge on this calibration set first (constitution_calibration.yaml; default: "
                        "no calibration)")
    p.add_argument("--min-calibration-accuracy", type=probability, default=None,
                   help="stop before judging any model when a judge's both-orders calibration accuracy is below "
                        "(default: report only)")


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
    check_outputs({"--output": args.output}, {"--questions-dir": args.questions_dir, "--calibration": args.calibration,
                                              "--oracle-spec": args.oracle_spec})
    llm.DEFAULT_TIMEOUT, llm.DEFAULT_MAX_RETRIES = args.timeout, args.max_retries
    set_batch_api(args)
    models = args.models or [m for m in (args.model_a, args.model_b) if m]
    judges = args.judge_models or [args.judge_model]
    primary, pairs, arms = None, None, None
    if args.replicates:
        names = list(parse_model_specs(models))
        arms = replicates.arms_of(names)
        runs = [replicates.parse_run(n) for n in names if n != "base"]
        pairs = replicates.matched_pairs(list(dict.fromkeys(r.arm for r in runs)), runs,
                                         base="base" if "base" in names else None)
    if args.primary:
        if args.primary.count(":") != 1:
            raise DLMError("--primary takes MODEL_A:MODEL_B")
        primary = tuple(args.primary.split(":"))

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
                       min_calibration_accuracy=args.min_calibration_accuracy, openai_batch=args.openai_batch,
                       allow_partial=args.allow_partial, mode=args.mode, list_orders=args.list_orders)
    if summary.get("partial_questions"):
        print(f"warning: judged a partial questions folder ({summary['partial_questions']})", file=sys.stderr)
    for judge, c in (summary.get("calibration") or {}).items():
        print(f"calibration of {judge}: accuracy {c['accuracy']:.2f}, both orders {c['accuracy_both_orders']:.2f}, "
              f"ties {c['tie_rate']:.2f}, inconsistency {c['inconsistency_rate']:.2f} on {c['n_pairs']} known pairs")
    for name, pair in summary.get("arms", {}).items():
        label = f", conditional on {', '.join(pair['conditional_on'])}" if pair["conditional_on"] else ""
        print(f"{name} (pooled over {pair['runs']} replicate runs, {pair['units']} independent units{label}): "
              f"{describe(pair)}")
    for name, pair in summary["pairs"].items():
        inc = pair["inconsistency_rate"]
        print(f"{name}: win rate {pair['win_rate']:.3f} [{pair['ci_low']:.3f}, {pair['ci_high']:.3f}] "
              f"({pair['wins']}W/{pair['ties']}T/{pair['losses']}L"
              + (f", inconsistency {inc:.2f})" if inc is not None else ")"))
    if "listwise" in summary:
        print_rankings(summary["listwise"])
        print(f"wrote {rankings_path(args.output)}")
    side = summary.get("listwise_vs_pairwise")
    if side and side["spearman"] is not None:
        print(f"Bradley–Terry vs Plackett–Luce order: Spearman {side['spearman']:.3f}, Kendall {side['kendall']:.3f}")
    for role, per_model in summary.get("usage", {}).items():
        for model, u in per_model.items():
            cost = f", ${u['cost_usd']:.4f} estimated" if u.get("cost_usd") is not None else ""
            print(f"usage ({role[:-1]} {model}, all runs into this output): {u['requests']} requests, "
                  f"{u['prompt_tokens']}+{u['completion_tokens']} tokens{cost}, {u['failures']} failed")
    if args.mode != "listwise":
        print(f"wrote {args.output}")
    return 0


def print_rankings(r: dict) -> None:
    """Plackett–Luce worths, position bias and malformed replies of a listwise summary, one line each."""
    for m in r["models"]:
        print(f"{m['model']}: Plackett–Luce worth {m['worth']:.3f} [{m['worth_low']:.3f}, {m['worth_high']:.3f}], "
              f"rank {m['rank']} [{m['rank_low']:g}, {m['rank_high']:g}], Borda {m['borda']:.2f}")
    first = r["position_bias"][0]
    print(f"listwise: {r['n_rankings']} rankings of {r['n_questions']} questions; answer shown first ranked first "
          f"{first['share']:.3f} [{first['low']:.3f}, {first['high']:.3f}]; Kemeny ({r['kemeny']['method']}): "
          + " > ".join(r["kemeny"]["order"]))
    faults = (r.get("run") or {}).get("malformed_replies") or {}
    if any(faults.values()):
        print("malformed rankings asked again: " + ", ".join(f"{n} {c}" for c, n in faults.items() if n))


# ----------------------------------------------------------------------------- judge-agreement


def _agreement_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="a prepared dataset with held-out rows (split: eval), e.g. full.jsonl")
    p.add_argument("--survey", default=ProjectPath("prism-alignment/survey.jsonl"), help="PRISM survey.jsonl")
    p.add_argument("--judge-model", default="gpt-4o-mini", help="the judge")
    p.add_argument("--judge-base-url", default=None,
                   help="any OpenAI-compatible server for the judge (default: api.openai.com)")
    p.add_argument("--use-hf-judge", action="store_true", help="judge with a local Hugging Face model (log-probs)")
    p.add_argument("--judge-backend", default=None, choices=["openai", "hf", "vllm", "oracle"],
                   help="default openai (hf with --use-hf-judge)")
    p.add_argument("--oracle-spec", default=None, help="SAMPLE/oracle_spec.json (oracle judge; default: none)")
    p.add_argument("--max-pairs", type=positive_int, default=None,
                   help="judge at most this many held-out pairs (seeded sample; default: all)")
    p.add_argument("--panel-config", default=ProjectPath("configs/panel_config.yaml"), help="its quota attributes define the groups")
    p.add_argument("--output", default=ProjectPath("artifacts/evaluations/agreement.json"), help="agreement report JSON")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the pair sample and the judge")
    p.add_argument("--batch-size", type=positive_int, default=16, help="pairs judged per batch (hf)")
    p.add_argument("--timeout", type=positive_float, default=60.0, help="seconds per API request")


@command("judge-agreement", _agreement_args)
def run_judge_agreement(args: argparse.Namespace) -> int:
    """Agreement of a judge with PRISM raters on held-out pairs, overall and per group."""
    check_outputs({"--output": args.output}, {"--dataset": args.dataset, "--survey": args.survey,
                                              "--panel-config": args.panel_config, "--oracle-spec": args.oracle_spec})
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
                                                   "in advance; the other comparisons are secondary (default: none)")
    p.add_argument("--replicates", action="store_true",
                   help="models named ARM-rR-sS are replicate runs: pool them per arm pair, as evaluate --replicates")


@command("summarize", _summarize_args)
def run_summarize(args: argparse.Namespace) -> int:
    """Recompute every statistic from judgment records (no answering, no judging)."""
    check_outputs({"--output": args.output}, {"--records": args.records})
    primary = None
    if args.primary:
        if args.primary.count(":") != 1:
            raise DLMError("--primary takes MODEL_A:MODEL_B")
        primary = tuple(args.primary.split(":"))
    summary = summarize(args.records, args.output, primary, args.replicates)
    for name, pair in summary.get("arms", {}).items():
        print(f"{name}: {describe(pair)}")
    for name, pair in summary["pairs"].items():
        print(f"{name}: {describe(pair)}")
    print(f"wrote {args.output}")
    return 0


# ----------------------------------------------------------------------------- rank


def _rank_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--records", required=True, help="rankings JSONL written by `dlm evaluate --mode listwise|both`")
    p.add_argument("--output", required=True, help="summary JSON to write")
    p.add_argument("--primary", default=None, help="MODEL_A:MODEL_B, declared in advance (default: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the clause bootstrap and held-out folds (evaluate's)")
    p.add_argument("--n-boot", type=int, default=1000, help="clause-bootstrap replicates (default: 1000)")


@command("rank", _rank_args)
def run_rank(args: argparse.Namespace) -> int:
    """Recompute the rank aggregation (Plackett–Luce, Borda, Copeland, Kemeny, Mallows, IIA) from ranking records."""
    primary = None
    if args.primary:
        if args.primary.count(":") != 1:
            raise DLMError("--primary takes MODEL_A:MODEL_B")
        primary = tuple(args.primary.split(":"))
    try:
        rows = read_jsonl(args.records)
    except FileNotFoundError:
        raise DLMError(f"no records at {args.records}; run `python -m dlm evaluate --mode listwise` first") from None
    summary = rank_summary(rows, primary, args.seed, args.n_boot)
    write_json_atomic(args.output, summary)
    print_rankings(summary)
    print(f"wrote {args.output}")
    return 0
