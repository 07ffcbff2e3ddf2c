"""Execute the numbered notebooks with papermill under a profile (`python run_all.py`).

A profile (configs/profiles/<name>.yaml) has `parameters` shared by every notebook that declares
them and `notebooks: {<name>: {...}}` for one notebook. A name no notebook declares, or a value
of a different type than the notebook's default, is an error (papermill would only warn).
Secrets never travel as parameters: `dlm` reads OPENAI_API_KEY and HF_TOKEN from the environment.
A URL parameter with credentials (`http://user:pw@host/v1?api-key=K`) is injected redacted
(`http://***@host/v1?api-key=***`) — papermill writes injected parameters into the executed notebook
— and the real URL reaches the kernel through the environment (dlm.io.URL_SECRETS_ENV), which
nothing records; the backends reveal it when they connect. Manifests and stage records hold only
redacted values.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


from dlm import paths, progress
from dlm.errors import DLMError
from dlm.experiment.preflight import check_real_run
from dlm.experiment.profiles import (NOTEBOOKS_DIR, PROFILES_DIR, _default_value, declared_parameters, load_profile,
                                     notebooks, resolve_parameters)
from dlm.io import (URL_SECRETS_ENV, HelpFormatter, manifest, output_fingerprint, output_lock, redact_values, sha256_file,
                    url_secrets, write_json_atomic)
from dlm.pipeline.last_run import RUNNER_ENV, STAGE_OUTPUTS, record_stage
from dlm.pipeline.report import build_report, headline
from dlm.pipeline.terminal import results_table

ROOT = paths.project_root()


def select_notebooks(books: list[Path], only: list[str] | None, start: str | None) -> list[Path]:
    """Apply --only and --from (by number `03` or name `03_prepare`)."""
    def match(nb: Path, key: str) -> bool:
        return nb.stem == key or nb.stem.split("_")[0] == key.zfill(2)

    if start:
        idx = next((i for i, nb in enumerate(books) if match(nb, start)), None)
        if idx is None:
            raise DLMError(f"--from {start}: no such notebook")
        books = books[idx:]
    if only:
        missing = [k for k in only if not any(match(nb, k) for nb in books)]
        if missing:
            raise DLMError(f"--only {', '.join(missing)}: no such notebook")
        books = [nb for nb in books if any(match(nb, k) for k in only)]
    return books


def git_commit() -> str | None:
    """The checked-out commit (with +dirty when the tree has changes), if this is a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


# ----------------------------------------------------------------------------- stage cache
#
# A stage (notebook) is reused when its key — the notebook's source, its parameters, the dlm
# package's source, the artifacts root and the previous stage's key — matches the last successful
# execution of the same profile and its outputs are unchanged since. Records live in
# <artifacts root>/stages/<profile>/<notebook>.json, so a `ci` run (tests) never replaces the
# `demo` run's records.

STAGES = "stages"



def stages_dir(profile: dict[str, Any] | None = None) -> Path:
    """Where stage records live: <artifacts root>/stages, one folder per profile."""
    base = paths.artifacts_root() / STAGES
    return base / profile_key(profile) if profile else base


def profile_key(profile: dict[str, Any]) -> str:
    """A profile's name for its stage records: its name in configs/profiles/, else its file's stem and path hash."""
    path = Path(profile["_path"]).resolve()
    if path.parent == PROFILES_DIR.resolve():
        return path.stem
    return f"{path.stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:10]}"


