"""Replicates: R panel draws × S training seeds per arm, and how runs are named and paired.

An *arm* is a way of building the training data, declared in configs/arms.yaml (`dlm.experiment.designs`
holds the registry and the design). Arms built from one drawn panel (`drawn: true`) get R datasets,
from panel seeds seed, seed+1, …; the others do not depend on a draw and get one. Every dataset is trained with S seeds. A *run*
is one (arm, draw, seed); replicate (0, 0) keeps the plain arm name, so a 1 × 1 design has the
same files as before: `hard.jsonl` → `checkpoints/hard`; `hard-r1.jsonl` → `checkpoints/hard-r1`
and `checkpoints/hard-r1-s1`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from dlm.arms.registry import load_arms
from dlm.errors import DLMError

_NAME = re.compile(r"(.+?)(?:-r(\d+))?(?:-s(\d+))?")


@dataclass(frozen=True)
class Run:
    """One trained model: an arm, its panel draw and its training seed offset."""

    arm: str
    draw: int = 0
    seed: int = 0

    @property
    def dataset(self) -> str:
        """Name of its preference dataset (`<dataset>.jsonl`)."""
        return self.arm + (f"-r{self.draw}" if self.draw else "")

    @property
    def name(self) -> str:
        """Name of the run: its checkpoint folder and its model name in evaluations."""
        return self.dataset + (f"-s{self.seed}" if self.seed else "")


def drawn_arms() -> set[str]:
    """Arms of the default registry (configs/arms.yaml) that depend on a panel draw."""
    return {a.name for a in load_arms().values() if a.drawn}


def draws_for(arm: str, panel_draws: int, drawn: Collection[str] | None = None) -> int:
    """How many datasets an arm has: R for arms drawn from a panel (default: the registry's), else 1."""
    return panel_draws if arm in (drawn_arms() if drawn is None else drawn) else 1


def _check(panel_draws: int, train_seeds: int) -> None:
    if panel_draws < 1 or train_seeds < 1:
        raise DLMError(f"panel_draws and train_seeds must be at least 1 (got {panel_draws} and {train_seeds})")


def datasets(arms: list[str], panel_draws: int = 1, drawn: Collection[str] | None = None) -> list[Run]:
    """One Run per dataset to prepare (seed 0)."""
    _check(panel_draws, 1)
    drawn = drawn_arms() if drawn is None else drawn
    return [Run(a, r) for a in arms for r in range(draws_for(a, panel_draws, drawn))]


def runs(arms: list[str], panel_draws: int = 1, train_seeds: int = 1,
         drawn: Collection[str] | None = None) -> list[Run]:
    """Every run to train, arm by arm."""
    _check(panel_draws, train_seeds)
    return [Run(d.arm, d.draw, s) for d in datasets(arms, panel_draws, drawn) for s in range(train_seeds)]


def matched_pairs(arms: list[str], all_runs: list[Run], base: str | None = "base",
                  contrasts: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """Pairs to judge: for each arm contrast, replicate (r, s) of one arm against replicate (r, s) of the other.

    `contrasts` (default: every pair of `arms`, in order) are (arm A, arm B), judged as A vs B. An arm
    without panel draws stands in with its draw 0; `base` (one model) is compared with every run.
    """
    by_arm: dict[str, dict[tuple[int, int], Run]] = {}
    for run in all_runs:
        by_arm.setdefault(run.arm, {})[(run.draw, run.seed)] = run
    pairs: list[tuple[str, str]] = []
    if base:
        pairs += [(base, run.name) for a in arms for run in by_arm[a].values()]
    if contrasts is None:
        contrasts = [(a, b) for i, a in enumerate(arms) for b in arms[i + 1:]]
    for a, b in contrasts:
        keys = sorted(set(by_arm[a]) | set(by_arm[b]))
        seen = set()
        for r, s in keys:
            pair = (_member(by_arm[a], r, s).name, _member(by_arm[b], r, s).name)
            if pair not in seen:
                seen.add(pair)
                pairs.append(pair)
    return pairs


def _member(replicates: dict[tuple[int, int], Run], draw: int, seed: int) -> Run:
    return replicates.get((draw, seed)) or replicates[(0, seed)]


def arm_of(name: str) -> str:
    """The arm of a run name (`hard-r1-s2` → `hard`; `base` → `base`)."""
    return _NAME.fullmatch(name).group(1)


def parse_run(name: str) -> Run:
    """The Run a run name stands for."""
    arm, draw, seed = _NAME.fullmatch(name).groups()
    return Run(arm, int(draw or 0), int(seed or 0))


def arms_of(names: list[str]) -> dict[str, str]:
    """Run name → arm for every name."""
    return {n: arm_of(n) for n in names}
