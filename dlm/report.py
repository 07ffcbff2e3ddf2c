"""One HTML page telling the run's story, assembled from its executed notebooks (code hidden)."""

from __future__ import annotations

import html
import json
from pathlib import Path

from dlm.io import write_text_atomic


def build_report(run_dir: str | Path) -> Path:
    """Write `<run_dir>/report.html`: a header with the run's manifest, then each notebook's outputs."""
    import nbformat
    from nbconvert import HTMLExporter

    run_dir = Path(run_dir)
    exporter = HTMLExporter(template_name="basic", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    manifest = json.loads((run_dir / "manifest.json").read_text()) if (run_dir / "manifest.json").exists() else {}
    books = sorted(run_dir.glob("[0-9][0-9]_*.ipynb"))
    sections, toc = [], []
    for nb_path in books:
        body, _ = exporter.from_notebook_node(nbformat.read(nb_path, as_version=4))
        anchor = nb_path.stem
        toc.append(f'<li><a href="#{anchor}">{html.escape(nb_path.stem)}</a></li>')
        sections.append(f'<section id="{anchor}">{body}</section>')
    times = "".join(f"<tr><td>{html.escape(k)}</td><td>{v.get('status')}</td><td>{v.get('seconds')}</td></tr>"
                    for k, v in manifest.get("notebooks", {}).items())
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>democratic-llm run {html.escape(str(manifest.get('run_id', run_dir.name)))}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
img{{max-width:100%}} table{{border-collapse:collapse;font-size:0.85em}} td,th{{border:1px solid #ccc;padding:2px 6px}}
section{{border-top:2px solid #444;margin-top:2em}}</style></head><body>
<h1>democratic-llm: run {html.escape(str(manifest.get('run_id', run_dir.name)))}</h1>
<p>Profile <b>{html.escape(str(manifest.get('profile')))}</b>, commit <code>{html.escape(str(manifest.get('git_commit')))}</code>,
status <b>{html.escape(str(manifest.get('status')))}</b>, {manifest.get('seconds_total')} s in all.
The story: who PRISM's participants are, the sortition panels, the preference data each panel yields,
the DPO training curves, and how the aligned models compare clause by clause.</p>
<table><tr><th>notebook</th><th>status</th><th>seconds</th></tr>{times}</table>
<ol>{''.join(toc)}</ol>
{''.join(sections)}
</body></html>
"""
    out = run_dir / "report.html"
    write_text_atomic(out, page)
    return out
