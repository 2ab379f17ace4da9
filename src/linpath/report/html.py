"""report.html: report.md's numbers in one page that opens from disk with no network.

The page shows, one sweep setting at a time (a menu), the mean ± std curves at every kept t (a
slider, a hover readout), Figure 3 with its bootstrap intervals and the verdicts. Its data are
the curves, summaries and verdicts report.md was rendered from (passed in, not read again),
inlined as JSON beside the template's script (report.html and report.js, shipped with the
package), so the two reports cannot disagree. It does not import report.markdown, to keep the
import chain one module per stage.
"""

from __future__ import annotations

import html
import json
import math
import re
from importlib import resources
from pathlib import Path

from linpath.analysis.coverage import expected_replicates, replicates_at
from linpath.analysis.curves import PAPER_SETTING, QUANTITIES, Curves
from linpath.analysis.intervals import aggregate
from linpath.io.files import atomic_write_text
from linpath.io.rundir import RunDir
from linpath.report.notes import running_notes

STATS = ("mean", "std", "ci_low", "ci_high")
_PLACEHOLDER = re.compile(r"/\*@(TITLE|DATA|SCRIPT)@\*/")


def _numbers(values) -> list[float | None]:
    """Floats to 6 significant digits (a small page), NaN and inf to null (JSON has neither)."""
    return [float(f"{v:.6g}") if math.isfinite(v) else None for v in map(float, values)]


def setting_data(
    curves: Curves, summary: list[dict], verdicts: list[str], description: str, metric: str
) -> dict:
    """One setting's curves, Figure 3 (metric with its interval per t) and verdicts, as plain data."""
    shown = []
    for t in curves.steps:
        entry = {}
        for q in QUANTITIES:
            x, mean, std = curves.mean_std(t, q)
            entry.update({"x": _numbers(x), q: _numbers(mean), f"{q}_std": _numbers(std)})
        shown.append(entry)
    figure3 = {
        q: {stat: _numbers(aggregate(summary, t, q, metric, stat) for t in curves.steps) for stat in STATS}
        for q in QUANTITIES
    }
    return {
        "key": curves.setting,
        "paper": curves.setting == PAPER_SETTING,
        "description": description,
        "replicates": len(expected_replicates(curves)),
        "counts": [len(replicates_at(curves, t)) for t in curves.steps],  # averaged at each t
        "steps": curves.steps,
        "curves": shown,
        "metric": metric,
        "figure3": figure3,
        "verdicts": list(verdicts),
    }


def script_json(data: object) -> str:
    """JSON that can sit inside a <script> element: '<', '>' and '&' are written as \\u escapes,
    so no string in it can close the element or open a comment."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _template(name: str) -> str:
    return resources.files("linpath.report").joinpath(name).read_text(encoding="utf-8")


def render_html(title: str, subtitle: str, settings: list[dict], notes: list[str]) -> str:
    """The page's text: the template with the title (escaped), the data and the script inlined."""
    script = _template("report.js").replace("</", "<\\/")
    values = {
        "TITLE": html.escape(title),
        "DATA": script_json({"title": title, "subtitle": subtitle, "settings": settings, "notes": notes}),
        "SCRIPT": script,
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], _template("report.html"))


def write_html(run: RunDir, title: str, subtitle: str, settings: list[dict], notes: list[str]) -> Path:
    """report.html beside report.md, one entry of `settings` (setting_data) per sweep setting."""
    page = render_html(title, subtitle, settings, [*running_notes(run), *notes])
    path = run.report_html
    atomic_write_text(path, page)
    return path
