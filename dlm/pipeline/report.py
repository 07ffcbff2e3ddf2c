"""One HTML page telling the run's story: a one-screen summary read from the run's outputs, then each notebook.

The summary's numbers come from files the run wrote (06's `<evaluation_output stem>.summary.json`,
07's `summary_output`, the run manifest), never from prose; the terminal's closing table
(`dlm.pipeline.terminal.results_table`) reads the same `Headline`.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlm import paths
from dlm.experiment import designs as experiment
from dlm.io import write_text_atomic

HEADLINE_TAG = "headline"  # cell tag of the plots the summary shows (the first of each notebook: 06's, then 07's)
# Cell tag of further figures the summary shows after the headline plots, every one (e.g. a listwise ranking
# section appended to 06 tags its plot `report-figure`): the summary reads whichever a run produced.
FIGURE_TAG = "report-figure"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# a Python warning as printed on stderr: "FILE:LINE: CategoryWarning: message" and the source line under it
_WARNING = re.compile(r"^(?P<file>[^\n]*?\.py):\d+: \w*Warning: [^\n]*\n(?:[ \t]+[^\n]*\n?)?", re.M)
_LOG_DICT = re.compile(r"^\{'(?:loss|eval_loss|train_runtime)'[^\n]*\}\n?", re.M)


@dataclass(frozen=True)
class KnownAnswer:
    """A planted contrast under one oracle judge of the generated sample, with the direction the rule implies."""

    judge: str  # oracle:GROUP, judging as that group by the sample's rule
    contrast: str  # "older_arm vs younger_arm" (the planted verdict's arms)
    favoured: str  # the arm this judge should prefer (the one whose target holds more of its group)
    win_rate: float | None  # of the contrast's first arm, ties ½
    ci_low: float | None
    ci_high: float | None
    estimand: str  # conditional (one trained model per arm), over draws, over draws and seeds
    units: int | None

    def verdict(self) -> str:
        """'as expected' (the interval excludes ½ on the expected side), 'opposite', 'inconclusive' or 'no interval'."""
        if self.ci_low is None or self.ci_high is None:
            return "no interval"
        favours_first = self.favoured == self.contrast.split(" vs ")[0]
        if (self.ci_low > 0.5 and favours_first) or (self.ci_high < 0.5 and not favours_first):
            return "as expected"
        if self.ci_low > 0.5 or self.ci_high < 0.5:
            return "opposite to expected"
        return "inconclusive (the interval includes ½)"

    def text(self) -> str:
        """'oracle:55+  hard vs contrast: win rate 0.681 [0.585, 0.776], expected to favour hard: as expected (…)'."""
        if self.win_rate is None:
            return f"{self.judge}  {self.contrast}: not estimable"
        interval = f" [{self.ci_low:.3f}, {self.ci_high:.3f}]" if self.verdict() != "no interval" else ""
        return (f"{self.judge}  {self.contrast}: win rate {self.win_rate:.3f}{interval}, expected to favour "
                f"{self.favoured}: {self.verdict()} ({estimand_text(self.estimand, self.units)})")


def estimand_text(estimand: str | None, units: int | None) -> str:
    """An interval's estimand and units in words (#26: conditional / over draws / over draws and seeds)."""
    if not estimand:
        return "estimand not recorded"
    if estimand == "conditional":
        return "conditional on the trained models"
    return f"{estimand.replace('_', ' ')}, {units} independent units"


@dataclass(frozen=True)
class Headline:
    """The run's results in a few numbers, read from its own outputs."""

    run_id: str
    profile: str
    status: str
    git_commit: str | None
    seconds_total: float | None
    design: str
    primary: dict[str, Any] | None = None  # 06's primary arm contrast (win rate, interval, p)
    accuracy: dict[str, dict[str, Any]] = field(default_factory=dict)  # 07: held-out accuracy per arm
    planted: dict[str, Any] | None = None  # 07: the planted-effect verdict (generated data only)
    synthetic: bool = False
    sources: tuple[str, ...] = ()  # the files these numbers were read from
    known_answer: tuple[KnownAnswer, ...] = ()  # generated data: the planted contrast under each oracle judge


def _parameter(manifest: dict[str, Any], run_dir: Path, stem: str, name: str) -> str | None:
    """A notebook parameter as the run used it: the profile's value, else the notebook's default."""
    record = manifest.get("notebooks", {}).get(stem, {})
    if name in (record.get("parameters") or {}):
        return record["parameters"][name]
    executed = run_dir / f"{stem}.ipynb"
    if not executed.exists():
        return None
    import nbformat

    for cell in nbformat.read(executed, as_version=4).cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            match = re.search(rf"^{name}\s*=\s*\"([^\"]*)\"", cell.source, re.M)
            return match.group(1) if match else None
    return None


