"""The terminal names each interval's estimand and units: `dlm summarize` and run_all's closing table."""

from __future__ import annotations

import json

from conftest import run_cli
from dlm.pipeline.report import Headline
from dlm.pipeline.terminal import results_table


def test_summarize_prints_each_intervals_estimand_and_units(tmp_path):
    rows = []
    for clause in range(6):
        for q in range(4):
            for r in range(2):
                for s in range(2):
                    hard = "hard" + (f"-r{r}" if r else "") + (f"-s{s}" if s else "")
                    soft = "soft" + (f"-s{s}" if s else "")
                    winner = soft if (clause + q + r) % 3 else hard
                    rows += [{"question_id": f"c{clause}-q{q}", "clause_id": f"c{clause}", "model_a": soft,
                              "model_b": hard, "order": order, "judge_model": "j", "winner": winner, "len_a": 10,
                              "len_b": 10} for order in ("ab", "ba")]
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = run_cli("summarize", "--records", records, "--replicates", "--primary", "soft:hard",
                  "--output", tmp_path / "s.json")
    assert out.returncode == 0, out.stderr
    arm = next(ln for ln in out.stdout.splitlines() if ln.startswith("soft vs hard:"))
    assert "interval over draws and seeds" in arm and "independent units of trained models" in arm
    assert "questions clustered by clause" in arm
    one_pair = next(ln for ln in out.stdout.splitlines() if ln.startswith("soft-s1 vs hard-r1-s1"))
    assert "interval conditional on the trained models" in one_pair


def test_the_closing_table_names_the_estimand_of_every_interval(tmp_path):
    summary = tmp_path / "compare.summary.json"
    summary.write_text(json.dumps({"arms": {"soft vs hard": {
        "primary": True, "win_rate": 0.6, "ci_low": 0.52, "ci_high": 0.68, "p_value": 0.01, "units": 3,
        "scope": "over draws and seeds"}}}))
    h = Headline("r1", "real", "ok", None, 1.0, "design",
                 primary={"name": "soft vs hard", "pooled": True, "win_rate": 0.6, "ci_low": 0.52, "ci_high": 0.68,
                          "p_value": 0.01, "uninformative": False, "runs": 12, "units": 3},
                 accuracy={"hard": {"estimate": 0.61, "ci_low": 0.58, "ci_high": 0.64, "runs": 6,
                                    "scope": "over draws and seeds", "units": 4}},
                 planted={"recovered": True, "older_arm": "hard", "older_prefers": 0.4, "younger_arm": "contrast",
                          "younger_prefers": 0.1, "difference": 0.3, "ci_low": 0.2, "ci_high": 0.4, "raters": 90,
                          "estimand": "conditional on the trained models"},
                 synthetic=True, sources=(str(summary),))
    text = results_table(h)
    assert "interval over draws and seeds, 3 independent units of trained models; units: win rate" in text
    assert "    hard             0.610 [0.580, 0.640]" in text  # one row per arm
    assert "held-out accuracy  (log-likelihood rule, 95% intervals clustered by rater, over draws and seeds; units: " \
           "share of held-out raters' pairs" in text
    assert "difference +0.300 [+0.200, +0.400]" in text and "interval conditional on the trained models" in text


def test_an_uninformative_primary_is_one_line_without_an_interval_scope():
    h = Headline("r2", "demo", "ok", None, 1.0, "design",
                 primary={"name": "soft vs hard", "pooled": False, "win_rate": 0.5, "ci_low": None, "ci_high": None,
                          "p_value": None, "uninformative": True, "runs": 2, "units": 0},
                 synthetic=True)
    lines = results_table(h).splitlines()
    primary = [i for i, line in enumerate(lines) if line.startswith("  primary contrast")]
    assert len(primary) == 1 and "uninformative" in lines[primary[0]]
    assert not lines[primary[0] + 1].lstrip().startswith("interval")  # no scope line for an interval not shown
