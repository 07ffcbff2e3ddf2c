"""A primary that can be tested, by construction: the MDE of every declared contrast and the cheapest design that meets `max_mde`.

Each declared arm contrast's minimum detectable effect comes from `dlm.stats.power.contrast_mde`
(the pooled estimator 06 reports, with draw effects shared by the seeds of one dataset). `dlm
design` and the preflight refuse a profile whose primary MDE is infinite or above its `max_mde`
(a top-level profile key, default 0.15 win-rate points; `.inf` marks an exploratory profile that
reports its MDEs and is never refused), and one whose primary interval is conditional on particular
trained models (one model of an arm: it compares models, not arms, however narrow it is). When refused, `dlm design` searches the designs with more
panel draws, more training seeds or more questions per clause, cheapest first by GPU-hours of the
bill (`dlm.experiment.bill`), and proposes the first that meets the limit.

Precision: `dlm design` simulates 1,000 repetitions (power's standard error 1.3 points at 80%),
which moves an MDE by about ±0.01 between seeds of the simulation; the repetitions are seeded,
so the printed numbers and the verdict are reproducible.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from pathlib import Path
from typing import Any

from dlm import paths
from dlm.errors import DLMError
from dlm.experiment import designs as experiment
from dlm.experiment.bill import estimate_bill
from dlm.experiment.profiles import notebook_params
from dlm.judging.questions import parse_constitution
from dlm.arms import replicates
from dlm.stats.pooling import ContrastDesign, contrast_design
from dlm.stats.power import PowerDesign, PowerResult, contrast_mde, power_at

DEFAULT_MAX_MDE = 0.15  # win-rate points: the smallest primary effect a confirmatory profile must detect
DESIGN_REPS = 1000  # simulation repetitions per MDE in `dlm design` and the preflight (see the module docstring)
SEARCH_DRAWS = 6  # the most panel draws the proposal considers
SEARCH_SEEDS = 5  # the most training seeds the proposal considers
SEARCH_QUESTIONS = (1, 2)
POWER = 0.8  # contrast_mde's default power
DRAW_SD, SEED_SD = 0.05, 0.03  # contrast_mde's assumed SDs (printed with the MDEs)  # multiples of the profile's questions per clause the proposal considers


@dataclasses.dataclass(frozen=True)
class ContrastPower:
    """One declared arm contrast's MDE under the design."""

    arm_a: str
    arm_b: str
    primary: bool
    result: PowerResult

    @property
    def mde(self) -> float:
        return self.result.mde

    @property
    def scope(self) -> str:
        """The interval's estimand in words (over draws and seeds / over seeds / conditional on …)."""
        d = self.result.design
        return contrast_design([a for a, _ in d.pairs], [b for _, b in d.pairs], d.drawn or None).scope

    @property
    def marginal(self) -> bool:
        """Whether the interval is over both arms' trained models (not conditional on some of them)."""
        return self.result.estimand == "marginal"

    def line(self) -> str:
        """`A:B (primary) MDE 0.131 (win rate 0.631), marginal interval over 3 units`."""
        r = self.result
        mde = f"{r.mde:.3f} (win rate {0.5 + r.mde:.3f})" if math.isfinite(r.mde) else "none (power 80% unreachable)"
        return (f"{self.arm_a}:{self.arm_b}{' (primary)' if self.primary else ''}: MDE {mde}; interval {self.scope}, "
                f"{r.units} independent units of trained models")


