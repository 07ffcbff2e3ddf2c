"""One HTML page telling the run's story: a one-screen summary read from the run's outputs, then each notebook.

The summary's numbers come from files the run wrote (06's `<evaluation_output stem>.summary.json`,
07's `summary_output`, the run manifest), never from prose; the terminal's closing table
(`results_table`) reads the same `Headline`.
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

HEADLINE_TAG = "headline"  # cell tag of the plots the summary shows (06's forest plot, 07's accuracy by group)
LISTWISE_TAG = "listwise-headline"  # 06's Plackett–Luce worths, shown in the summary after the headline plots
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# a Python warning as printed on stderr: "FILE:LINE: CategoryWarning: message" and the source line under it
_WARNING = re.compile(r"^(?P<file>[^\n]*?\.py):\d+: \w*Warning: [^\n]*\n(?:[ \t]+[^\n]*\n?)?", re.M)
_LOG_DICT = re.compile(r"^\{'(?:loss|eval_loss|train_runtime)'[^\n]*\}\n?", re.M)


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
                        "win_rate", "ci_low", "ci_high", "p_value", "uninformative", "runs", "units")}}
                    break
    aligned = None
    summary_output = _parameter(manifest, run_dir, "07_aligned_to_whom", "summary_output")
    if summary_output:
        aligned_path = Path(paths.resolve(summary_output))
        aligned = _read_json(aligned_path)
        if aligned:
            sources.append(str(aligned_path))
    aligned = aligned or {}
    return Headline(str(manifest.get("run_id", run_dir.name)), str(manifest.get("profile")),
                    str(manifest.get("status")), manifest.get("git_commit"), manifest.get("seconds_total"),
                    _design_line(manifest), primary, aligned.get("accuracy") or {}, aligned.get("planted"),
                    bool(aligned.get("synthetic")), tuple(sources))


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
    return f"{primary['name']}: win rate {primary['win_rate']:.3f}{interval}{p}{flag}"


def planted_text(h: Headline) -> str:
    """The planted-effect verdict in words (only generated data have one)."""
    if not h.synthetic:
        return "not applicable: real data have no planted effect"
    if not h.planted:
        return "no two scored quota-panel arms differ in their planted-group target share"
    p = h.planted
    return (f"{'recovered' if p['recovered'] else 'NOT recovered'}: {p['older_arm']} prefers the planted style in "
            f"{p['older_prefers']:.0%} of style-differing pairs, {p['younger_arm']} in {p['younger_prefers']:.0%}")


def results_table(h: Headline, report: Path | None = None) -> str:
    """The terminal's closing summary: primary contrast, accuracy per arm, planted verdict, report path."""
    lines = [f"results of run {h.run_id} ({h.profile}, {h.status})",
             f"  primary contrast   {contrast_text(h.primary)}"]
    if h.accuracy:
        lines.append("  held-out accuracy  " + "  ".join(
            f"{arm} {v['estimate']:.3f}" if v.get("estimate") is not None else f"{arm} n/a"
            for arm, v in h.accuracy.items()))
    lines.append(f"  planted effect     {planted_text(h)}")
    if report:
        lines.append(f"  report             {report}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the page


def _clean(nb: Any) -> tuple[Any, list[str]]:
    """Outputs as readers should see them, and the headline cells' PNGs.

    Third-party warnings (FutureWarning …, printed with a path outside dlm) and raw trainer log dicts
    are dropped; dlm's own warnings stay. Widget views are replaced by their static fallback (an
    empty widget placeholder needs JavaScript the page does not load); widget state is not embedded.
    """
    nb.metadata.pop("widgets", None)
    images: list[str] = []
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
                if LISTWISE_TAG in cell.metadata.get("tags", []) and "image/png" in data:
                    nb.metadata.setdefault("listwise_png", []).append(data["image/png"])
            kept.append(out)
        cell["outputs"] = kept
    return nb, images


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
#summary dt{font-weight:600}"""


def build_report(run_dir: str | Path) -> Path:
    """Write `<run_dir>/report.html`: the one-screen summary, then each notebook's outputs (code hidden)."""
    import nbformat
    from nbconvert import HTMLExporter

    run_dir = Path(run_dir)
    exporter = HTMLExporter(template_name="basic", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    h = headline(run_dir)
    manifest = _read_json(run_dir / "manifest.json") or {}
    sections, toc, plots, listwise = [], [], {}, []
    for nb_path in sorted(run_dir.glob("[0-9][0-9]_*.ipynb")):
        nb, images = _clean(nbformat.read(nb_path, as_version=4))
        plots[nb_path.stem[:2]] = images
        listwise += nb.metadata.pop("listwise_png", [])
        body, _ = exporter.from_notebook_node(nb)
        toc.append(f'<li><a href="#{nb_path.stem}">{html.escape(nb_path.stem)}</a></li>')
        sections.append(f'<section id="{nb_path.stem}">{body}</section>')
    headline_plots = [_png(img, f"{stem} headline plot") for stem in ("07", "06") for img in plots.get(stem, [])[:1]]
    headline_plots += [_png(img, "06 Plackett–Luce worths (listwise)") for img in listwise[:1]]
    accuracy = ", ".join(f"{html.escape(arm)} {v['estimate']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"
                         if None not in (v.get("estimate"), v.get("ci_low"), v.get("ci_high")) else
                         f"{html.escape(arm)} n/a" for arm, v in h.accuracy.items()) or "not computed"
    times = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v.get('status')))}</td>"
                    f"<td>{v.get('seconds')}</td></tr>" for k, v in manifest.get("notebooks", {}).items())
    data_note = " on a <b>generated</b> PRISM-shaped sample" if h.synthetic else ""
    summary = f"""<section id="summary">
<p>Models aligned with DPO to the preferences of sortition panels and their controls{data_note}, judged on
constitution questions (06) and scored on held-out raters (07).</p>
<dl><dt>Design</dt><dd>{html.escape(h.design)}</dd>
<dt>Primary contrast</dt><dd class="primary">{html.escape(contrast_text(h.primary))}</dd>
<dt>Held-out accuracy</dt><dd>{accuracy}</dd>
<dt>Planted effect</dt><dd class="planted">{html.escape(planted_text(h))}</dd>
<dt>Provenance</dt><dd>profile <b>{html.escape(h.profile)}</b>, commit <code>{html.escape(str(h.git_commit))}</code>,
status <b>{html.escape(h.status)}</b>, {h.seconds_total} s; numbers from {html.escape(', '.join(Path(s).name for s in h.sources) or 'no summary files')}</dd></dl>
<div class="plots">{''.join(headline_plots)}</div>
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
