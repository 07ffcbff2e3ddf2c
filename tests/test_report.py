"""report.html: readers see results and dlm's own messages, not third-party warnings, log dicts or empty widgets."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import nbformat
import pandas as pd
import pytest

from dlm.pipeline.report import (Headline, _clean, accuracy_text, build_report, contrast_text, known_answers,
                                 planted_text)
from dlm.pipeline.terminal import results_table


def _notebook():
    warning = ("/venv/lib/python3.11/site-packages/transformers/modeling_utils.py:3312: FutureWarning: "
               "`is_gradient_checkpointing` is deprecated\n  warnings.warn(\n")
    own = "/work/repo/dlm/sortition/pool.py:88: UserWarning: category 'Other' has no one in the pool\n  warn(\n"
    cell = nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("stream", name="stderr", text=warning + own),
        nbformat.v4.new_output("stream", name="stdout", text="{'loss': '0.6835', 'grad_norm': '1.9'}\nkept line\n"),
        nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "m"},
                                                     "text/plain": "VBox()"}),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo="}),
    ])
    cell.metadata["tags"] = ["headline"]
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb.metadata["widgets"] = {"state": {}}
    return nb


def test_third_party_warnings_log_dicts_and_widget_views_are_dropped_and_dlm_warnings_kept():
    nb, images, _ = _clean(_notebook())
    outputs = nb.cells[0].outputs
    text = "".join(o.get("text", "") for o in outputs)
    assert "FutureWarning" not in text and "{'loss'" not in text
    assert "category 'Other' has no one in the pool" in text and "kept line" in text
    assert all("application/vnd.jupyter.widget-view+json" not in o.get("data", {}) for o in outputs)
    assert "widgets" not in nb.metadata
    assert images == ["iVBORw0KGgo="]  # the headline cell's plot, for the summary


def test_the_terminal_table_and_the_summary_read_the_same_numbers():
    h = Headline("r1", "demo", "ok", "abc", 12.0, "design", primary={
        "name": "soft vs hard", "win_rate": 0.55, "ci_low": 0.41, "ci_high": 0.69, "p_value": 0.5,
        "uninformative": False}, accuracy={"hard": {"estimate": 0.61, "ci_low": 0.5, "ci_high": 0.7}},
        planted={"recovered": True, "older_arm": "hard", "older_prefers": 0.7, "younger_arm": "contrast",
                 "younger_prefers": 0.4}, synthetic=True)
    assert contrast_text(h.primary) == "soft vs hard: win rate 0.550 [0.410, 0.690], p = 0.5"
    assert planted_text(h).startswith("recovered: hard prefers the planted style in 70%")
    table = results_table(h)
    assert contrast_text(h.primary) in table and planted_text(h) in table
    assert "hard" in table and accuracy_text(h.accuracy["hard"]) == "0.610 [0.500, 0.700]" in table
    assert planted_text(Headline("r", "real", "ok", None, 1.0, "d")) == "not applicable: real data have no planted effect"


SPEC = {"kind": "dlm-synth-preference-rule", "styles": {"formal": {"markers": ["Certainly."]},
                                                      "casual": {"markers": ["Sure thing!"]}},
        "groups": {"55+": {"style_effect": {"formal": 15.0, "casual": -15.0}},
                   "under-55": {"style_effect": {"formal": -15.0, "casual": 15.0}}}}
PLANTED = {"marker": "Certainly.", "older_arm": "hard", "younger_arm": "contrast", "recovered": True}


def _oracle_summary(path, judge, win_rate, ci):
    arms = {"base vs hard": {"arm_a": "base", "arm_b": "hard", "win_rate": 0.5},
            "contrast vs hard": {"arm_a": "contrast", "arm_b": "hard", "win_rate": win_rate, "ci_low": ci[0],
                                 "ci_high": ci[1], "estimand": "conditional", "units": 0}}
    path.write_text(json.dumps({"judges": [judge], "arms": arms}))


def test_the_known_answer_is_the_planted_contrast_oriented_older_arm_first_with_its_expected_direction(tmp_path):
    (tmp_path / "oracle_spec.json").write_text(json.dumps(SPEC))
    _oracle_summary(tmp_path / "oracle_55.summary.json", "oracle:55+", 0.3, (0.2, 0.4))  # contrast loses: hard wins
    _oracle_summary(tmp_path / "oracle_under-55.summary.json", "oracle:under-55", 0.55, (0.45, 0.65))
    known, sources = known_answers(tmp_path, tmp_path / "oracle_spec.json", PLANTED)
    older, younger = sorted(known, key=lambda k: k.judge)
    assert older.contrast == younger.contrast == "hard vs contrast" and len(sources) == 2
    assert older.favoured == "hard" and (older.win_rate, older.ci_low, older.ci_high) == pytest.approx((0.7, 0.6, 0.8))
    assert older.verdict() == "as expected" and "[0.600, 0.800]" in older.text()
    assert younger.favoured == "contrast" and younger.verdict().startswith("inconclusive")
    assert "conditional" in younger.text()
    flipped = known_answers(tmp_path, tmp_path / "oracle_spec.json", {**PLANTED, "older_arm": "contrast",
                                                                      "younger_arm": "hard"})[0]
    assert min(flipped, key=lambda k: k.judge).verdict() == "opposite to expected"
    assert known_answers(tmp_path, tmp_path / "oracle_spec.json", None) == ([], [])  # real data: no planted verdict


@pytest.mark.slow
def test_report_fits_1280_pixels_and_logs_no_console_errors_in_chromium(tmp_path):
    """A wide table, a long unbroken line and a widget output: the page still does not scroll sideways."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is needed (.ci/run installs it: apt-get install chromium)"
    wide = pd.DataFrame([[f"value-{i}-{j}" for j in range(40)] for i in range(3)], columns=[f"column {j}" for j in range(40)])
    cell = nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="x" * 3000 + "\n"),
        nbformat.v4.new_output("execute_result", data={"text/html": wide.to_html(), "text/plain": "table"},
                               execution_count=1),
        nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "m"},
                                                     "text/plain": "VBox()"}),
    ])
    nbformat.write(nbformat.v4.new_notebook(cells=[cell], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                                   "language": "python"}}),
                   tmp_path / "01_explore_prism.ipynb")
    (tmp_path / "manifest.json").write_text(json.dumps({"run_id": "wide", "profile": "ci", "status": "ok"}))
    page = build_report(tmp_path).read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", '<script>addEventListener("load", () => document.body.setAttribute('
                                              '"data-scroll-width", document.documentElement.scrollWidth))</script></body>'))
    out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                          "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=120)
    width = int(re.search(r'data-scroll-width="(\d+)"', out.stdout).group(1))
    assert width <= 1280
    assert "CONSOLE" not in out.stderr and "Uncaught" not in out.stderr, out.stderr[-2000:]