def _read_json(path: Path | None) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text()) if path else None
    except (OSError, ValueError):
        return None


def _design_line(manifest: dict[str, Any]) -> str:
    try:
        d = experiment.from_profile(manifest.get("profile_contents") or {}, "04_train_dpo")
        return (f"{len(d.arms)} arms ({', '.join(d.arm_names)}) × {d.panel_draws} panel draw(s) × {d.train_seeds} "
                f"training seed(s) = {len(d.runs())} trained models, {d.steps()} DPO steps each; primary contrast "
                f"{d.primary or 'none'}")
    except Exception as exc:  # noqa: BLE001 - the summary still shows the rest
        return f"(design not readable: {exc})"


def _oracle_favours(spec: dict[str, Any], judge: str, planted: dict[str, Any]) -> str:
    """The planted arm an oracle judge should prefer: the older arm when its group rewards the planted style."""
    style = next((name for name, v in spec.get("styles", {}).items() if planted.get("marker") in v.get("markers", [])),
                 None)
    effect = spec.get("groups", {}).get(judge.removeprefix("oracle:"), {}).get("style_effect", {}).get(style, 0.0)
    return planted["older_arm"] if effect > 0 else planted["younger_arm"]


def known_answers(evaluation_dir: Path, spec_path: Path, planted: dict[str, Any] | None) -> tuple[list[KnownAnswer],
                                                                                                     list[str]]:
    """The planted contrast (07's older vs younger arm) under each oracle judge 06 ran, and the files read."""
    spec = _read_json(spec_path)
    if not planted or not spec:
        return [], []
    wanted = {planted["older_arm"], planted["younger_arm"]}
    out, sources = [], []
    for path in sorted(evaluation_dir.glob("oracle_*.summary.json")):
        summary = _read_json(path) or {}
        judge = next(iter(summary.get("judges") or []), None) or f"oracle:{path.name[7:-13]}"
        for name, v in (summary.get("arms") or {}).items():
            if {v.get("arm_a"), v.get("arm_b")} == wanted:
                first = v["arm_a"] if v["arm_a"] == planted["older_arm"] else v["arm_b"]
                flip = first != v["arm_a"]
                w, lo, hi = v.get("win_rate"), v.get("ci_low"), v.get("ci_high")
                if flip:  # oriented older arm first, as 07's verdict reads
                    w, lo, hi = (None if w is None else 1 - w), (None if hi is None else 1 - hi), (None if lo is None else 1 - lo)
                second = (wanted - {first}).pop()
                out.append(KnownAnswer(judge, f"{first} vs {second}", _oracle_favours(spec, judge, planted), w, lo, hi,
                                       str(v.get("estimand")), v.get("units")))
                sources.append(str(path))
                break
    return out, sources


def headline(run_dir: str | Path) -> Headline:
    """The run's headline numbers from its manifest, 06's evaluation summary and 07's summary."""
    run_dir = Path(run_dir)
    manifest = _read_json(run_dir / "manifest.json") or {}
    sources = []
    primary = None
    output = _parameter(manifest, run_dir, "06_evaluate", "evaluation_output")
    if output:
        ev_path = Path(paths.resolve(output))
        ev_path = ev_path.with_name(f"{ev_path.stem}.summary.json")
        evaluation = _read_json(ev_path)
        if evaluation:
            sources.append(str(ev_path))
            for group in ("arms", "pairs"):
                found = [(k, v) for k, v in (evaluation.get(group) or {}).items() if v.get("primary")]
                if found:
                    name, v = found[0]
                    primary = {"name": name, "pooled": group == "arms", **{k: v.get(k) for k in (
                        "win_rate", "ci_low", "ci_high", "p_value", "uninformative", "runs", "units", "estimand")}}
                    break
    aligned = None
    summary_output = _parameter(manifest, run_dir, "07_aligned_to_whom", "summary_output")
    if summary_output:
        aligned_path = Path(paths.resolve(summary_output))
        aligned = _read_json(aligned_path)
        if aligned:
            sources.append(str(aligned_path))
    aligned = aligned or {}
    known: list[KnownAnswer] = []
    prism_source = _parameter(manifest, run_dir, "06_evaluate", "prism_source")
    if output and prism_source and aligned.get("synthetic"):
        known, read = known_answers(Path(paths.resolve(output)).parent,
                                    Path(paths.resolve(prism_source)) / "oracle_spec.json", aligned.get("planted"))
        sources.extend(read)
    return Headline(str(manifest.get("run_id", run_dir.name)), str(manifest.get("profile")),
                    str(manifest.get("status")), manifest.get("git_commit"), manifest.get("seconds_total"),
                    _design_line(manifest), primary, aligned.get("accuracy") or {}, aligned.get("planted"),
                    bool(aligned.get("synthetic")), tuple(sources), tuple(known))


