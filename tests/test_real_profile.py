"""The `real` profile end to end: run_all.py executes every notebook with real.yaml's backends and settings.

The profile is real.yaml, loaded and overridden only where this machine lacks the real thing:
PRISM-format files generated here instead of the PRISM download, the tiny Llama-architecture
model instead of Llama-3.1-8B, tiny sizes (steps, questions, pairs), no GPU preflight, and fake
OpenAI-compatible servers on 127.0.0.1 for every `*_backend: openai` (question writing, judging,
calibration, agreement, the Batch API) and for the second judge (DLM_SECOND_JUDGE_BASE_URL). A
backend or key added to real.yaml is carried into this run as it is. Canaries sit in the servers'
URLs (userinfo and query string) and in the API key and HF token: no file of the run may hold one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from fake_openai import FakeOpenAI

from dlm import paths
from dlm.data.synth import generate_sample
from dlm.io import load_yaml

pytestmark = pytest.mark.slow

REAL = ROOT / "configs" / "profiles" / "real.yaml"
HERE = "artifacts/real"  # every output of this run, under the suite's temporary artifacts root
CANARIES = {"user": "alice:PW-CANARY-31f7", "query": "QUERY-CANARY-8e42", "second": "bob:PW-CANARY-second-5a",
            "OPENAI_API_KEY": "sk-CANARY-real-run-4b7c", "HF_TOKEN": "hf_CANARYrealrun9Z"}


def secret_url(server: FakeOpenAI, user: str) -> str:
    """The server's URL with credentials in its userinfo and query string."""
    return server.url.replace("http://", f"http://{user}@") + f"?api-key={CANARIES['query']}"


def real_here(real: dict, url: str) -> dict:
    """real.yaml with this machine's stand-ins; everything else (backends, models, arms, judges) as real.yaml has it."""
    profile = json.loads(json.dumps(real))
    profile["preflight"] = False  # it checks for a CUDA GPU with 40 GB, which this machine lacks
    profile["parameters"].update(prism_source=f"{HERE}/prism", model_id=f"{HERE}/models/tiny", panel_draws=1,
                                 train_seeds=1, max_steps=2)
    books = profile["notebooks"]
    for name, params in books.items():
        for key, value in list(params.items()):
            if key.endswith("_backend") and value == "openai":  # every OpenAI-compatible backend: the fake server
                params[key.removesuffix("_backend") + "_base_url"] = url
    books["02_sortition"].update(num_panel_samples=200, output_dir=f"{HERE}/sortition")
    books["03_prepare"].update(num_panel_samples=200, output_dir=f"{HERE}/data")
    books["04_train_dpo"].update(recipe="configs/train/tiny.yaml", make_tiny_model=True, tiny_warmup_steps=10,
                                 data_dir=f"{HERE}/data", checkpoint_dir=f"{HERE}/checkpoints")
    books["05_questions"].update(n_questions=2, end_clause=2, questions_dir=f"{HERE}/questions")
    books["06_evaluate"].update(max_new_tokens=8, questions_dir=f"{HERE}/questions", checkpoint_dir=f"{HERE}/checkpoints",
                                evaluation_output=f"{HERE}/evaluations/compare.jsonl",
                                agreement_dataset=f"{HERE}/data/full.jsonl", agreement_max_pairs=10,
                                openai_batch=True)  # the main judgments through the Batch API; the rest synchronous
    books["07_aligned_to_whom"].update(max_pairs=40, data_dir=f"{HERE}/data", checkpoint_dir=f"{HERE}/checkpoints",
                                       summary_output=f"{HERE}/evaluations/aligned_to_whom.json")
    return profile


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """(run folder, completed process, question/judge server, second-judge server, profile) of one real-shaped run."""
    tmp = tmp_path_factory.mktemp("real")
    generate_sample(paths.resolve(f"{HERE}/prism"), "demo", 0)  # PRISM's file layout (prism/SCHEMA.md)
    follows = {pair["follows"] for pair in load_yaml(ROOT / "constitution_calibration.yaml", "calibration set")}
    with FakeOpenAI(good_answers=follows) as server, FakeOpenAI(good_answers=follows) as second:
        profile = real_here(load_yaml(REAL, "profile"), secret_url(server, CANARIES["user"]))
        path = tmp / "real_here.yaml"
        path.write_text(yaml.safe_dump(profile, sort_keys=False))
        env = {**os.environ, "OPENAI_API_KEY": CANARIES["OPENAI_API_KEY"], "HF_TOKEN": CANARIES["HF_TOKEN"],
               "DLM_SECOND_JUDGE_BASE_URL": secret_url(second, CANARIES["second"])}
        proc = subprocess.run([sys.executable, "run_all.py", "--profile", str(path), "--run-id", "pytest-real"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    return paths.artifacts_root() / "runs" / "pytest-real", proc, server, second, profile


def test_the_real_profile_runs_every_notebook_and_ends_ok(real_run):
    run_dir, proc, *_ = real_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((run_dir / "manifest.json").read_text())
    assert record["status"] == "ok"
    assert sorted(record["notebooks"]) == [nb.stem for nb in sorted((ROOT / "notebooks").glob("0*.ipynb"))]
    assert all(nb["status"] == "ok" for nb in record["notebooks"].values())
    summary = json.loads(Path(paths.resolve(f"{HERE}/evaluations/compare.summary.json")).read_text())
    assert summary["pairs"] and any(p["primary"] for p in summary["pairs"].values())
    aligned = json.loads(Path(paths.resolve(f"{HERE}/evaluations/aligned_to_whom.json")).read_text())
    assert aligned


def test_every_backend_the_real_profile_names_was_used(real_run):
    run_dir, proc, server, second, profile = real_run
    real = load_yaml(REAL, "profile")
    openai_models = {params.get(key.removesuffix("backend") + "model") for params in real["notebooks"].values()
                     for key, value in params.items() if key.endswith("_backend") and value == "openai"}
    assert openai_models == {"gpt-4o-mini"}
    assert server.models.get("gpt-4o-mini", 0) > 0  # question writing, calibration and agreement, synchronously
    assert server.batches and all(b["status"] == "completed" for b in server.batches.values())  # 06's judgments
    second_model = real["notebooks"]["06_evaluate"]["second_judge_model"]
    assert second.models.get(second_model, 0) > 0 and set(second.models) == {second_model}
    clause = json.loads(Path(paths.resolve(f"{HERE}/questions/clause_01.json")).read_text())
    assert clause["backend"] == "openai" and clause["question_model"] == "gpt-4o-mini"
    assert f"api-key={CANARIES['query']}" in server.queries  # the real URL reached the server ...
    assert any(h.startswith("Basic ") for h in server.auth_headers | second.auth_headers)


def test_no_canary_is_in_any_file_of_the_run(real_run):
    run_dir, proc, *_ = real_run
    scanned = 0
    for folder in (run_dir, Path(paths.resolve(HERE)), paths.artifacts_root() / "stages"):
        for path in folder.rglob("*"):
            if path.is_file():
                scanned += 1
                data = path.read_bytes()
                assert not any(c.encode() in data for c in CANARIES.values()), path
    assert scanned > 100
    assert not any(c in proc.stdout + proc.stderr for c in CANARIES.values())
    executed = json.loads((run_dir / "05_questions.ipynb").read_text())
    injected = executed["metadata"]["papermill"]["parameters"]["question_base_url"]
    assert injected.startswith("http://***@127.0.0.1:") and injected.endswith("?api-key=***")
