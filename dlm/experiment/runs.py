"""One run's work as a function (build a dataset, train a run, answer the questions) and whether it is finished.

A run is *finished* when its outputs are complete and committed: a dataset whose output set
verifies (`dlm.io.verify_output_set`); a checkpoint with weights and a `training_summary.json`
trained on the dataset now on disk for the design's step budget and with its recipe, seed and model (a
changed learning rate or seed makes a run stale, reported and trained again); a dataset built with the
design's settings (eval_ratio, panel seed, ...); every question answered with the
settings 06 uses (`dlm.judging.evaluation.answer_settings`). The CLI's `prepare/train --profile P
--run NAME`, notebooks 03, 04 and 06 and every cluster job (`dlm.experiment.jobs`) call these.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlm.errors import DLMError
from dlm.experiment.designs import Design
from dlm.experiment.launch import SPLIT_KEYS, Launch, check_matched_batch, train_on_processes
from dlm.io import sha256_file, verify_output_set
from dlm.judging import evaluation
from dlm.judging.evaluation import parse_model_specs
from dlm.llm.backends import UsageLedger
from dlm.preferences.build import prepare
from dlm import training  # its train() imports TRL on first use: design, prepare and answers never pay for it
from dlm.training.recipes import canonical_settings, load_recipe

STAGES = ("prepare", "train", "answers")
STALE = "stale: "  # how `unfinished` begins when a run's outputs exist but were made with other settings
WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


@dataclass(frozen=True)
class AnswerSettings:
    """What 06 answers with (its parameters): the same values give the same answers file and fingerprint."""

    questions_dir: str
    evaluation_output: str
    max_new_tokens: int = 64
    seed: int = 0
    questions_per_clause: int | None = None
    batch_size: int = 8
    backend: str = "hf"
    base_url: str | None = None

    @property
    def responses_dir(self) -> Path:
        """Where 06 keeps each model's answers."""
        return Path(self.evaluation_output).parent / "responses"


def prepare_run(design: Design, name: str, output: str | Path | None = None, allow_unlinked: bool = False):
    """Build one dataset exactly as the design does; returns (run, PreparedData, output path)."""
    run = design.find(name)
    output = Path(output) if output else design.dataset_path(run)
    source = Path(design.prism_source)
    if not (source / "survey.jsonl").is_file():
        raise DLMError(f"PRISM source {source} has no survey.jsonl: run notebook 01 (or `python -m dlm synth "
                       f"--output {source}`) first")
    data = prepare(source / "survey.jsonl", source / "utterances.jsonl", output, design.prepare_options(run),
                   progress=True, allow_unlinked=allow_unlinked)
    return run, data, output


def train_settings(design: Design, name: str, recipe: str | Path | None = None) -> dict[str, Any]:
    """A run's flat training settings: LoRA by default, the design's recipe, model, seed and steps, then `recipe`."""
    return {"finetune": "lora", **design.train_settings(design.find(name)),
            **canonical_settings(load_recipe(recipe) if recipe else {})}


def train_run(design: Design, name: str, settings: dict[str, Any] | None = None, token: str | None = None,
              resume: bool = False, dataset: str | Path | None = None,
              output_dir: str | Path | None = None) -> dict[str, Any]:
    """Train one run of the design (settings default to `train_settings`); returns its training summary."""
    run = design.find(name)
    settings = settings or train_settings(design, name)
    check_matched_batch(design, name, settings)
    dataset = dataset or design.dataset_path(run)
    if not Path(dataset).is_file():
        raise DLMError(f"dataset {dataset} of run {name} not found: prepare it first (`python -m dlm submit "
                       "--stage prepare`, `python -m dlm prepare --profile ... --run ...` or notebook 03)")
    return training.train(dataset, output_dir or design.checkpoint(run), settings,
                          token=token if token is not None else training.hf_token(), resume=resume)


def model_paths(design: Design) -> dict[str, str]:
    """Model name → path for the base model and every run (06's models)."""
    return parse_model_specs(design.model_specs())


def answer_run(design: Design, answers: AnswerSettings, name: str) -> int:
    """One model's answers to every question, as 06 makes them (06 then reuses them); returns how many."""
    paths = model_paths(design)
    if name not in paths:
        raise DLMError(f"no model {name!r} in this design (models: {', '.join(paths)})")
    path = paths[name]
    if answers.backend in ("hf", "vllm") and not model_available(path):
        raise DLMError(f"model folder {path} does not exist: train run {name} first")
    questions = evaluation.load_questions(answers.questions_dir, answers.questions_per_clause)
    output = Path(answers.evaluation_output)
    done = evaluation.answer_questions(
        path, questions, answers.responses_dir, evaluation.answer_decoding(answers.max_new_tokens, answers.seed),
        answers.backend, answers.base_url, answers.batch_size, output.parent / ".cache",
        UsageLedger(output.parent / f".{output.stem}.usage.jsonl"))
    return len(done)