def test_contrast_tables_show_a_few_formatted_columns_and_collapse_uninformative_rows():
    from dlm.notebook.tables import contrast_table

    arms = {"soft vs hard": {"primary": True, "win_rate": 0.5, "ci_low": None, "ci_high": None, "uninformative": True,
                             "estimand": "conditional", "units": 0, "var_from_models": None},
            "hard vs contrast": {"primary": False, "win_rate": 0.68, "ci_low": 0.585, "ci_high": 0.776,
                                 "p_value": 0.001, "p_holm_secondary": 0.004, "uninformative": False,
                                 "estimand": "over_draws", "units": 3, "var_from_models": 0.2}}
    t = contrast_table(arms)
    assert list(t.table.columns) == ["win rate", "95% interval", "p", "units", "estimand", "flag"]
    row = t.table.loc["hard vs contrast"]
    assert (row["win rate"], row["95% interval"], row["p"]) == ("0.680", "[0.585, 0.776]", "0.004 (Holm)")
    assert row["estimand"] == "over draws, 3 independent units" and row["flag"] == "secondary"
    assert t.uninformative == ("soft vs hard (primary)",) and "soft vs hard (primary)" in t.note()
    assert not t.table.isna().any().any()


def test_07s_technical_columns_are_shown_only_where_the_design_estimates_them():
    from dlm.notebook.tables import variance_details, without_empty_columns

    one_run = pd.DataFrame({"between_model_sd": [float("nan")] * 2, "cluster_sd": [float("nan")] * 2,
                            "residual_sd": [float("nan")] * 2}, index=["base", "hard"])
    assert variance_details(one_run, "variance components") is None  # one model per arm: nothing to show
    replicated = one_run.assign(cluster_sd=[0.21, 0.19])
    details = variance_details(replicated, "variance components").data
    assert details.startswith("<details><summary>variance components</summary>") and "cluster_sd" in details
    assert "between_model_sd" not in details and "residual_sd" not in details
    style = pd.DataFrame({"prefers_formal": [0.3, 0.1], "between_model_sd": [float("nan")] * 2, "runs": [1, 1]})
    assert list(without_empty_columns(style).columns) == ["prefers_formal", "runs"]


def test_the_pairwise_and_listwise_table_says_why_an_interval_is_missing():
    from dlm.notebook.tables import modes_table

    nan = float("nan")
    pairs = {"soft vs hard": {"primary": True, "direct": 0.5, "direct_low": nan, "direct_high": nan,
                              "ranked_above": 0.62, "ranked_above_low": 0.55, "ranked_above_high": 0.69,
                              "implied": 0.6, "implied_low": 0.52, "implied_high": 0.67}}
    row = modes_table(pairs).loc["soft vs hard"]
    assert row["pairwise win rate"] == "0.500 (no interval: uninformative)"
    assert row["ranked above (listwise)"] == "0.620 [0.550, 0.690]" and row["flag"] == "primary"


def test_07s_headline_plot_the_summary_file_and_the_terminal_show_the_same_accuracy(tmp_path):
    from dlm.alignment import heldout

    by_arm = pd.DataFrame({"arm": ["base", "hard"], "estimate": [0.516, 0.603], "ci_low": [0.462, 0.556],
                           "ci_high": [0.570, 0.651], "runs": [1, 1]})
    written = heldout.write_summary(tmp_path / "aligned.json", by_arm, None, heldout.LOGLIK, synthetic=True)
    plotted = heldout.accuracy_record(by_arm)  # what 07's headline cell draws
    assert written["accuracy"] == plotted == json.loads((tmp_path / "aligned.json").read_text())["accuracy"]
    table = results_table(Headline("r", "demo", "ok", None, 1.0, "d", accuracy=plotted))
    assert all(accuracy_text(v) in table for v in plotted.values()) and "0.603 [0.556, 0.651]" in table
