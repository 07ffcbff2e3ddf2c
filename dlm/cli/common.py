"""Shared pieces of the command line: the command registry and option groups used by several steps."""

from __future__ import annotations

import argparse
import sys

from collections.abc import Callable

from dlm import paths
from dlm.errors import DLMError
from dlm.llm import batch_api
from dlm.io import non_negative_float, non_negative_int, positive_float, positive_int, share_below_one

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, add_args: Callable[[argparse.ArgumentParser], None]):
    """Register `run` as the handler of subcommand `name`."""
    def wrap(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (add_args, run)
        return run
    return wrap


class ProjectPath(str):
    """A default path written relative to the project root; `resolve_defaults` makes it absolute after parsing.

    Values a user types are plain strings and stay relative to the working directory.
    """


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Resolve every default ProjectPath against the project root (`artifacts/…` against the artifacts root)."""
    for name, value in vars(args).items():
        if isinstance(value, ProjectPath):
            setattr(args, name, paths.resolve(value))
    return args


class DeprecatedAlias(argparse.Action):
    """Store like the canonical option, with a warning naming it (old spellings keep working)."""

    def __init__(self, *args, canonical: str = "", **kwargs) -> None:
        self.canonical = canonical
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"warning: {option_string} is deprecated; use {self.canonical}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def panel_args(p: argparse.ArgumentParser, algorithm_alias: bool = False) -> None:
    """Panel options shared by sortition and prepare: one spelling each (`--panel-algorithm`)."""
    algorithms = ["legacy", "leximin", "random"]
    p.add_argument("--panel-config", default=ProjectPath("configs/panel_config.yaml"),
                   help="quotas, panel size and locale (YAML; default: %(default)s in the project)")
    p.add_argument("--panel-algorithm", dest="panel_algorithm", default="legacy", choices=algorithms,
                   help="selection algorithm: legacy (Sortition Foundation, Monte Carlo), leximin (exact), random")
    if algorithm_alias:  # the seed's `dlm sortition --algorithm`
        p.add_argument("--algorithm", dest="panel_algorithm", choices=algorithms, action=DeprecatedAlias,
                       canonical="--panel-algorithm", help="deprecated spelling of --panel-algorithm (default: legacy)")
    p.add_argument("--num-panel-samples", type=positive_int, default=2000, help="Monte Carlo panels (legacy, random)")
    p.add_argument("--panel-seed", type=non_negative_int, default=0, help="seed of the drawn panel and the Monte Carlo")
    p.add_argument("--leximin-time-limit", type=positive_float, default=600.0, help="seconds; an uncertified level is an error")


def split_args(p: argparse.ArgumentParser) -> None:
    """The held-out set: the same flags and defaults in `sortition` and `prepare`, so both see one pool."""
    p.add_argument("--eval-ratio", type=share_below_one, default=0.0, help="share of raters (or interactions) held out")
    p.add_argument("--split-by", default="rater", choices=["rater", "interaction"],
                   help="rater (default): a stratified set of raters held out before sortition; interaction: the "
                        "older split, raters on both sides")
    p.add_argument("--split-seed", type=non_negative_int, default=0, help="seed of the held-out split")


def profile_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--profile", default=None, help="take every setting from this profile's design (a name in "
                   "configs/profiles/ or a YAML path; default: none, flags only)")
    # dest is not `run`: the parser keeps each step's handler there
    p.add_argument("--run", dest="run_name", default=None,
                   help=f"the {what} to run, named as `python -m dlm design` prints it (with --profile; default: none)")


def retry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-retries", type=non_negative_int, default=4,
                   help="retries of one API request on rate limits, server errors and timeouts (with backoff)")


def batch_api_args(p: argparse.ArgumentParser) -> None:
    """The OpenAI Batch API flags shared by questions and evaluate."""
    p.add_argument("--openai-batch", action="store_true",
                   help="send the openai requests through the Batch API (half price, results within 24 h; a rerun "
                        "after a kill resumes the same batch)")
    p.add_argument("--batch-poll-seconds", type=positive_float, default=30.0, help="seconds between batch status checks")
    p.add_argument("--batch-max-wait", type=non_negative_float, default=0.0,
                   help="stop after waiting this many seconds for a batch (rerun to resume it); 0: wait until it ends")
    p.add_argument("--batch-max-requests", type=int, default=batch_api.MAX_REQUESTS,
                   help="requests per batch at most (the rest go in further batches, one after another)")
    p.add_argument("--batch-max-mb", type=float, default=batch_api.MAX_BYTES / 2**20,
                   help="MB of request JSONL per batch at most (OpenAI's cap is 200)")
    p.add_argument("--batch-max-tokens", type=int, default=batch_api.MAX_TOKENS,
                   help="enqueued tokens per batch at most (prompt estimate + max_tokens; your model's and tier's "
                        "batch queue limit)")


def set_batch_api(args: argparse.Namespace) -> None:
    """Apply the Batch API flags (module settings, as --timeout does for requests)."""
    batch_api.POLL_SECONDS, batch_api.MAX_WAIT = args.batch_poll_seconds, args.batch_max_wait
    for name in ("batch_max_requests", "batch_max_mb", "batch_max_tokens"):
        if getattr(args, name) <= 0:
            raise DLMError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    batch_api.MAX_REQUESTS, batch_api.MAX_TOKENS = args.batch_max_requests, args.batch_max_tokens
    batch_api.MAX_BYTES = int(args.batch_max_mb * 2**20)


def describe(result: dict) -> str:
    """One result as 'win rate X [lo, hi]', or flagged uninformative."""
    if result["uninformative"]:
        return f"win rate {result['win_rate']:.3f}, uninformative (all ties, all one way, or too few clauses)"
    units = f", {result['units']} independent units of trained models" if result.get("units") else ""
    return (f"win rate {result['win_rate']:.3f} [{result['ci_low']:.3f}, {result['ci_high']:.3f}], "
            f"p = {result['p_value']:.3g}; interval {result.get('scope') or 'conditional on the trained models'}"
            f"{units}, questions clustered by clause")