def contrast_text(primary: dict[str, Any] | None) -> str:
    """The primary contrast as 'A vs B: win rate x [lo, hi], p = …' (or why there is none)."""
    if not primary:
        return "no primary contrast was judged"
    if primary.get("win_rate") is None:
        return f"{primary['name']}: not estimable"
    p = f", p = {primary['p_value']:.3g}" if primary.get("p_value") is not None else ""
    interval = (f" [{primary['ci_low']:.3f}, {primary['ci_high']:.3f}]" if primary.get("ci_low") is not None
                and primary.get("ci_high") is not None else "")
    flag = " (uninformative: all ties, all one way, or too few clauses)" if primary.get("uninformative") else ""
    scope = f"; {estimand_text(primary.get('estimand'), primary.get('units'))}" if primary.get("estimand") else ""
    return f"{primary['name']}: win rate {primary['win_rate']:.3f}{interval}{p}{flag}{scope}"


def planted_text(h: Headline) -> str:
    """The planted-effect verdict in words (only generated data have one)."""
    if not h.synthetic:
        return "not applicable: real data have no planted effect"
    if not h.planted:
        return "no two scored quota-panel arms differ in their planted-group target share"
    p = h.planted
    return (f"{'recovered' if p['recovered'] else 'NOT recovered'}: {p['older_arm']} prefers the planted style in "
            f"{p['older_prefers']:.0%} of style-differing pairs, {p['younger_arm']} in {p['younger_prefers']:.0%}")


def accuracy_text(v: dict[str, Any]) -> str:
    """One arm's held-out accuracy as 'x [lo, hi]' (n/a when not computed)."""
    if None in (v.get("estimate"), v.get("ci_low"), v.get("ci_high")):
        return "n/a"
    return f"{v['estimate']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"


def accuracy_scope(accuracy: dict[str, dict[str, Any]]) -> str:
    """The accuracy intervals' rule, clusters and estimand in words (one line for every arm)."""
    scopes = sorted({v["scope"] for v in accuracy.values() if v.get("scope")})
    if scopes:  # 07 names each interval's estimand (conditional / over draws / over draws and seeds)
        estimand = " / ".join(scopes)
    else:
        runs = sorted({int(v.get("runs") or 1) for v in accuracy.values()})
        estimand = ("conditional on each arm's trained model" if runs == [1] else
                    f"over each arm's {'/'.join(map(str, runs))} trained models (base: conditional)")
    return f"log-likelihood rule, 95% intervals clustered by rater, {estimand}"


# ----------------------------------------------------------------------------- the page


def _clean(nb: Any) -> tuple[Any, list[str], list[str]]:
    """Outputs as readers should see them, the headline cells' PNGs and the further report figures' PNGs.

    Third-party warnings (FutureWarning …, printed with a path outside dlm) and raw trainer log dicts
    are dropped; dlm's own warnings stay. Widget views are replaced by their static fallback (an
    empty widget placeholder needs JavaScript the page does not load); widget state is not embedded.
    """
    nb.metadata.pop("widgets", None)
    images: list[str] = []
    figures: list[str] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text = _WARNING.sub(lambda m: m.group(0) if "/dlm/" in m.group("file").replace("\\", "/")
                                    else "", out.get("text", ""))
                out["text"] = _LOG_DICT.sub("", text)
                if not out["text"].strip():
                    continue
            data = out.get("data")
            if data is not None:
                data.pop(WIDGET_MIME, None)
                if not data:
                    continue
                if HEADLINE_TAG in cell.metadata.get("tags", []) and "image/png" in data:
                    images.append(data["image/png"])
                if FIGURE_TAG in cell.metadata.get("tags", []) and "image/png" in data:
                    figures.append(data["image/png"])
            kept.append(out)
        cell["outputs"] = kept
    return nb, images, figures


