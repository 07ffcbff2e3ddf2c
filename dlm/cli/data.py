"""Steps that build data: explore, synth, prepare, design (sortition has a module of its own: it loads no model)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from dlm.cli.common import ProjectPath, command, panel_args, profile_args, split_args
from dlm.data.prism import format_value_counts, load_survey, value_counts
from dlm.data.synth import generate_sample
from dlm.errors import DLMError
from dlm.experiment import designs as experiment, mde, runs
from dlm.experiment.profiles import load_profile
from dlm.preferences.build import DEPRECATED_MODES, PANEL_MODES, PrepareOptions, prepare, MODES
from dlm.io import check_outputs, non_negative_int


# ----------------------------------------------------------------------------- explore


def _explore_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--survey", default=ProjectPath("prism-alignment/survey.jsonl"), help="PRISM survey.jsonl")
    p.add_argument("--columns", default="study_locale,gender,age,education,ethnicity",
                   help="comma-separated columns; a nested one by bare name means its `simplified` field")


@command("explore", _explore_args)
def run_explore(args: argparse.Namespace) -> int:
    """Print unique values and counts per survey column."""
    survey = load_survey(args.survey)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    print(format_value_counts(value_counts(survey, columns)), end="")
    return 0


# ----------------------------------------------------------------------------- synth


def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", default="demo", choices=["demo", "paper"], help="demo: short conversations; paper: real sizes")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the generated sample")
    p.add_argument("--output", default=ProjectPath("artifacts/sample"), help="folder for survey/conversations/utterances.jsonl")


@command("synth", _synth_args)
def run_synth(args: argparse.Namespace) -> int:
    """Generate a PRISM-shaped synthetic sample (marked SYNTHETIC)."""
    check_outputs({"--output": args.output}, folders=("--output",))
    counts = generate_sample(args.output, args.scale, args.seed)
    print(f"wrote synthetic PRISM-shaped sample to {args.output}: {counts}")
    return 0


# ----------------------------------------------------------------------------- prepare


def _prepare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", default=None, choices=[*MODES, "random"],
                   help="how the dataset is built (required without --profile); size_matched: a size-matched "
                        "no-quota panel from the same pool (control; `random` is its deprecated name); "
                        "soft_resampled: soft rows resampled to the hard panel's size (default: none)")
    profile_args(p, "dataset (or run)")
    p.add_argument("--survey", default=ProjectPath("prism-alignment/survey.jsonl"), help="PRISM survey.jsonl")
    p.add_argument("--utterances", default=ProjectPath("prism-alignment/utterances.jsonl"),
                   help="PRISM utterances.jsonl")
    p.add_argument("--conversations", default=None, help="default: conversations.jsonl beside --utterances")
    panel_args(p)
    p.add_argument("--output", default=None, help="dataset JSONL (required without --profile; default with "
                   "--profile: the design's path)")
    p.add_argument("--dataset-format", default="chat", choices=["chat", "raw"],
                   help="chat: TRL conversational rows; raw: plain-text template")
    p.add_argument("--system-prompt", default=None, help="system message put before every prompt (default: none)")
    p.add_argument("--min-score-gap", type=non_negative_int, default=1,
                   help="smallest rating difference between chosen and rejected (0-100 scale)")
    split_args(p)
    p.add_argument("--weight-normalization", default="mean", choices=["mean", "per-rater", "none"],
                   help="soft modes: scale weights to mean 1, share π among a rater's rows, or leave them")
    p.add_argument("--allow-unlinked", action="store_true",
                   help="drop utterances whose user or conversation is unknown (counted in the manifest) "
                        "instead of stopping")


@command("prepare", _prepare_args)
def run_prepare(args: argparse.Namespace) -> int:
    """Build one DPO preference dataset (JSONL + manifest)."""
    if args.profile or args.run_name:
        return _prepare_from_design(args)
    if not args.mode or not args.output:
        raise DLMError("prepare needs --mode and --output (or --profile NAME --run DATASET)")
    if args.mode in DEPRECATED_MODES:
        print(f"warning: --mode {args.mode} is deprecated; use --mode {DEPRECATED_MODES[args.mode]}", file=sys.stderr)
    mode = DEPRECATED_MODES.get(args.mode, args.mode)
    check_outputs({"--output": args.output}, {
        "--survey": args.survey, "--utterances": args.utterances,
        "--conversations": args.conversations or Path(args.utterances).parent / "conversations.jsonl",
        "--panel-config": args.panel_config if mode in PANEL_MODES else None})
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
    if not (args.profile and args.run_name):
        raise DLMError("--profile and --run go together (run names as `python -m dlm design --profile NAME` prints them)")
    design = experiment.load_design(args.profile, "03_prepare")
    run, data, output = runs.prepare_run(design, args.run_name, args.output, args.allow_unlinked)
    return _prepared(run.dataset, data, output)


def _prepared(name: str, data, output) -> int:
    c = data.counts
    if c["raters_zero_probability"]:
        print(f"warning: {c['raters_zero_probability']} raters have estimated probability 0 "
              f"({c['dropped']['zero_weight_rows']} rows); raise --num-panel-samples or use leximin", file=sys.stderr)
    print(f"{name}: {c['rows']} pairs from {c['raters']} raters (ESS {c['effective_sample_size']:.0f}); "
          f"wrote {output}")
    return 0


# ----------------------------------------------------------------------------- design


def _design_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="demo", help="profile name in configs/profiles/ or a YAML path")
    p.add_argument("--stage", default="04_train_dpo", choices=["03_prepare", "04_train_dpo", "06_evaluate"],
                   help="whose arm list to show (03 may prepare more arms than 04 trains)")
    p.add_argument("--max-mde", type=float, default=None,
                   help="refuse when the primary's MDE exceeds this (win-rate points; inf for an exploratory run; "
                        "default: the profile's max_mde, else 0.15)")
    p.add_argument("--sample-scale", default=None, choices=["demo", "paper"],
                   help="count the datasets on a generated sample of this scale when the profile's PRISM folder is "
                        "absent (default: the profile's sample_scale)")


@command("design", _design_args)
def run_design(args: argparse.Namespace) -> int:
    """Print a profile's design (datasets, runs, both budgets, judge pairs) and every contrast's MDE; refuse an untestable primary."""
    profile = load_profile(args.profile)
    design = experiment.from_profile(profile, args.stage)
    if args.sample_scale:
        design = dataclasses.replace(design, sample_scale=args.sample_scale)
    if design.counted_locally():
        print(experiment.format_design(design, experiment.summarise(design)))
    else:
        print(experiment.format_design(design, []))
        print(f"(datasets not counted: no PRISM folder {design.prism_source}; `--sample-scale paper` counts them on "
              "a generated sample of PRISM's size)")
    result = mde.plan(profile, args.max_mde)
    print("\n" + "\n".join(result.lines()))
    if not result.ok:
        raise DLMError(result.refusal())
    return 0
