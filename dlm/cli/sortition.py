"""The sortition step: selection probabilities, a drawn panel and the remaining pool.

A module of its own so that `dlm sortition` imports the sortition code and nothing that loads a model.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from dataclasses import replace

from dlm.cli.common import ProjectPath, command, panel_args, split_args
from dlm.data.split import training_survey
from dlm.errors import DLMError
from dlm.io import check_outputs, output_lock, positive_int
from dlm.sortition import load_pool_source, select, write_selection


def _sortition_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--survey", "--pool", dest="survey", default=ProjectPath("prism-alignment/survey.jsonl"),
                   help="the pool: PRISM survey.jsonl (or its folder, or 'hub'), or any CSV/JSONL with an id column "
                        "and the quota columns (PRISM's locale and survey-only filters apply when their columns exist)")
    panel_args(p, algorithm_alias=True)
    p.add_argument("--output", default=ProjectPath("artifacts/sortition/probs.csv"), help="user_id,probability[,stderr] CSV")
    p.add_argument("--panel-output", default=None,
                   help="also write one drawn panel here (CSV, the input's own columns; default: not written)")
    p.add_argument("--remaining-output", default=None,
                   help="also write the pool minus the drawn panel here (CSV, the input's own columns; default: not "
                        "written)")
    p.add_argument("--id-column", default=None,
                   help="the pool's id column (default user_id; respondents.csv without one are numbered by row)")
    p.add_argument("--legacy-variant", default="stratification-app", choices=["stratification-app", "clamped"],
                   help="legacy's category ranking: (min - selected)/remaining as stratification-app computes it, "
                        "or clamped at 0 as the sortition-algorithms library does (default: %(default)s)")
    p.add_argument("--categories", default=None,
                   help="Sortition Foundation categories.csv (category,name,min,max, category,feature,min,max or "
                        "feature,value,min,max); "
                        "replaces --panel-config, needs --respondents and --panel-size (default: none)")
    p.add_argument("--respondents", default=None,
                   help="Sortition Foundation respondents.csv (one column per category; default: none)")
    p.add_argument("--panel-size", type=positive_int, default=None,
                   help="panel size (required with --categories; default: the config's panel_size)")
    split_args(p)


@command("sortition", _sortition_args)
def run_sortition(args: argparse.Namespace) -> int:
    """Selection probabilities for every pool member, and optionally one drawn panel and the remaining pool."""
    outputs = {"--output": args.output, "--panel-output": args.panel_output,
               "--remaining-output": args.remaining_output}
    check_outputs(outputs, {"--survey": args.survey, "--panel-config": None if args.categories else args.panel_config,
                            "--categories": args.categories, "--respondents": args.respondents})
    # One lock over every output for the whole run, taken before any work: a second run on any of
    # them stops at once (instead of both computing and one result being lost), and temp files a
    # killed run left beside each output are removed on taking it.
    with contextlib.ExitStack() as locks:
        for flag, path in outputs.items():
            if path:
                locks.enter_context(output_lock(path, f"sortition {flag}"))
        return _sortition(args)


def _sortition(args: argparse.Namespace) -> int:
    """The selection itself, once every output is locked."""
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
                 draw_panel=bool(args.panel_output or args.remaining_output), progress=True,
                 legacy_variant=args.legacy_variant)
    write_selection(sel, args.output, args.panel_output, source.inputs, args.num_panel_samples,
                    remaining_output=args.remaining_output)
    d = sel.diagnostics
    s = d.summary
    extra = f", failure rate {d.failure_rate:.3f}" if d.failure_rate is not None else ""
    print(f"{args.panel_algorithm}: pool {pool.n}, panel {pool.k}; π min {s.min:.4f} max {s.max:.4f} "
          f"gini {s.gini:.3f} sum {s.sum:.3f}{extra}; wrote {args.output}")
    return 0
