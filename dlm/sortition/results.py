"""Typed results of sortition: LEXIMIN levels and their certificates, probability summaries, diagnostics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dlm.errors import DLMError


@dataclass
class LeximinLevel:
    """One certified LEXIMIN level: the value its people get and the proven bound that certifies it.

    `bound` names the proof: "lp_relaxation" (the quota polytope's LP relaxation, which contains
    every mixture of panels) or "pricing_ilp" (the pricing ILP's proven dual bound at an optimal
    master's duals). A level is never certified by a panel the solver merely found.
    """

    level: int
    value: float
    upper_bound: float
    gap: float
    bound: str
    iterations: int
    seconds: float
    types_fixed: int = 0
    people_fixed: int = 0
    panels_known: int = 0


class LeximinNotConverged(DLMError):
    """A LEXIMIN level could not be certified (time limit, or a solver that stopped without a proof)."""

    def __init__(self, message: str, value: float = float("nan"), bound: float = float("nan")) -> None:
        super().__init__(message)
        self.value = value  # the open level's best value reached by known panels
        self.bound = bound  # the best proven upper bound on it
        self.levels: list[LeximinLevel] = []  # the levels certified before it


@dataclass
class ProbabilitySummary:
    """min / max / mean / Gini of selection probabilities, and Σπ (which must equal the panel size)."""

    min: float
    max: float
    mean: float
    gini: float
    sum: float
    panel_size: int


@dataclass
class SelectionDiagnostics:
    """What a manifest and a reader need to judge a selection; fields of the other algorithms stay None."""

    algorithm: str
    seed: int
    pool: dict[str, Any]
    summary: ProbabilitySummary
    # legacy / random (Monte Carlo)
    n_samples: int | None = None
    attempts: int | None = None
    failures: int | None = None
    failure_rate: float | None = None
    legacy_variant: str | None = None
    zero_probability_people: int | None = None
    # leximin
    leximin_method: str | None = None
    leximin_seconds: dict[str, float] = field(default_factory=dict)
    leximin_panel_sources: dict[str, float] = field(default_factory=dict)  # the decomposition's panels, by source
    levels: list[LeximinLevel] = field(default_factory=list)
    final_primal_slack: float | None = None
    panels_in_support: int | None = None
    types: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values for manifests: the fields that apply to this algorithm."""
        return {k: v for k, v in asdict(self).items() if v is not None and v != {} and v != []}