@dataclasses.dataclass(frozen=True)
class PowerPlan:
    """The MDE of every declared contrast, the profile's limit and, when refused, the cheapest design that meets it."""

    profile: str
    contrasts: tuple[ContrastPower, ...]
    max_mde: float
    panel_draws: int
    train_seeds: int
    questions_per_clause: int
    clauses: int
    gpu_hours: float
    proposal: dict[str, Any] | None = None  # keys → values, MDE, GPU-hours, API cost of the cheapest passing design

    @property
    def primary(self) -> ContrastPower | None:
        return next((c for c in self.contrasts if c.primary), None)

    @property
    def ok(self) -> bool:
        """The primary's interval is over both arms' models and its MDE within max_mde (always, when exploratory)."""
        p = self.primary
        return p is None or math.isinf(self.max_mde) or (p.marginal and p.mde <= self.max_mde)

    def refusal(self) -> str:
        """One line: why the profile is refused, which keys to change and the cheapest change found."""
        p = self.primary
        what = "infinite" if math.isinf(p.mde) else f"{p.mde:.3f}"
        if not p.marginal:  # a contrast of particular models says nothing about the arms, however narrow
            what += f" but only {p.scope} (an arm contrast needs two or more models of each arm)"
        fix = ""
        if self.proposal:
            keys = ", ".join(f"{k}: {v}" for k, v in self.proposal["keys"].items())
            fix = (f"; the cheapest change found: {keys} (MDE {self.proposal['mde']:.3f}, "
                   f"{self.proposal['gpu_hours']:.0f} GPU-hours instead of {self.gpu_hours:.0f})")
        return (f"profile {self.profile}: the primary {p.arm_a}:{p.arm_b} has MDE {what}, above max_mde "
                f"{self.max_mde:g} (R={self.panel_draws} panel draws, S={self.train_seeds} training seeds, "
                f"{self.clauses} clauses x {self.questions_per_clause} questions); raise panel_draws, train_seeds or "
                f"05_questions' n_questions{fix}, or set max_mde (or --max-mde) higher for an exploratory run")

    def lines(self) -> list[str]:
        """Plain lines for `dlm design` and the preflight."""
        limit = "exploratory (max_mde .inf): nothing is refused" if math.isinf(self.max_mde) else f"max_mde {self.max_mde:g}"
        out = [f"Power of every declared contrast (R={self.panel_draws} draws x S={self.train_seeds} seeds, "
               f"{self.clauses} clauses x {self.questions_per_clause} questions; assumed SDs: draw 0.05, seed 0.03, "
               f"clause 0.05; judge ties 10%, orders disagree on 35%; {DESIGN_REPS} simulated repetitions; {limit}):"]
        out += [f"  {c.line()}" for c in self.contrasts]
        if self.primary is not None:
            out.append(f"  verdict: {'the primary can be tested' if self.ok else 'refused (below)'}")
        return out


def max_mde(profile: dict[str, Any], override: float | None = None) -> float:
    """The profile's limit on the primary MDE: `override` (--max-mde), else its `max_mde` key, else 0.15."""
    value = override if override is not None else profile.get("max_mde", DEFAULT_MAX_MDE)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise DLMError(f"max_mde must be a number of win-rate points (or .inf for an exploratory profile), got "
                       f"{value!r}") from None
    if not value > 0:
        raise DLMError(f"max_mde must be positive (or .inf for an exploratory profile), got {value}")
    return value


def question_counts(profile: dict[str, Any]) -> tuple[int, int]:
    """(clauses, questions per clause) that 05 and 06 will use."""
    q, e = notebook_params(profile, "05_questions"), notebook_params(profile, "06_evaluate")
    clauses = parse_constitution(paths.resolve(str(q.get("constitution_path", "constitution.txt"))))
    start, end = int(q.get("start_clause") or 1), q.get("end_clause")  # 1-based, inclusive, as 05 reads them
    n = len(clauses[start - 1:int(end) if end else None])
    return n, int(e.get("questions_per_clause") or q.get("n_questions", 10))


@functools.lru_cache(maxsize=512)
def _mde(arm_a: str, arm_b: str, draws: int, seeds: int, clauses: int, questions: int, drawn: tuple[str, ...],
         both_orders: bool) -> PowerResult:
    # cached: the proposal search and the preflight ask for the same designs again
    return contrast_mde(arm_a, arm_b, draws, seeds, clauses, questions, drawn, draw_sd=DRAW_SD, seed_sd=SEED_SD,
                        both_orders=both_orders, reps=DESIGN_REPS)


def contrast_powers(profile: dict[str, Any], draws: int | None = None, seeds: int | None = None,
                    questions: int | None = None, only_primary: bool = False) -> tuple[ContrastPower, ...]:
    """The MDE of every declared arm contrast of 06 (primary first), optionally under other R, S or questions."""
    d = experiment.from_profile(profile, "06_evaluate")
    clauses, n_q = question_counts(profile)
    both = bool(notebook_params(profile, "06_evaluate").get("both_orders", True))
    contrasts = d.arm_contrasts()[:1] if only_primary else d.arm_contrasts()
    primary = d.primary_pair()
    return tuple(ContrastPower(a, b, (a, b) == primary, _mde(a, b, draws or d.panel_draws, seeds or d.train_seeds,
                                                              clauses, questions or n_q, tuple(d.drawn), both))
                 for a, b in contrasts)