def _package_hash() -> str:
    """Hash of every module of the package, subpackages included (`dlm/sortition/` …)."""
    h = hashlib.sha256()
    package = ROOT / "dlm"
    for f in sorted(package.rglob("*.py")):
        h.update(f.relative_to(package).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def _config_hash(params: dict[str, Any]) -> str:
    """Hash of the files a stage reads: configs/ (arms, panels, recipes), the constitution and its calibration
    set, and any other file or folder a parameter names, so editing an arm, a quota or a survey row reruns it."""
    files = sorted((ROOT / "configs").rglob("*")) + sorted(ROOT.glob("constitution*"))
    folders = []
    for value in params.values():
        if isinstance(value, str) and value and len(value) < 4096:
            path = Path(paths.resolve(value))
            if path.is_file():
                files.append(path)
            elif path.is_dir() and path.resolve() not in (ROOT.resolve(), paths.artifacts_root().resolve()):
                folders.append(path)
    h = hashlib.sha256()
    for f in files:
        if f.is_file():
            h.update(str(f).encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    for folder in sorted(set(folders)):
        # a folder (a PRISM source, a data or checkpoint folder) by every file in it: editing one
        # survey row must rerun the stage, not reuse its old outputs
        h.update(str(folder).encode() + b"\0" + (output_fingerprint(folder) or "").encode())
    return h.hexdigest()


def notebook_code_hash(nb: Path) -> str:
    """Hash of a notebook's cells (type and source), not its metadata or outputs, which JupyterLab rewrites on save."""
    import nbformat  # nbformat comes with papermill's stack: only when a stage key is computed

    cells = [(c.cell_type, c.source) for c in nbformat.read(nb, as_version=4).cells]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def stage_key(nb: Path, params: dict[str, Any], upstream: str) -> str:
    """Hash of everything that decides a stage's outputs."""
    declared = {k: _default_value(v) for k, v in declared_parameters(nb).items()}
    merged = {**declared, **params}
    # A stage's own outputs are fingerprinted separately (reusable_stage); hashing them here as
    # inputs would change the key once the first run has written them.
    inputs = {k: v for k, v in merged.items() if k not in STAGE_OUTPUTS.get(nb.stem, [])}
    blob = json.dumps({"nb": notebook_code_hash(nb), "params": merged,
                       "dlm": _package_hash(), "configs": _config_hash(inputs), "upstream": upstream,
                       "artifacts": str(paths.artifacts_root())},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _upstream(nb: Path, keys: dict[str, str], records: Path) -> str:
    """Key of the stage before `nb`: from this run if it ran, else from its record ("" for the first)."""
    books = notebooks()
    if nb not in books or books.index(nb) == 0:
        return ""
    before = books[books.index(nb) - 1]
    if before.stem in keys:
        return keys[before.stem]
    rec = _read_record(records, before)
    return rec["key"] if rec else "never-run"


def _outputs(nb: Path, params: dict[str, Any]) -> dict[str, str | None]:
    declared = {k: _default_value(v) for k, v in declared_parameters(nb).items()}
    values = {**declared, **params}
    named = [values[k] for k in STAGE_OUTPUTS.get(nb.stem, []) if isinstance(values.get(k), str) and values[k]]
    return {p: output_fingerprint(Path(paths.resolve(p))) for p in named if Path(paths.resolve(p)).exists()}


def _read_record(records: Path, nb: Path) -> dict | None:
    try:
        return json.loads((records / f"{nb.stem}.json").read_text())
    except (OSError, ValueError):
        return None


def reusable_stage(records: Path, nb: Path, key: str, params: dict[str, Any]) -> dict | None:
    """The stage's last record if its key matches and its outputs are as that run left them."""
    rec = _read_record(records, nb)
    if not rec or rec.get("key") != key or not Path(rec.get("executed", "")).exists():
        return None
    return rec if _outputs(nb, params) == rec.get("outputs") else None


def save_stage(records: Path, nb: Path, key: str, params: dict[str, Any], executed: Path,
               run_id: str) -> dict[str, str | None]:
    """Record a successful stage; return its output fingerprints."""
    outputs = _outputs(nb, params)
    write_json_atomic(records / f"{nb.stem}.json", {"key": key, "outputs": outputs, "executed": str(executed),
                                                       "run_id": run_id})
    return outputs


def run_profile(profile_name: str = "demo", only: list[str] | None = None, start: str | None = None,
                run_id: str | None = None, runs_dir: Path | None = None, log=print, force: bool = False) -> Path:
    """Execute the selected notebooks under a profile (reusing unchanged stages); return the run folder."""
    import papermill  # papermill loads nbclient and jupyter: only when notebooks run
    from papermill.exceptions import PapermillExecutionError

    profile = load_profile(profile_name)
    books = select_notebooks(notebooks(), only, start)
    if not books:
        raise DLMError("no notebooks to run")
    params = resolve_parameters(profile, books)
    secrets = url_secrets(v for p in params.values() for v in p.values())
    params = {name: redact_values(p) for name, p in params.items()}  # all that is injected, hashed or recorded
    run_id = run_id or f"{dt.datetime.now():%Y%m%d-%H%M%S}-{Path(profile['_path']).stem}"
    run_dir = (runs_dir or paths.artifacts_root() / "runs") / run_id
    records = stages_dir(profile)
    run_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"run_id": run_id, "profile": Path(profile["_path"]).stem,
                              "profile_contents": redact_values({k: v for k, v in profile.items() if k != "_path"}),
                              "git_commit": git_commit(), "notebooks": {}}
    total = time.monotonic()
    status = "ok"
    keys: dict[str, str] = {}
    try:
        for i, nb in enumerate(books, start=1):
            t0 = time.monotonic()
            key = keys[nb.stem] = stage_key(nb, params[nb.stem], _upstream(nb, keys, records))
            reused = None if force else reusable_stage(records, nb, key, params[nb.stem])
            if reused:
                shutil.copyfile(reused["executed"], run_dir / nb.name)
                record["notebooks"][nb.stem] = {"status": "reused", "seconds": 0.0, "parameters": params[nb.stem],
                                                "from_run": reused["run_id"], "outputs": reused["outputs"]}
                record_stage(reused["run_id"], record["profile"], nb.stem, params[nb.stem])
                log(f"[{i}/{len(books)}] {nb.stem} reused: inputs and settings unchanged since run "
                    f"{reused['run_id']}", flush=True)
                continue
            log(f"[{i}/{len(books)}] {nb.stem} ...", flush=True)
            try:
                # The kernel starts in notebooks/, as in JupyterLab; its own log (a TCP-transport warning
                # per kernel) stays out of the terminal: errors only.
                os.environ[RUNNER_ENV] = nb.stem  # the kernel inherits it: the injected parameters are the run's
                # Training steps are relayed as the kernel reports them; real URLs reach it through its environment.
                with progress.relayed(run_dir / ".progress", log), _url_secrets(secrets):
                    papermill.execute_notebook(str(nb), str(run_dir / nb.name), parameters=params[nb.stem],
                                               kernel_name="python3", language="python", cwd=str(NOTEBOOKS_DIR),
                                               progress_bar=False, log_output=False,
                                               extra_arguments=["--IPKernelApp.log_level=ERROR"])
            except PapermillExecutionError as exc:
                status = f"failed in {nb.stem}"
                record["notebooks"][nb.stem] = {"status": "failed", "seconds": round(time.monotonic() - t0, 1),
                                                "cell": exc.cell_index, "error": redact_values(f"{exc.ename}: {exc.evalue}")}
                raise DLMError(f"{nb.name} failed in cell {exc.cell_index} (execution count {exc.exec_count}): "
                               f"{exc.ename}: {redact_values(str(exc.evalue))[:300]}; executed copy: {run_dir / nb.name}") from None
            finally:
                os.environ.pop(RUNNER_ENV, None)
            secs = time.monotonic() - t0
            outputs = save_stage(records, nb, key, params[nb.stem], run_dir / nb.name, run_id)
            record_stage(run_id, record["profile"], nb.stem, params[nb.stem])
            record["notebooks"][nb.stem] = {"status": "ok", "seconds": round(secs, 1), "parameters": params[nb.stem],
                                            "outputs": outputs}
            log(f"[{i}/{len(books)}] {nb.stem} done in {secs:.1f}s", flush=True)
    finally:
        record["status"] = status
        record["seconds_total"] = round(time.monotonic() - total, 1)
        configs = sorted((ROOT / "configs").rglob("*.yaml")) + [ROOT / "constitution.txt"]
        # input hashes keyed by the path from the project root, whatever the working directory
        inputs = {os.path.relpath(p, ROOT): sha256_file(p) for p in [Path(profile["_path"]).resolve(), *books, *configs]}
        write_json_atomic(run_dir / "manifest.json", {**manifest("run", config=record["profile_contents"], seed=None,
                                                                 **record), "inputs": inputs})

        report = build_report(run_dir)

    log(results_table(headline(run_dir), report), flush=True)
    return run_dir


@contextlib.contextmanager
def _url_secrets(secrets: dict[str, str]):
    """The real URLs behind redacted parameters, in the environment the kernel inherits (never recorded)."""
    if not secrets:
        yield
        return
    saved = os.environ.get(URL_SECRETS_ENV)
    os.environ[URL_SECRETS_ENV] = json.dumps({**json.loads(saved or "{}"), **secrets})
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(URL_SECRETS_ENV, None)
        else:
            os.environ[URL_SECRETS_ENV] = saved


def preflight(profile_name: str) -> None:
    """For profiles that ask for it (`preflight: true`), check every prerequisite before any work."""
    profile = load_profile(profile_name)
    if profile.get("preflight"):
        check_real_run(profile)


def build_parser():
    """The parser of `python run_all.py`."""
    import argparse

    parser = argparse.ArgumentParser(description="Run the numbered notebooks end to end with papermill.",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--profile", default="demo", help="profile name in configs/profiles/ or a YAML path")
    parser.add_argument("--only", nargs="+", help="run just these notebooks (e.g. 01 02_sortition; default: all)")
    parser.add_argument("--from", dest="start", help="start at this notebook (e.g. 03; default: the first)")
    parser.add_argument("--run-id", help="name of the run folder under <artifacts root>/runs/ (default: time and profile)")
    parser.add_argument("--force", action="store_true", help="rerun every stage even if its inputs are unchanged")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`python run_all.py [--profile demo] [--only 01 02] [--from 03]`."""
    args = build_parser().parse_args(argv)
    try:
        # One pipeline run per checkout: two would write the same artifacts and stage records.
        with output_lock(stages_dir(), "pipeline stage records"):
            preflight(args.profile)
            run_dir = run_profile(args.profile, args.only, args.start, args.run_id, force=args.force)
    except DLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"executed notebooks and manifest in {run_dir}")
    return 0