def _png(b64: str | list[str], alt: str) -> str:
    data = "".join(b64) if isinstance(b64, list) else b64
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data.strip()}">'


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;overflow-wrap:anywhere}
img{max-width:100%;height:auto} table{border-collapse:collapse;font-size:0.85em;display:block;max-width:100%;
overflow-x:auto} td,th{border:1px solid #ccc;padding:2px 6px} pre{white-space:pre-wrap;word-break:break-word}
section{border-top:2px solid #444;margin-top:2em} .jp-OutputArea-output{overflow-x:auto;max-width:100%}
#summary{border:none;margin-top:0} #summary .plots{display:flex;gap:1em;flex-wrap:wrap}
#summary .plots img{flex:1 1 0;min-width:0;max-height:420px;object-fit:contain}
#summary dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;margin:.5em 0}
#summary dt{font-weight:600} details>summary{cursor:pointer;font-size:1.2em;font-weight:600;padding:.4em 0}"""


def build_report(run_dir: str | Path) -> Path:
    """Write `<run_dir>/report.html`: the one-screen summary, then each notebook's outputs (code hidden)."""
    import nbformat
    from nbconvert import HTMLExporter

    run_dir = Path(run_dir)
    exporter = HTMLExporter(template_name="basic", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    h = headline(run_dir)
    manifest = _read_json(run_dir / "manifest.json") or {}
    sections, toc, plots, figures = [], [], {}, []
    for nb_path in sorted(run_dir.glob("[0-9][0-9]_*.ipynb")):
        nb, images, more = _clean(nbformat.read(nb_path, as_version=4))
        plots[nb_path.stem[:2]] = images
        figures += [_png(img, f"{nb_path.stem} figure") for img in more]
        body, _ = exporter.from_notebook_node(nb)
        toc.append(f'<li><a href="#{nb_path.stem}">{html.escape(nb_path.stem)}</a></li>')
        # Each notebook folds away under its name: the page is the summary plus a list (a link opens its section).
        sections.append(f'<section id="{nb_path.stem}"><details><summary>{html.escape(nb_path.stem)}: every '
                        f'output</summary>{body}</details></section>')
    headline_plots = [_png(img, f"{stem} headline plot") for stem in ("06", "07") for img in plots.get(stem, [])[:1]]
    accuracy = ", ".join(f"{html.escape(arm)} {accuracy_text(v)}" for arm, v in h.accuracy.items()) or "not computed"
    if h.accuracy:
        accuracy += f" ({html.escape(accuracy_scope(h.accuracy))})"
    known = "".join(f"<li>{html.escape(k.text())}</li>" for k in h.known_answer)
    known = (f'<dt>Known answer</dt><dd class="known"><ul>{known}</ul>judged by the oracle judges of the generated '
             "sample (each judges as one rater group by the rule the sample was generated with); "
             "the LLM judge's view is the primary contrast below</dd>" if known else "")
    times = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v.get('status')))}</td>"
                    f"<td>{v.get('seconds')}</td></tr>" for k, v in manifest.get("notebooks", {}).items())
    data_note = " on a <b>generated</b> PRISM-shaped sample" if h.synthetic else ""
    summary = f"""<section id="summary">
<p>Models aligned with DPO to the preferences of sortition panels and their controls{data_note}, judged on
constitution questions (06) and scored on held-out raters (07).</p>
<dl><dt>Design</dt><dd>{html.escape(h.design)}</dd>
{known}
<dt>Primary contrast</dt><dd class="primary">{html.escape(contrast_text(h.primary))}</dd>
<dt>Held-out accuracy</dt><dd>{accuracy}</dd>
<dt>Planted effect</dt><dd class="planted">{html.escape(planted_text(h))}</dd>
<dt>Provenance</dt><dd>profile <b>{html.escape(h.profile)}</b>, commit <code>{html.escape(str(h.git_commit))}</code>,
status <b>{html.escape(h.status)}</b>, {h.seconds_total} s; numbers from {html.escape(', '.join(Path(s).name for s in h.sources) or 'no summary files')}</dd></dl>
<div class="plots">{''.join(headline_plots)}</div>
{f'<div class="plots figures">{"".join(figures)}</div>' if figures else ''}
</section>"""
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>democratic-llm run {html.escape(h.run_id)}</title>
<style>{CSS}</style></head><body>
<h1>democratic-llm: run {html.escape(h.run_id)}</h1>
{summary}
<section id="contents"><h2>The notebooks</h2>
<table><tr><th>notebook</th><th>status</th><th>seconds</th></tr>{times}</table>
<ol>{''.join(toc)}</ol></section>
{''.join(sections)}
</body></html>
"""
    out = run_dir / "report.html"
    write_text_atomic(out, page)
    return out
