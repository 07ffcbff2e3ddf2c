"""The parameters the last pipeline run gave each notebook, and what a notebook run by hand may overwrite.

The runner records every stage's full parameters (its notebook's defaults with the profile's values
over them) in `<artifacts root>/last_run.json`. A notebook opened by hand (JupyterLab, `make
lab`) starts from those values, so re-running a cell shows what the report showed; a hand run whose
parameters differ from the run that wrote the outputs writes its outputs to a folder of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlm import paths
from dlm.experiment.profiles import NOTEBOOKS_DIR, _default_value, declared_parameters
from dlm.io import write_json_atomic

LAST_RUN = "last_run.json"
RUNNER_ENV = "DLM_PIPELINE_STAGE"  # set by the runner while papermill executes a stage: its parameters are the run's
OWN_SWITCH = "from_last_run"  # the notebook parameter that turns this off (False: the cell's values as written)
# Parameters naming a stage's outputs: a hand run with other settings moves them, never the run's files.
STAGE_OUTPUTS = {"01_explore_prism": ["prism_source"], "02_sortition": ["output_dir"], "03_prepare": ["output_dir"],
                 "04_train_dpo": ["checkpoint_dir", "model_id"], "05_questions": ["questions_dir"],
                 "06_evaluate": ["evaluation_output"], "07_aligned_to_whom": ["summary_output"]}


def last_run_path() -> Path:
    """Where the runner records the last run's parameters: <artifacts root>/last_run.json."""
    return paths.artifacts_root() / LAST_RUN


def defaults(stem: str) -> dict[str, Any]:
    """A notebook's declared parameters and their default values."""
    return {k: _default_value(v) for k, v in declared_parameters(NOTEBOOKS_DIR / f"{stem}.ipynb").items()}


def record_stage(run_id: str, profile: str, stem: str, params: dict[str, Any]) -> None:
    """Record the full parameters a run gave one notebook (its defaults, then the profile's values)."""
    path = last_run_path()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    known[stem] = {"run_id": run_id, "profile": profile, "parameters": {**defaults(stem), **params}}
    write_json_atomic(path, known)


@dataclass(frozen=True)
class HandRun:
    """How a notebook run by hand sets its parameters: the values to use and why."""

    stem: str
    values: dict[str, Any]  # every parameter's value for this run
    run_id: str | None = None  # the run whose parameters it started from (None: no run recorded)
    from_run: tuple[str, ...] = ()  # parameters taken from that run
    differing: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name: (this run's, the recorded run's)
    moved: dict[str, str] = field(default_factory=dict)  # output parameter: where this run writes instead
    by_runner: bool = False  # executed by the runner, whose injected parameters are the run's

    def note(self) -> str:
        """One paragraph for the notebook: where its parameters came from and where it writes ("" under the runner)."""
        if self.by_runner:
            return ""
        if self.run_id is None:
            return "No pipeline run recorded under this artifacts root: the parameters cell's values as written."
        text = (f"Parameters of run **{self.run_id}** ({len(self.from_run)} taken from it; set "
                f"`{OWN_SWITCH} = False` to use the parameters cell as written).")
        if self.differing:
            diff = "; ".join(f"`{k}` {a!r} (run: {b!r})" for k, a, b in
                             ((k, *v) for k, v in sorted(self.differing.items())))
            moved = ", ".join(f"`{k}` → {v}" for k, v in self.moved.items())
            text += f" This run differs: {diff}. So that the run's results stay as they are, it writes {moved}."
        return text


def _moved(value: str, digest: str) -> str:
    """The output path of a hand run: a sibling folder `hand-<digest>` holding the same name."""
    p = Path(value)
    return str(p.parent / f"hand-{digest}" / p.name)


def hand_run(stem: str, namespace: dict[str, Any]) -> HandRun:
    """The parameters of a notebook executed outside the runner, from the last run's and the cell's values.

    A parameter still at the notebook's default takes the last run's value; one the user changed keeps
    the user's. When the result differs from the run's parameters, the stage's outputs move to a folder
    named by a hash of the differences, so the run's files are never overwritten.
    """
    declared = defaults(stem)
    values = {k: namespace[k] for k in declared if k in namespace}
    if os.environ.get(RUNNER_ENV):
        return HandRun(stem, values, by_runner=True)
    if not values.get(OWN_SWITCH, True):
        return HandRun(stem, values)
    try:
        record = json.loads(last_run_path().read_text()).get(stem)
    except (OSError, ValueError):
        record = None
    if not record:
        return HandRun(stem, values)
    run = record["parameters"]
    taken = tuple(k for k in values if k != OWN_SWITCH and k in run and values[k] == declared[k] and run[k] != values[k])
    values.update({k: run[k] for k in taken})
    outputs = STAGE_OUTPUTS.get(stem, [])
    differing = {k: (v, run.get(k)) for k, v in values.items()
                 if k != OWN_SWITCH and k not in outputs and k in run and v != run[k]}
    moved = {}
    if differing:
        digest = hashlib.sha256(json.dumps(sorted(differing), default=str).encode()
                                + json.dumps({k: values[k] for k in differing}, sort_keys=True, default=str).encode()
                                ).hexdigest()[:8]
        moved = {k: _moved(values[k], digest) for k in outputs if isinstance(values.get(k), str)
                 and values[k] and values[k] == run.get(k)}
        values.update(moved)
    return HandRun(stem, values, record["run_id"], taken, differing, moved)