def with_design(profile: dict[str, Any], draws: int, seeds: int, questions: int) -> dict[str, Any]:
    """A copy of the profile with R, S and questions per clause set (everywhere the notebooks read them)."""
    out = copy.deepcopy(profile)
    out["parameters"].update(panel_draws=draws, train_seeds=seeds)
    for nb, values in (out.get("notebooks") or {}).items():
        for key in ("panel_draws", "train_seeds", "questions_per_clause"):
            (values or {}).pop(key, None)
    out["notebooks"].setdefault("05_questions", {})
    out["notebooks"]["05_questions"] = {**(out["notebooks"]["05_questions"] or {}), "n_questions": questions}
    return out


def plan(profile: dict[str, Any], override: float | None = None, propose: bool = True) -> PowerPlan:
    """Every declared contrast's MDE, the verdict against max_mde and, when refused, the cheapest passing design."""
    limit = max_mde(profile, override)
    d = experiment.from_profile(profile, "06_evaluate")
    clauses, n_q = question_counts(profile)
    name = Path(str(profile.get("_path", "profile"))).stem
    result = PowerPlan(name, contrast_powers(profile), limit, d.panel_draws, d.train_seeds, n_q, clauses,
                       estimate_bill(profile).gpu_hours)
    if result.ok or not propose or result.primary is None:
        return result
    return dataclasses.replace(result, proposal=cheapest_change(profile, limit))


def cheapest_change(profile: dict[str, Any], limit: float) -> dict[str, Any] | None:
    """The design with more draws, seeds or questions whose primary MDE ≤ limit at the fewest GPU-hours (then API $).

    Candidates are screened by one power evaluation at the limit (the MDE is ≤ limit exactly when power
    there reaches 80%, with the same random numbers as the bisection); only the one chosen gets its MDE.
    """
    d = experiment.from_profile(profile, "06_evaluate")
    _, n_q = question_counts(profile)
    a, b = d.primary_pair()
    candidates = []
    for r in range(d.panel_draws, SEARCH_DRAWS + 1) if d.drawn else (d.panel_draws,):
        for s in range(d.train_seeds, SEARCH_SEEDS + 1):
            if not _primary_design(a, b, r, s, 1, 1, tuple(d.drawn)).estimand == "marginal":
                continue  # conditional on particular models at any number of questions
            for m in SEARCH_QUESTIONS:
                if (r, s, n_q * m) == (d.panel_draws, d.train_seeds, n_q):
                    continue
                bill = estimate_bill(with_design(profile, r, s, n_q * m))
                candidates.append((round(bill.gpu_hours, 6), round(bill.api_cost_usd, 6), r, s, n_q * m))
    clauses, _ = question_counts(profile)
    both = bool(notebook_params(profile, "06_evaluate").get("both_orders", True))
    for gpu_hours, cost, r, s, q in sorted(candidates):
        power = power_at(_power_design(a, b, r, s, clauses, q, tuple(d.drawn), both), limit, DESIGN_REPS)
        if power >= POWER:
            primary = contrast_powers(with_design(profile, r, s, q), only_primary=True)[0]
            if primary.mde > limit:  # the bisection's tolerance can land just above the limit
                continue
            keys = {k: v for k, v, old in (("panel_draws", r, d.panel_draws), ("train_seeds", s, d.train_seeds),
                                           ("n_questions", q, n_q)) if v != old}
            return {"keys": keys, "mde": primary.mde, "gpu_hours": gpu_hours, "api_usd": cost}
    return None


def _power_design(arm_a: str, arm_b: str, draws: int, seeds: int, clauses: int, questions: int,
                  drawn: tuple[str, ...], both_orders: bool = True) -> PowerDesign:
    """The PowerDesign `contrast_mde` simulates for one contrast (same defaults)."""
    runs = replicates.runs([arm_a, arm_b], draws, seeds, drawn=drawn)
    pairs = tuple(replicates.matched_pairs([arm_a, arm_b], runs, base=None, contrasts=[(arm_a, arm_b)]))
    return PowerDesign(pairs, clauses, questions, both_orders, model_sd=SEED_SD, draw_sd=DRAW_SD, drawn=drawn)


def _primary_design(arm_a: str, arm_b: str, draws: int, seeds: int, clauses: int, questions: int,
                    drawn: tuple[str, ...]) -> ContrastDesign:
    d = _power_design(arm_a, arm_b, draws, seeds, clauses, questions, drawn)
    return contrast_design([x for x, _ in d.pairs], [y for _, y in d.pairs], drawn or None)


def check_power(profile: dict[str, Any], override: float | None = None) -> PowerPlan:
    """The plan; raise one DLMError line (keys to change, cheapest change) when the primary cannot be tested."""
    result = plan(profile, override)
    if not result.ok:
        raise DLMError(result.refusal())
    return result
