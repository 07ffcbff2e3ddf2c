"""A new user's path in a real browser: JupyterLab at the root, notebook 02 from notebooks/, its quota tuner.

Slow (run by `.ci/run`): Debian's chromium + chromium-driver driven by selenium. A missing browser
fails these tests; it never skips them and never falls back to nbconvert. Screenshots of the tuner
and of the report's first screen are kept under `artifacts/ci-screenshots/` (or DLM_SCREENSHOTS),
the one place a test writes outside its temporary artifacts root.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import run_cli

import lab_browser as lb
from dlm import paths

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "notebooks/02_sortition.ipynb"
SCREENSHOTS = Path(os.environ.get("DLM_SCREENSHOTS") or paths.artifacts_root() / "ci-screenshots")  # read before the suite points DLM_ARTIFACTS at a temporary root


@pytest.fixture(scope="module")
def browser():
    problem = lb.missing_browser()
    if problem:
        pytest.fail(f"the browser test needs a browser: {problem}")
    driver = lb.chrome(1280, 1000)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def lab(artifacts_root, tmp_path_factory):
    """JupyterLab at the checkout's root; notebooks write under the temporary artifacts root, which holds the sample."""
    from dlm.data.synth import generate_sample

    generate_sample(artifacts_root / "sample", "demo", 0)  # 02's default prism_source, artifacts/sample
    env = {paths.ARTIFACTS_ENV: str(artifacts_root),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with lb.jupyter_lab(ROOT, tmp_path_factory.mktemp("jupyter"), env) as url:
        yield url


def _share_input(driver, key: str):
    """The input of one category's share, e.g. key 'age=65+ years old'."""
    return driver.execute_script(
        "return [...document.querySelectorAll('.dlm-tuner-share')]"
        ".find(e => e.querySelector('label') && e.querySelector('label').title === arguments[0])"
        "?.querySelector('input')", key)


def _shares(driver, attribute: str) -> dict[str, float]:
    return driver.execute_script(
        "const out = {}; for (const e of document.querySelectorAll('.dlm-tuner-share')) {"
        " const t = e.querySelector('label').title; if (t.startsWith(arguments[0] + '='))"
        " out[t.slice(arguments[0].length + 1)] = parseFloat(e.querySelector('input').value); } return out;", attribute)


def _type(element, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    element.click()
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(text, Keys.ENTER)


def _open_tab(driver, name: str) -> None:
    tab = lb.wait_for(lambda: [t for t in lb.find(driver, ".dlm-tuner-editors .lm-TabBar-tab") if t.text == name],
                      20, f"the {name} tab")
    tab[0].click()


def _message(driver) -> str:
    return lb.find(driver, ".dlm-tuner-message")[0].text


def _layout_problems(driver) -> list[str]:
    """Elements of the tuner that scroll sideways, and labels or buttons whose text is cut."""
    return driver.execute_script("""
      const out = [];
      for (const e of document.querySelectorAll('.dlm-tuner, .dlm-tuner *')) {
        const s = getComputedStyle(e);
        if (['auto', 'scroll'].includes(s.overflowX) && e.scrollWidth > e.clientWidth + 1)
          out.push('scrolls sideways: ' + e.className + ' ' + e.scrollWidth + ' > ' + e.clientWidth);
      }
      for (const e of document.querySelectorAll('.dlm-tuner-label span, .dlm-tuner button, .lm-TabBar-tabLabel'))
        if (e.offsetParent && e.scrollWidth > e.clientWidth + 1) out.push('cut: ' + e.textContent);
      return out;""")


def test_notebook_02_and_its_quota_tuner_in_jupyterlab(lab, browser, artifacts_root, tmp_path):
    notebooks_before = {p: p.read_bytes() for p in (ROOT / "notebooks").rglob("*") if p.is_file()}
    driver = browser
    lb.open_notebook(driver, lab, NOTEBOOK)
    lb.run_all(driver, timeout=900)
    assert lb.error_outputs(driver) == []

    tuner = lb.wait_for(lambda: lb.find(driver, ".dlm-tuner"), 60, "the quota tuner")[0]
    driver.execute_script("arguments[0].scrollIntoView()", tuner)
    cell = driver.execute_script("return arguments[0].closest('.jp-Cell')", tuner)
    assert cell.find_elements("css selector", ".jp-RenderedImage") == []  # no static figure beside the live one
    assert len([i for i in tuner.find_elements("css selector", "img") if i.is_displayed()]) == 1
    assert _message(driver).startswith("Feasible: a panel of 80")
    assert _layout_problems(driver) == []

    # an infeasible share: the verdict beside the plot names the binding quotas; the other shares rescale
    _open_tab(driver, "age")
    _type(_share_input(driver, "age=65+ years old"), "0.6")
    lb.wait_for(lambda: _message(driver).startswith("Infeasible"), 60, "the verdict to turn infeasible")
    message = _message(driver)
    assert "Binding quotas" in message and "age=65+ years old min" in message and "Smallest fixes" in message
    shares = _shares(driver, "age")
    assert shares["65+ years old"] == 0.6 and sum(shares.values()) == pytest.approx(1, abs=1e-6)
    assert len([i for i in tuner.find_elements("css selector", "img") if i.is_displayed()]) == 1
    lb.screenshot(tuner, SCREENSHOTS / "tuner-infeasible.png")

    # back to the starting quotas, then a feasible edit; both runs; save; `dlm sortition` accepts the file
    [b for b in tuner.find_elements("css selector", "button") if b.text == "reset"][0].click()
    lb.wait_for(lambda: _message(driver).startswith("Feasible"), 60, "the verdict to turn feasible after reset")
    _open_tab(driver, "ethnicity")
    _type(_share_input(driver, "ethnicity=White"), "0.55")
    lb.wait_for(lambda: _shares(driver, "ethnicity").get("White") == 0.55, 60, "the White share to change")
    lb.wait_for(lambda: _message(driver).startswith("Feasible"), 60, "a feasible verdict")
    for algorithm in ("legacy", "leximin"):
        lb.find(driver, f".dlm-tuner-run-{algorithm}")[0].click()
        lb.wait_for(lambda a=algorithm: f"{a.upper()}: minimum π" in lb.find(driver, ".dlm-tuner-runs")[0].text,
                    300, f"{algorithm} to finish")
    runs = lb.find(driver, ".dlm-tuner-runs")[0].text
    assert "Gini" in runs and lb.find(driver, ".dlm-tuner-pi-plot")[0].is_displayed()
    target = tmp_path / "tuned.yaml"
    _type(lb.find(driver, ".dlm-tuner-save-path input")[0], str(target))
    for attempt in range(3):  # the typed path reaches the kernel as its own message: the click can overtake it
        lb.find(driver, ".dlm-tuner-save")[0].click()
        try:
            lb.wait_for(lambda: f"saved {target.resolve()}" in lb.find(driver, ".dlm-tuner-save-status")[0].text,
                        30, f"the save to {target}")
            break
        except AssertionError:
            if attempt == 2:
                raise
    driver.execute_script("arguments[0].scrollIntoView()", tuner)
    lb.screenshot(tuner, SCREENSHOTS / "tuner.png")
    saved = yaml.safe_load(target.read_text())
    assert saved["attributes"][0]["population_proportions"]["White"] == 0.55
    out = run_cli("sortition", "--survey", artifacts_root / "sample", "--panel-config", target,
                  "--num-panel-samples", "200", "--output", tmp_path / "probs.csv")
    assert out.returncode == 0, out.stderr
    assert pd.read_csv(tmp_path / "probs.csv")["probability"].sum() == pytest.approx(80)

    # notebooks/ is untouched: no autosaved outputs, no checkpoint folder
    assert {p: p.read_bytes() for p in (ROOT / "notebooks").rglob("*") if p.is_file()} == notebooks_before


@pytest.fixture(scope="module")
def ci_report(tmp_path_factory) -> Path:
    """report.html of a `ci` run made in a temporary folder."""
    from dlm.pipeline import runner

    run = runner.run_profile("ci", run_id="browser-ci", runs_dir=tmp_path_factory.mktemp("runs"),
                             log=lambda *a, **k: None)
    return run / "report.html"


def test_report_first_screen(ci_report, browser):
    browser.set_window_size(1280, 1000)
    browser.get(ci_report.as_uri())
    lb.wait_for(lambda: lb.find(browser, "h1"), 60, "the report to load")
    time.sleep(1)
    lb.screenshot(browser, SCREENSHOTS / "report-first-screen.png")
    assert "{'loss'" not in browser.page_source
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 1280  # no sideways scrolling
    assert [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


ALL_NAN_COLUMNS = """
const bad = [];
for (const table of document.querySelectorAll('table')) {
  const rows = [...table.querySelectorAll('tbody tr')];
  if (!rows.length) continue;
  const width = Math.max(...rows.map(r => r.cells.length));
  for (let j = 0; j < width; j++) {
    const cells = rows.map(r => r.cells[j]).filter(c => c);
    if (cells.length && cells.every(c => ['nan', 'none', '<na>'].includes(c.textContent.trim().toLowerCase())))
      bad.push(table.closest('section') ? table.closest('section').id + ' column ' + j : 'column ' + j);
  }
}
return bad;
"""


def test_report_tables_have_no_column_of_nan_only(ci_report, browser):
    browser.get(ci_report.as_uri())
    lb.wait_for(lambda: lb.find(browser, "h1"), 60, "the report to load")
    assert browser.execute_script(ALL_NAN_COLUMNS) == []


def _demo_like_run(root: Path) -> Path:
    """A run folder whose outputs are those of a demo run: an uninformative LLM judge, two oracle judges."""
    import json

    ev, sample, run = root / "evaluations", root / "sample", root / "run"
    for d in (ev, sample, run):
        d.mkdir()
    contrast = {"arm_a": "hard", "arm_b": "contrast", "estimand": "conditional", "units": 0, "primary": False}
    primary = {"arm_a": "soft", "arm_b": "hard", "estimand": "conditional", "units": 0, "primary": True}
    (ev / "compare.summary.json").write_text(json.dumps({"arms": {
        "soft vs hard": {**primary, "win_rate": 0.5, "ci_low": None, "ci_high": None, "uninformative": True},
        "hard vs contrast": {**contrast, "win_rate": 0.5, "ci_low": None, "ci_high": None, "uninformative": True}}}))
    for group, (w, lo, hi) in {"55": (0.68, 0.59, 0.78), "under-55": (0.32, 0.22, 0.41)}.items():
        (ev / f"oracle_{group}.summary.json").write_text(json.dumps({
            "judges": [f"oracle:{group.replace('55', '55+') if group == '55' else group}"],
            "arms": {"hard vs contrast": {**contrast, "win_rate": w, "ci_low": lo, "ci_high": hi}}}))
    (sample / "oracle_spec.json").write_text(json.dumps({
        "kind": "dlm-synth-preference-rule", "styles": {"formal": {"markers": ["Certainly."]},
                                                        "casual": {"markers": ["Sure thing!"]}},
        "groups": {"55+": {"style_effect": {"formal": 15.0}}, "under-55": {"style_effect": {"formal": -15.0}}}}))
    (ev / "aligned_to_whom.json").write_text(json.dumps({
        "synthetic": True, "accuracy": {"base": {"estimate": 0.51, "ci_low": 0.46, "ci_high": 0.57, "runs": 1}},
        "planted": {"marker": "Certainly.", "older_arm": "hard", "younger_arm": "contrast", "recovered": True,
                    "older_prefers": 0.28, "younger_prefers": 0.03}}))
    (run / "manifest.json").write_text(json.dumps({"run_id": "demo-like", "profile": "demo", "status": "ok", "notebooks": {
        "06_evaluate": {"parameters": {"evaluation_output": str(ev / "compare.jsonl"), "prism_source": str(sample)}},
        "07_aligned_to_whom": {"parameters": {"summary_output": str(ev / "aligned_to_whom.json")}}}}))
    return run


def test_report_first_screen_shows_an_informative_known_answer_on_generated_data(tmp_path, browser):
    from dlm.pipeline.report import build_report

    report = build_report(_demo_like_run(tmp_path))
    browser.set_window_size(1280, 1000)
    browser.get(report.as_uri())
    lb.wait_for(lambda: lb.find(browser, "h1"), 60, "the report to load")
    known = browser.find_element("css selector", "#summary dd.known")
    inner_height = browser.execute_script("return window.innerHeight")
    assert known.is_displayed() and known.rect["y"] + known.rect["height"] <= inner_height  # on the first screen
    assert "hard vs contrast: win rate 0.680 [0.590, 0.780], expected to favour hard: as expected" in known.text
    assert "oracle:under-55" in known.text and "conditional on the trained models" in known.text
    primary = browser.find_element("css selector", "#summary dd.primary").text
    assert primary.startswith("soft vs hard: win rate 0.500 (uninformative")