def run_job(stage: str, design: Design, name: str, answers: AnswerSettings | None, cwd: str,
            launch: Launch | None = None) -> str:
    """The body of one submitted job: the run's work, in the submitting folder; returns one line.

    Training resumes from the run's newest complete checkpoint, so a requeued or resubmitted job
    continues where the killed one stopped; with `launch` of several processes it runs under
    `accelerate launch` (`dlm.experiment.launch`).
    """
    os.chdir(cwd)  # relative paths of the design mean what they meant where it was submitted
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if "SLURM_JOB_ID" not in os.environ:
        # submitit ignores SIGTERM in every job (SLURM sends it before a preemption's SIGUSR2); a local job
        # has no scheduler to requeue it, so `kill PID` must stop it.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    print(f"dlm {stage} {name}: started on {os.uname().nodename} at {dt.datetime.now():%Y-%m-%d %H:%M:%S}",
          flush=True)
    if stage == "prepare":
        _, data, output = prepare_run(design, name)
        line = f"{name}: {data.counts['rows']} pairs; wrote {output}"
    elif stage == "train":
        if launch is not None and launch.processes > 1:
            summary = train_on_processes(design, name, launch, train_settings(design, name))
        else:
            summary = train_run(design, name, resume=True)
        restarts = len(summary.get("restarts", []))
        line = f"{name}: {summary['steps']} steps, train loss {summary['metrics'].get('train_loss'):.4f}" \
               + (f", {restarts} restart(s)" if restarts else "") + f"; saved to {design.checkpoint(design.find(name))}"
    elif stage == "answers":
        if answers is None:
            raise DLMError("the answers stage needs 06's answer settings")
        line = f"{name}: {answer_run(design, answers, name)} answers in {answers.responses_dir}"
    else:
        raise DLMError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    print(line, flush=True)
    return line


class RunJob:
    """`run_job` as a submitit callable with `checkpoint()`: on preemption or a time limit SLURM requeues it.

    Nothing needs saving at the signal: the Trainer's own checkpoints (every `save_steps`) and the
    answers written so far are where the requeued job resumes.
    """

    def __call__(self, stage: str, design: Design, name: str, answers: AnswerSettings | None, cwd: str,
                 launch: Launch | None = None) -> str:
        return run_job(stage, design, name, answers, cwd, launch)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """The same job again (submitit requeues what this returns)."""
        import submitit  # optional: only cluster jobs need it

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


# ----------------------------------------------------------------------------- what is finished


def run_names(stage: str, design: Design) -> list[str]:
    """The runs of a stage: datasets (prepare), runs (train), base + runs (answers)."""
    if stage == "prepare":
        return [d.dataset for d in design.datasets()]
    if stage == "train":
        return [r.name for r in design.runs()]
    if stage == "answers":
        return list(model_paths(design))
    raise DLMError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")


def unfinished(stage: str, design: Design, name: str, answers: AnswerSettings | None = None) -> str:
    """Why a run is not finished ("" when its outputs are complete and committed)."""
    if stage == "prepare":
        path = design.dataset_path(design.find(name))
        if not path.is_file():
            return f"{path} missing"
        try:
            record = verify_output_set(path, missing_ok=True)
        except DLMError as exc:
            return str(exc)
        if not record:
            return f"{path} has no manifest"
        return _changed(vars(design.prepare_options(design.find(name))), record.get("config") or {},
                        f"{path} was built with")
    if stage == "train":
        run = design.find(name)
        return _untrained(design.checkpoint(run), design.dataset_path(run), design, train_settings(design, name))
    if stage == "answers":
        return _unanswered(design, answers, name)
    raise DLMError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")


def _changed(wanted: dict[str, Any], recorded: dict[str, Any], what: str) -> str:
    """`what` and each setting whose recorded value differs from the design's ("" when none does).

    Only settings the record holds are compared: a record from before a setting existed is not stale for it.
    """
    changed = [f"{k} {recorded[k]!r} (the design: {v!r})" for k, v in sorted(wanted.items())
               if k in recorded and _plain(recorded[k]) != _plain(v)]
    return f"{STALE}{what} {', '.join(changed)}" if changed else ""


def _plain(value: Any) -> Any:
    """A setting as JSON records it (paths as strings, tuples as lists)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _untrained(folder: Path, dataset: Path, design: Design, settings: dict[str, Any] | None = None) -> str:
    summary_path = folder / "training_summary.json"
    if not summary_path.is_file():
        return f"{summary_path} missing"
    if not any((folder / f).is_file() for f in WEIGHT_FILES):
        return f"no weights in {folder}"
    import json

    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except ValueError:
        return f"{summary_path} is not valid JSON"
    if dataset.is_file() and summary.get("dataset_sha256") != sha256_file(dataset):
        return f"trained on another version of {dataset}"
    mismatch = design.budget_mismatch(summary)
    if mismatch:
        return mismatch
    config = summary.get("config") or {}
    # the recipe's settings as train() split them (model, LoRA, DPOConfig): any change makes the run stale;
    # how the batch was split over processes is not a change when the rows per optimizer step are the design's
    recorded = {**(config.get("model") or {}), **(config.get("lora") or {}), **(config.get("dpo") or {}),
                **({"finetune": config["finetune"]} if "finetune" in config else {})}
    batch = summary.get("effective_batch_size")
    if batch is not None and batch != design.effective_batch():
        return f"{STALE}trained with {batch} rows per optimizer step (the design: {design.effective_batch()})"
    if batch is not None:
        recorded = {k: v for k, v in recorded.items() if k not in SPLIT_KEYS}
    return _changed(settings or {}, recorded, "trained with")


def _unanswered(design: Design, answers: AnswerSettings | None, name: str) -> str:
    if answers is None:
        raise DLMError("the answers stage needs 06's answer settings")
    path = model_paths(design)[name]
    if answers.backend in ("hf", "vllm") and not model_available(path):
        return f"model {path} missing"
    questions = evaluation.load_questions(answers.questions_dir, answers.questions_per_clause)
    missing = evaluation.unanswered(path, questions, answers.responses_dir,
                                    evaluation.answer_decoding(answers.max_new_tokens, answers.seed),
                                    answers.backend, answers.base_url)
    return f"{len(missing)} of {len(questions)} questions unanswered" if missing else ""


def model_available(path: str) -> bool:
    """A local folder that exists, or something that is not a local path (a Hub id)."""
    p = Path(path).expanduser()
    return p.exists() or not (p.is_absolute() or path.startswith((".", "~")) or len(p.parts) > 2)
