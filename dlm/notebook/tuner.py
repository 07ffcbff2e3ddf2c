"""Notebook 02's quota tuner: ipywidgets over `dlm.sortition.tuning` (feasibility, LEGACY/LEXIMIN, save as YAML).

The widget shows the live view; outside a live kernel (papermill, the HTML report) the same
object displays as a static figure with the verdict beside it, so no stale copy sits under
the live one.
"""

from __future__ import annotations

import base64
import copy
import html
import io
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from dlm.errors import DLMError
from dlm.notebook import plots
from dlm.sortition.config import PanelConfig
from dlm.sortition.tuning import (TunedRun, base_settings, check_quotas, renormalise, run_algorithm, sortition_command,
                                  save_panel_config)

LABEL_STYLE = "white-space:normal;overflow-wrap:anywhere;line-height:1.25"


def figure_png(fig: Any, dpi: int = 90) -> bytes:
    """A figure as PNG bytes; the figure is closed (the inline backend must not show it a second time)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)  # the figures are laid out tight already
    plt.close(fig)
    return buf.getvalue()


class QuotaTuner:
    """Panel size, tolerance and per-category shares with a live feasibility verdict, runs and a save button.

    Args:
        table: the pool's rows (`PoolSource.table`).
        config: the panel YAML path or an already read config (`PoolSource.config`).
        id_column: the pool's id column.
        save_path: the YAML the save button writes (editable in the widget).
        n_samples, seed, leximin_time_limit: as `dlm sortition`'s --num-panel-samples,
            --panel-seed and --leximin-time-limit.
        pool_flags: the `dlm sortition` flags naming this pool (`PoolSource.pool_flags()`), recorded in the
            saved YAML and in the command the save button prints.
    """

    def __init__(self, table: pd.DataFrame, config: str | Path | PanelConfig, id_column: str = "user_id",
                 save_path: str | Path = "artifacts/sortition/tuned_panel_config.yaml", n_samples: int = 2000,
                 seed: int = 0, leximin_time_limit: float = 600.0, pool_flags: list[str] | None = None) -> None:
        import ipywidgets as w

        self.table, self.id_column, self.pool_flags = table, id_column, pool_flags
        self.source = config.path if isinstance(config, PanelConfig) else str(config)
        self.base = base_settings(config)
        self.n_samples, self.seed, self.leximin_time_limit = n_samples, seed, leximin_time_limit
        self.runs: dict[str, TunedRun] = {}
        self._quiet = False
        self._png: bytes | None = None
        self.check = check_quotas(table, self.base, id_column)
        most = max(len(table), self.base["panel_size"])
        self.size = w.IntSlider(value=self.base["panel_size"], min=1, max=most, description="panel size",
                                continuous_update=False, style={"description_width": "initial"})
        self.tolerance = w.FloatSlider(value=self.base.get("tolerance", 0.05), min=0.0, max=0.5, step=0.01,
                                       description=f"tolerance ({self.base.get('tolerance_mode', 'relative')})",
                                       continuous_update=False, style={"description_width": "initial"})
        self.shares: dict[tuple[str, str], Any] = {}
        self.bounds: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.message = w.HTML(layout=w.Layout(flex="1 1 240px", min_width="240px", max_width="560px",
                                              margin="0 0 0 12px"))
        self.message.add_class("dlm-tuner-message")
        self.plot = w.Image(format="png", layout=w.Layout(flex="0 1 auto", max_width="100%", height="auto"))
        self.plot.add_class("dlm-tuner-plot")
        self.run_status = w.HTML()
        self.run_status.add_class("dlm-tuner-runs")
        self.run_plot = w.Image(format="png", layout=w.Layout(max_width="900px", width="100%", height="auto",
                                                              display="none"))
        self.run_plot.add_class("dlm-tuner-pi-plot")
        self.save_to = w.Text(value=str(save_path), description="save to",
                              layout=w.Layout(flex="1 1 320px", max_width="640px"),
                              style={"description_width": "initial"})
        self.save_to.add_class("dlm-tuner-save-path")
        self.save_status = w.HTML()
        self.save_status.add_class("dlm-tuner-save-status")
        self.widget = self._layout(w)
        for ctl in (self.size, self.tolerance):
            ctl.observe(self._changed, names="value")
        self._show_check()

    # ------------------------------------------------------------------ layout

    def _layout(self, w: Any) -> Any:
        wrap = w.Layout(display="flex", flex_flow="row wrap", align_items="flex-start", overflow="visible",
                        width="100%")
        reset = w.Button(description="reset", tooltip="back to " + (self.source or "the starting quotas"),
                         layout=w.Layout(width="auto"))
        reset.on_click(lambda _: self.reset())
        editors = [self._attribute_editor(w, a) for a in self.base["attributes"]]
        tabs = w.Tab(editors, titles=[a["name"] for a in self.base["attributes"]],
                     layout=w.Layout(width="100%", overflow="visible"))
        tabs.add_class("dlm-tuner-editors")
        runs = []
        for algorithm in ("legacy", "leximin"):
            button = w.Button(description=f"run {algorithm.upper()}", button_style="primary",
                              tooltip=f"selection probabilities under these quotas with {algorithm.upper()}",
                              layout=w.Layout(width="auto"))
            button.add_class(f"dlm-tuner-run-{algorithm}")
            button.on_click(lambda _, a=algorithm: self.run(a))
            runs.append(button)
        save = w.Button(description="save as panel config", button_style="success", layout=w.Layout(width="auto"),
                        tooltip="write these quotas as a YAML for python -m dlm sortition --panel-config")
        save.add_class("dlm-tuner-save")
        save.on_click(lambda _: self.save())
        note = w.HTML("<small>One tab per attribute. Shares within an attribute always sum to 1: editing one "
                      "rescales the others in proportion.</small>")
        ui = w.VBox([
            w.Box([self.size, self.tolerance, reset], layout=wrap),
            w.Box([self.plot, self.message], layout=wrap),
            note,
            tabs,
            w.Box([*runs, self.run_status], layout=wrap),
            self.run_plot,
            w.Box([self.save_to, save], layout=wrap),
            self.save_status,
        ], layout=w.Layout(width="100%", overflow="visible"))
        ui.add_class("dlm-tuner")
        return ui

    def _attribute_editor(self, w: Any, attr: dict) -> Any:
        """One attribute's column: a label per category (wrapped, never cut) and its share or [min, max]."""
        name = attr["name"]
        cells: list[Any] = []
        props = attr.get("population_proportions") or {}
        if props and not attr.get("quotas"):
            for cat, p in props.items():
                box = w.BoundedFloatText(value=float(p), min=0.0, max=1.0, step=0.01, tooltip=f"{name}={cat}",
                                         layout=w.Layout(width="88px"))
                box.add_class("dlm-tuner-share")
                box.observe(lambda ch, a=name, c=str(cat): self._share_changed(a, c, ch["new"]), names="value")
                self.shares[(name, str(cat))] = box
                cells += [self._label(w, str(cat)), box]
            columns = "minmax(8em, max-content) 88px"
        else:
            for cat, (lo, hi) in (attr.get("quotas") or {}).items():
                pair = tuple(w.BoundedIntText(value=int(v), min=0, max=10**6, tooltip=f"{name}={cat} {end}",
                                              layout=w.Layout(width="72px")) for v, end in ((lo, "min"), (hi, "max")))
                for box in pair:
                    box.observe(self._changed, names="value")
                self.bounds[(name, str(cat))] = pair
                cells += [self._label(w, str(cat)), *pair]
            columns = "minmax(8em, max-content) 72px 72px"
        grid = w.GridBox(cells, layout=w.Layout(grid_template_columns=columns, grid_gap="2px 6px",
                                                align_items="center", overflow="visible", width="auto"))
        title = w.HTML("share of the population" if props and not attr.get("quotas") else "min and max seats")
        column = w.VBox([title, grid], layout=w.Layout(overflow="visible", width="auto"))
        column.add_class("dlm-tuner-attribute")
        return column

    @staticmethod
    def _label(w: Any, text: str) -> Any:
        label = w.HTML(f'<span style="{LABEL_STYLE}">{html.escape(text)}</span>',
                       layout=w.Layout(width="auto", overflow="visible"))
        label.add_class("dlm-tuner-label")
        return label

    # ------------------------------------------------------------------ state

    def settings(self) -> dict[str, Any]:
        """The panel-config mapping the controls describe now."""
        raw = copy.deepcopy(self.base)
        raw["panel_size"], raw["tolerance"] = int(self.size.value), round(float(self.tolerance.value), 4)
        for a in raw["attributes"]:
            if (a.get("population_proportions") or {}) and not a.get("quotas"):
                for cat in a["population_proportions"]:
                    a["population_proportions"][cat] = float(self.shares[(a["name"], str(cat))].value)
            for cat in a.get("quotas") or {}:
                lo, hi = self.bounds[(a["name"], str(cat))]
                a["quotas"][cat] = [int(lo.value), int(hi.value)]
        return raw

    def set_share(self, attribute: str, category: str, value: float) -> None:
        """Set one category's share as the widget does (the attribute's other shares are rescaled)."""
        self.shares[(attribute, category)].value = value

    def _share_changed(self, attribute: str, category: str, value: float) -> None:
        if self._quiet:
            return
        current = {c: float(box.value) for (a, c), box in self.shares.items() if a == attribute}
        new = renormalise(current, category, value)
        self._quiet = True
        try:
            for c, v in new.items():
                self.shares[(attribute, c)].value = v
        finally:
            self._quiet = False
        self._changed()

    def _changed(self, _: Any = None) -> None:
        if self._quiet:
            return
        self.check = check_quotas(self.table, self.settings(), self.id_column)
        self.runs.clear()  # a run under other quotas would be stale
        self._show_check()

    def reset(self) -> None:
        """Back to the starting quotas."""
        self._quiet = True
        try:
            self.size.value, self.tolerance.value = self.base["panel_size"], self.base.get("tolerance", 0.05)
            for a in self.base["attributes"]:
                for cat, p in (a.get("population_proportions") or {}).items():
                    if (a["name"], str(cat)) in self.shares:
                        self.shares[(a["name"], str(cat))].value = float(p)
                for cat, (lo, hi) in (a.get("quotas") or {}).items():
                    boxes = self.bounds[(a["name"], str(cat))]
                    boxes[0].value, boxes[1].value = int(lo), int(hi)
        finally:
            self._quiet = False
        self._changed()

    # ------------------------------------------------------------------ views

    def _show_check(self) -> None:
        self.message.value = self.check.html()
        self._png = None if self.check.pool is None else figure_png(plots.composition_plot(
            self.check.pool, label_size=8.5, panel_width=3.1, panel_height=2.7))
        png = self._png
        self.plot.value = png or b""
        self.plot.layout.display = "none" if png is None else ""  # never an old figure beside a new verdict
        self._show_runs()

    def _show_runs(self) -> None:
        if not self.runs:
            self.run_status.value = "<small>Run LEGACY or LEXIMIN to see each person's selection probability π " \
                                    "under these quotas.</small>"
            self.run_plot.layout.display = "none"
            return
        self.run_status.value = self._runs_html()
        fig = plots.probability_distributions({r.algorithm.upper(): r.probabilities for r in self.runs.values()},
                                              self.check.panel_size, self.check.pool_size)
        self.run_plot.value = figure_png(fig)
        self.run_plot.layout.display = ""

    def _runs_html(self) -> str:
        """The finished runs, one line each (empty before the first)."""
        rows = "".join(f"<li>{html.escape(r.text())}</li>" for r in self.runs.values())
        return f'<ul style="margin:0;padding-left:1.2em">{rows}</ul>' if rows else ""

    def run(self, algorithm: str) -> TunedRun | None:
        """Run LEGACY or LEXIMIN under the current quotas and show π, its minimum and Gini."""
        if self.check.pool is None or not self.check.feasible:
            self.run_status.value = ('<span style="color:#b00020">Make the quotas feasible first: '
                                     f"{html.escape(self.check.headline)}</span>")
            return None
        shown = self._runs_html()  # the last result stays shown meanwhile, under a live progress line
        start = time.perf_counter()

        def report(line: str) -> None:
            self.run_status.value = (f"<i>running {algorithm.upper()} ({time.perf_counter() - start:.0f} s): "
                                     f"{html.escape(line)}</i>{shown}")

        report("starting")
        try:
            result = run_algorithm(self.check.pool, algorithm, self.n_samples, self.seed, self.leximin_time_limit,
                                   reuse=self.runs.get(algorithm), progress=report)
        except DLMError as exc:
            self.run_status.value = f'<span style="color:#b00020">{html.escape(str(exc))}</span>'
            return None
        self.runs[algorithm] = result
        self._show_runs()
        return result

    def save(self, path: str | Path | None = None) -> Path | None:
        """Write the current quotas as a panel-config YAML; the status line says where and how to use it."""
        target = Path(path or self.save_to.value).expanduser()
        try:
            save_panel_config(self.settings(), target, self.source, self.pool_flags)
        except DLMError as exc:
            self.save_status.value = f'<span style="color:#b00020">not saved: {html.escape(str(exc))}</span>'
            return None
        shown = html.escape(str(target.resolve()))
        verdict = "" if self.check.feasible else " (these quotas are infeasible on this pool)"
        command = html.escape(sortition_command(target.resolve(), self.pool_flags))
        self.save_status.value = (f'<span style="color:#1b7f3b">saved {shown}{verdict}</span>; use it with '
                                  f"<code>{command}</code>")
        return target

    # ------------------------------------------------------------------ display

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """The live widget where widgets render; otherwise the figure with the verdict beside it."""
        bundle = dict(self.widget._repr_mimebundle_())
        png = self._png
        bundle["text/plain"] = self.check.text()
        image = ""
        if png is not None:
            bundle["image/png"] = base64.b64encode(png).decode()
            image = (f'<img alt="quota ranges" src="data:image/png;base64,{bundle["image/png"]}" '
                     'style="max-width:100%;flex:3 1 480px">')
        bundle["text/html"] = (f'<div style="display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start">{image}'
                               f'<div style="flex:1 1 260px;max-width:520px">{self.check.html()}</div></div>')
        return bundle
