"""The experiment design as code: a registry of arms (configs/arms.yaml) and one `Design`.

An *arm* is a named way of building a training set (mode, panel config, selection algorithm,
whether it depends on a panel draw, weight normalisation). A *design* is arms × R panel draws ×
S training seeds under one matched training budget (every run gets the same optimizer steps, the
same effective batch and, through per-arm weight normalisation, the same mean weight over its
training rows) plus the judge pairs. Datasets, training runs, model specs, judge pairs and the
preflight's estimates all come from it; notebooks 03/04/06, the CLI (`dlm design`, `prepare
--profile --run`, `train --profile --run`), the preflight and the planted-effect benchmark use it.
Run names are those of `dlm.arms.replicates`: `ARM`, `ARM-rR`, `ARM-sS`, `ARM-rR-sS`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlm import paths
from dlm.arms import replicates
from dlm.arms.registry import ARMS_FILE, Arm, load_arms
from dlm.arms.replicates import Run
from dlm.data.prism import load_prism
from dlm.data.synth import generate_sample
from dlm.errors import DLMError
from dlm.experiment.profiles import load_profile
from dlm.preferences.build import PrepareOptions, build_dataset
from dlm.training.recipes import canonical_settings, load_recipe

ROOT = paths.project_root()
JUDGE_POLICIES = ("contrasts", "all")
BUDGETS = ("steps", "epochs")  # matched optimizer steps, or the same passes over each arm's own rows


def rows_per_step(settings: dict[str, Any]) -> int:
    """Rows per optimizer step in one process: per-device batch (DPOConfig's default 8) × gradient accumulation."""
    return int(settings.get("per_device_train_batch_size", 8)) * int(settings.get("gradient_accumulation_steps", 1))


@dataclass(frozen=True)
class Design:
    """Arms × R panel draws × S training seeds, one matched budget, the judge pairs and the paths.

    Defaults equal the notebooks' parameter defaults (tests/test_experiment.py checks this). Relative paths
    resolve against the project root (`artifacts/…` against the artifacts root, see dlm.paths).
    """

    arms: tuple[Arm, ...]
    panel_draws: int = 1
    train_seeds: int = 1
    prism_source: str = "artifacts/sample"
    sample_scale: str = "demo"
    sample_seed: int = 0
    panel_config: str = "configs/panel_config.yaml"
    panel_seed: int = 0
    num_panel_samples: int = 2000
    leximin_time_limit: float = 600.0
    dataset_format: str = "chat"
    eval_ratio: float = 0.1
    split_by: str = "rater"
    weight_normalization: str = "mean"
    data_dir: str = "artifacts/data"
    checkpoint_dir: str = "artifacts/checkpoints"
    model_id: str = "artifacts/models/tiny"
    recipe: str = "configs/train/tiny.yaml"
    max_steps: int = -1
    budget: str = "steps"
    train_epochs: float = -1.0
    train_seed: int = 0
    primary: str = "soft:hard"
    contrasts: str = ""
    judge_pairs: str = "contrasts"

    def __post_init__(self) -> None:
        for name in ("prism_source", "panel_config", "data_dir", "checkpoint_dir", "recipe"):
            object.__setattr__(self, name, paths.resolve(getattr(self, name)))
        object.__setattr__(self, "model_id", paths.model(self.model_id))
        if self.panel_draws < 1 or self.train_seeds < 1:
            raise DLMError(f"panel_draws and train_seeds must be at least 1 (got {self.panel_draws} and "
                           f"{self.train_seeds})")
        if self.budget not in BUDGETS:
            raise DLMError(f"budget must be one of {', '.join(BUDGETS)}, got {self.budget!r}")
        if self.judge_pairs not in JUDGE_POLICIES:
            raise DLMError(f"judge_pairs must be one of {', '.join(JUDGE_POLICIES)}, got {self.judge_pairs!r}")

    # ------------------------------------------------------------------ arms, datasets, runs

    @property
    def arm_names(self) -> list[str]:
        """The design's arms, in order."""
        return [a.name for a in self.arms]

    def arm(self, name: str) -> Arm:
        """The arm called `name`."""
        for a in self.arms:
            if a.name == name:
                return a
        raise DLMError(f"no arm {name!r} in this design (arms: {', '.join(self.arm_names)})")

    @property
    def drawn(self) -> list[str]:
        """Arms with one dataset per panel draw."""
        return [a.name for a in self.arms if a.drawn]

    def datasets(self) -> list[Run]:
        """One Run (seed 0) per dataset to prepare."""
        return replicates.datasets(self.arm_names, self.panel_draws, drawn=self.drawn)

    def runs(self) -> list[Run]:
        """Every run to train, arm by arm."""
        return replicates.runs(self.arm_names, self.panel_draws, self.train_seeds, drawn=self.drawn)

    def find(self, name: str) -> Run:
        """The run (or dataset) named `name` exactly as `dlm design` prints it."""
        known = {r.name: r for r in self.runs()} | {d.dataset: d for d in self.datasets()}
        if name not in known:
            raise DLMError(f"no run or dataset {name!r} in this design; `python -m dlm design` lists them "
                           f"({', '.join(known)})")
        return known[name]

    def counted_locally(self) -> bool:
        """Whether `summarise` can count the datasets: PRISM from the Hub, a local folder, or a sample to generate."""
        source = self.prism_source
        return source == "hub" or source.startswith("hub:") or Path(source).is_dir() or bool(self.sample_scale)

    def dataset_path(self, run: Run) -> Path:
        """Where a run's preference dataset is written."""
        return Path(self.data_dir) / f"{run.dataset}.jsonl"

    def checkpoint(self, run: Run) -> Path:
        """Where a run's model is saved."""
        return Path(self.checkpoint_dir) / run.name

    def arm_panel_config(self, arm: Arm) -> str | None:
        """The arm's panel config path (None for arms without a panel)."""
        if arm.panel_config is None:
            return None
        return paths.resolve(self.panel_config if arm.panel_config == "primary" else arm.panel_config)

    def composition_config(self, arm: Arm) -> str:
        """The quotas an arm's composition is shown against: its own, else the design's."""
        return self.arm_panel_config(arm) or self.panel_config

    def prepare_options(self, run: Run):
        """The PrepareOptions that build a run's dataset (panel seed = panel_seed + draw)."""
        arm = self.arm(run.arm)
        return PrepareOptions(
            mode=arm.mode, panel_config=self.arm_panel_config(arm), panel_algorithm=arm.panel_algorithm,
            panel_seed=self.panel_seed + run.draw, num_panel_samples=self.num_panel_samples,
            leximin_time_limit=self.leximin_time_limit, dataset_format=self.dataset_format,
            eval_ratio=self.eval_ratio, split_by=self.split_by,
            weight_normalization=arm.weight_normalization or self.weight_normalization)

    # ------------------------------------------------------------------ training budget

    def recipe_settings(self) -> dict[str, Any]:
        """The training recipe as written."""
        return load_recipe(self.recipe)

    def steps(self) -> int:
        """Optimizer steps of every run: max_steps if set, else the recipe's max_steps."""
        if self.max_steps > 0:
            return self.max_steps
        recipe_steps = int(self.recipe_settings().get("max_steps", -1) or -1)
        if recipe_steps > 0:
            return recipe_steps
        raise DLMError(f"matched budgets need a step count: set max_steps in the profile (the recipe {self.recipe} "
                       "has none, and epochs would give each arm a different number of steps)")

    def epochs(self) -> float:
        """Passes over its own training rows of every run under `budget: epochs`: train_epochs, else the recipe's."""
        value = self.train_epochs if self.train_epochs > 0 else float(self.recipe_settings().get("num_train_epochs", 1))
        if not value > 0:
            raise DLMError(f"budget: epochs needs train_epochs > 0 (got {value})")
        return value

    def effective_batch(self) -> int:
        """Rows per optimizer step of every run: the recipe's batch size × gradient accumulation."""
        return rows_per_step(self.recipe_settings())

    def run_steps(self, rows: int, budget: str | None = None) -> int:
        """Optimizer steps of a run on `rows` training rows under `budget` (default: the design's)."""
        if (budget or self.budget) == "steps":
            return self.steps()
        return math.ceil(self.epochs() * math.ceil(rows / self.effective_batch()))  # as the HF Trainer counts them

    def train_settings(self, run: Run) -> dict[str, Any]:
        """The flat training settings of a run: recipe, base model, seed and the budget (matched steps or epochs)."""
        budget = ({"max_steps": self.steps()} if self.budget == "steps" else
                  {"max_steps": -1, "num_train_epochs": self.epochs()})  # the trainer counts steps from the rows
        return {**canonical_settings(self.recipe_settings()), "model_name_or_path": self.model_id,
                "seed": self.train_seed + run.seed, "budget": self.budget, **budget}

    def budget_mismatch(self, summary: dict[str, Any]) -> str:
        """Why a training summary does not follow this design's budget ("" when it does)."""
        trained = summary.get("budget", "steps")
        if trained != self.budget:
            return f"trained under budget {trained}, the design asks for {self.budget}"
        if self.budget == "steps" and summary.get("steps") != self.steps():
            return f"trained for {summary.get('steps')} steps, the design asks for {self.steps()}"
        planned = (summary.get("config") or {}).get("dpo", {}).get("num_train_epochs")
        if self.budget == "epochs" and planned != self.epochs():
            return f"trained for {planned} epochs, the design asks for {self.epochs()}"
        return ""

    # ------------------------------------------------------------------ evaluation

    def arm_contrasts(self) -> list[tuple[str, str]]:
        """Declared arm contrasts, primary first; with judge_pairs `all`, every pair of arms after them.

        Checked here, not when the design is built: 03 and 04 use designs whose arms need not hold 06's contrasts.
        """
        names = self.arm_names
        declared = [self.primary] if self.primary else []
        declared += [c.strip() for c in self.contrasts.split(",") if c.strip()]
        out: list[tuple[str, str]] = []
        for text in declared:
            if text.count(":") != 1:
                raise DLMError(f"contrast {text!r}: write ARM_A:ARM_B")
            a, b = text.split(":")
            for side in (a, b):
                if side not in names:
                    raise DLMError(f"contrast {a}:{b} names arm {side!r}, which is not among the design's arms "
                                   f"({', '.join(names)}); add it to `arms` or drop the contrast")
            if (a, b) not in out and (b, a) not in out:
                out.append((a, b))
        if self.judge_pairs == "all":
            out += [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if (a, b) not in out
                    and (b, a) not in out]
        return out

    def model_specs(self) -> list[str]:
        """`NAME=PATH` for the base model and every run."""
        return [f"base={self.model_id}"] + [f"{r.name}={self.checkpoint(r)}" for r in self.runs()]

    def pairs(self) -> list[tuple[str, str]]:
        """Model pairs to judge: base against every run, then matched replicates of each arm contrast."""
        return replicates.matched_pairs(self.arm_names, self.runs(), contrasts=self.arm_contrasts())

    def arms_of_models(self) -> dict[str, str]:
        """Model name → arm, base included."""
        return replicates.arms_of(["base"] + [r.name for r in self.runs()])

    def primary_pair(self) -> tuple[str, str] | None:
        """The declared primary contrast."""
        return tuple(self.primary.split(":")) if self.primary else None  # type: ignore[return-value]


def design(arms: str = "hard,soft,us_rep,full", arms_file: str = "", **settings: Any) -> Design:
    """A Design from notebook-style values: `arms` a comma-separated list of names from the arms file."""
    registry = load_arms(arms_file or None)
    names = [a.strip() for a in str(arms).split(",") if a.strip()]
    missing = [n for n in names if n not in registry]
    if missing:
        raise DLMError(f"arms {', '.join(missing)} are not in {arms_file or ARMS_FILE} "
                       f"(known: {', '.join(registry)}); declare them there")
    if len(set(names)) != len(names):
        raise DLMError(f"arms {arms!r} lists an arm twice")
    known = {f.name for f in dataclasses.fields(Design)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise DLMError(f"unknown design setting(s) {', '.join(unknown)}")
    return Design(tuple(registry[n] for n in names), **settings)


# notebook parameter → Design field, per notebook (the profile keeps the notebooks' names)
STAGE_FIELDS: dict[str, dict[str, str]] = {
    "01_explore_prism": {"prism_source": "prism_source", "sample_scale": "sample_scale", "sample_seed": "sample_seed"},
    "03_prepare": {"prism_source": "prism_source", "panel_config": "panel_config", "panel_seed": "panel_seed",
                   "num_panel_samples": "num_panel_samples", "leximin_time_limit": "leximin_time_limit",
                   "dataset_format": "dataset_format", "eval_ratio": "eval_ratio", "split_by": "split_by",
                   "weight_normalization": "weight_normalization", "output_dir": "data_dir",
                   "panel_draws": "panel_draws"},
    "04_train_dpo": {"data_dir": "data_dir", "recipe": "recipe", "model_id": "model_id", "max_steps": "max_steps",
                     "budget": "budget", "train_epochs": "train_epochs", "train_seed": "train_seed", "train_seeds": "train_seeds", "checkpoint_dir": "checkpoint_dir",
                     "panel_draws": "panel_draws"},
    "06_evaluate": {"model_id": "model_id", "checkpoint_dir": "checkpoint_dir", "primary": "primary",
                    "contrasts": "contrasts", "judge_pairs": "judge_pairs"},
}


def from_profile(profile: Mapping[str, Any], stage: str = "04_train_dpo") -> Design:
    """The design a profile runs, with the arm list of notebook `stage` (03 may prepare more than 04 trains)."""
    def params(nb: str) -> dict[str, Any]:
        return {**(profile.get("parameters") or {}), **((profile.get("notebooks") or {}).get(nb) or {})}

    settings: dict[str, Any] = {}
    for nb in ("01_explore_prism", "06_evaluate", "04_train_dpo", "03_prepare"):  # later ones win shared fields
        values = params(nb)
        settings.update({field: values[name] for name, field in STAGE_FIELDS[nb].items() if name in values})
    own = params(stage)
    return design(str(own.get("arms", "hard,soft,us_rep,full")), str(own.get("arms_file", "") or ""), **settings)


def load_design(profile_name: str, stage: str = "04_train_dpo") -> Design:
    """The design of a profile given by name (configs/profiles/NAME.yaml) or path."""
    return from_profile(load_profile(profile_name), stage)


def epochs(steps: int, batch: int, rows: int) -> float:
    """Passes over the training rows that `steps` steps of `batch` rows make."""
    return steps * batch / rows if rows else math.inf


# ----------------------------------------------------------------------------- the design, counted


@dataclass(frozen=True)
class DatasetSummary:
    """One dataset of a design, counted in memory: what its runs train on and for how long."""

    dataset: str
    arm: str
    mode: str
    panel_algorithm: str
    train_rows: int
    eval_rows: int
    raters: int
    effective_sample_size: float
    weight_sum: float
    weight_mean: float
    steps: int  # under the design's budget
    epochs: float
    runs: tuple[str, ...]
    other_steps: int | None = None  # under the other budget (None when it has no step count or epoch count)
    other_epochs: float | None = None


def summarise(design: Design, progress: bool = False) -> list[DatasetSummary]:
    """Every dataset's training rows, raters, Kish ESS, Σw, steps and epochs, built in memory (nothing written)."""
    import tempfile

    batch = design.effective_batch()
    other = BUDGETS[1 - BUDGETS.index(design.budget)]
    with tempfile.TemporaryDirectory() as tmp:
        source = design.prism_source
        local = not (source == "hub" or source.startswith("hub:"))
        if local and not Path(source).is_dir() and design.sample_scale:
            source = str(Path(tmp) / "sample")  # the sample 01 would generate: same scale and seed
            generate_sample(source, design.sample_scale, design.sample_seed)
        prism = load_prism(source, tables=("survey", "utterances", "conversations"))
        out = []
        runs = design.runs()
        for d in design.datasets():
            data = build_dataset(prism.survey, prism.utterances, prism.conversations, design.prepare_options(d),
                                 progress)
            c = data.counts
            steps = design.run_steps(c["train_rows"])
            try:
                other_steps: int | None = design.run_steps(c["train_rows"], other)
            except DLMError:  # e.g. budget: epochs with no max_steps anywhere: no steps budget to show beside it
                other_steps = None
            out.append(DatasetSummary(
                d.dataset, d.arm, design.arm(d.arm).mode,
                design.arm(d.arm).panel_algorithm if design.arm(d.arm).panel_config else "-", c["train_rows"],
                c["split"]["eval"], c["train_raters"], c["train_effective_sample_size"], c["train_weight_sum"],
                c["train_weight_mean"], steps, epochs(steps, batch, c["train_rows"]),
                tuple(r.name for r in runs if r.dataset == d.dataset), other_steps,
                None if other_steps is None else epochs(other_steps, batch, c["train_rows"])))
    return out


def format_design(design: Design, summaries: list[DatasetSummary]) -> str:
    """The design as text: datasets with their counts and runs, the budget and the judge pairs."""
    other = BUDGETS[1 - BUDGETS.index(design.budget)]
    per_run = (f"every run {design.steps()} steps" if design.budget == "steps" else
               f"every run {design.epochs():g} epochs of its own rows (steps differ)")
    lines = [f"design: {len(design.arms)} arms x R={design.panel_draws} panel draws (drawn arms: "
             f"{', '.join(design.drawn) or 'none'}) x S={design.train_seeds} training seeds = "
             f"{len(design.runs())} runs; budget: {design.budget}, {per_run} x effective batch "
             f"{design.effective_batch()} ({design.recipe}); the last two columns: under budget {other}",
             f"data from {design.prism_source}" + (f" (generated {design.sample_scale} sample, seed "
                                                  f"{design.sample_seed}, if absent)" if design.sample_scale else ""),
             *([""] if summaries else []), *([f"{'dataset':<20} {'mode':<15} {'algorithm':<9} {'rows':>6} {'eval':>5} {'raters':>6} "
             f"{'ESS':>7} {'Σw':>8} {'mean w':>6} {'steps':>5} {'epochs':>6}  {'runs':<24} {'steps':>5} {'epochs':>6}"] if summaries else [])]
    for s in summaries:
        lines.append(f"{s.dataset:<20} {s.mode:<15} {s.panel_algorithm:<9} {s.train_rows:>6} {s.eval_rows:>5} "
                     f"{s.raters:>6} {s.effective_sample_size:>7.0f} {s.weight_sum:>8.1f} {s.weight_mean:>6.3f} "
                     f"{s.steps:>5} {s.epochs:>6.2f}  {', '.join(s.runs):<24} "
                     + (f"{s.other_steps:>5} {s.other_epochs:>6.2f}" if s.other_steps is not None else f"{'-':>5} {'-':>6}"))
    pairs = design.pairs()
    contrasts = design.arm_contrasts()
    lines += ["", f"judge pairs ({design.judge_pairs}): {len(pairs)} = base vs {len(design.runs())} runs + "
              f"{len(pairs) - len(design.runs())} matched replicate pairs of {len(contrasts)} arm contrasts "
              f"(primary {design.primary or 'none'})"]
    lines += [f"  {a} vs {b}" for a, b in pairs]
    return "\n".join(lines)
