"""report/index.html: one self-contained page with the tables and the figures.

The PNGs are embedded (base64 data URIs), so the page can be mailed or
archived alone; each figure also links to its file next to the page. With a
reference (``compare --reference``), a table gives each run's P(optimal),
group and top drivers, sortable by clicking a column header (a small inline
script; the page loads nothing from elsewhere).
"""

from __future__ import annotations

import base64
import math
from html import escape
from pathlib import Path

from ..comparison.compare import Comparison
from .numbers import format_boundaries, format_p

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; } .note { color: #8a6d00; } .problem { color: #a33; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
"""

#: Sorts a table.sortable by the clicked column: numbers by data-value, text by code points (the same order
#: everywhere, whatever the locale); click again to reverse.
_SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var down = th.getAttribute("aria-sort") === "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", down ? "descending" : "ascending");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[col], v = cell.getAttribute("data-value");
        return v === null ? cell.textContent : parseFloat(v);
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b), c = typeof x === "number" ? x - y : (x < y ? -1 : x > y ? 1 : 0);
        return down ? -c : c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _num(x: float | None) -> str:
    return "&ndash;" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3f}"


def _table(header: list[str], rows: list[list[str]], numeric: set[int]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _predictions(c: Comparison) -> str:
    """The classifier's verdict on each run, sortable (numbers sort by their data-value)."""
    preds = c.predictions or []
    metric = escape(preds[0].metric) if preds else "metric"
    rows = []
    for p in preds:
        drivers = "<br>".join(f"{'+' if d.contribution > 0 else '&minus;'} {escape(d.feature)} = {_num(d.value)}"
                              for d in p.drivers)
        notes = "".join(f"<div class='note'>{escape(n)}</div>" for n in p.notes)
        rows.append(f"<tr><td>{escape(p.run)}</td><td class='num' data-value='{_value(p.p_optimal)}'>"
                    f"{_num(p.p_optimal)}</td><td class='num' data-value='{_value(p.predicted)}'>{_num(p.predicted)}"
                    f"</td><td>{escape(p.group)}</td><td>{drivers}{notes}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("Run", "P(optimal)", f"Predicted {metric}", "Group", "Top drivers"))
    return ("<h2>Predictions of the reference</h2><p>P(optimal) that each run ends in the optimal group, its "
            "predicted final metric and the features that moved P(optimal) most (+ towards optimal). "
            "Click a column header to sort.</p>"
            f"<table class='sortable' id='predictions'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}"
            "</tbody></table>")


def _value(x: float) -> str:
    """A number for data-value (sorting): missing values sort first."""
    return repr(float(x)) if x is not None and math.isfinite(x) else "-1e308"


def render(c: Comparison) -> str:
    """The page's HTML."""
    metric = escape(c.metric_label)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>weightwatch compare: {escape(c.where)}"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>weightwatch compare: {escape(c.where)}</h1>",
             f"<p>{len(c.grouping.labelled)} runs grouped by final <b>{metric}</b>; "
             f"{len(c.skipped)} skipped (unreadable or without the metric); {len(c.problems)} with problems.</p>",
             "<h2>Runs per group (the paper's Table 2)</h2>",
             _table(["Family", "Group", "Runs", "Min", "Median", "Max"],
                    [[escape(r.family), r.group, str(r.runs), _num(r.min), _num(r.median), _num(r.max)]
                     for r in c.rows], {2, 3, 4, 5})]
    if c.grouping.thresholds:
        parts.append("<p>Group boundaries: " + "; ".join(
            f"{escape(f)}: {format_boundaries(cuts)}" for f, cuts in c.grouping.thresholds.items()) + "</p>")
    if c.predictions is not None:
        parts.append(_predictions(c))
    if c.dispersion:
        parts += ["<h2>Are the high runs' weights more alike than the low runs'?</h2>",
                  "<p>Dispersion: mean distance of a group's runs to their centroid in standardised "
                  "(mean, std, node strength) space; ratio = high / low; one-sided permutation test.</p>",
                  _table(["Family", "Role", "High runs", "Low runs", "Dispersion high", "Dispersion low", "Ratio",
                          "p", "Reading"],
                         [[escape(d.family), escape(d.role), str(d.n_high), str(d.n_low), _num(d.high),
                           _num(d.low), _num(d.ratio), format_p(d.p_value), escape(d.reading)] for d in c.dispersion],
                         {2, 3, 4, 5, 6, 7})]
    for w in c.warnings:
        parts.append(f"<p class='note'>Note: {escape(w)}</p>")
    if c.reference_notes:  # what the reference uses per step, and where the weights add nothing
        parts += ["<h2>The reference</h2><ul>", *(f"<li>{escape(n)}</li>" for n in c.reference_notes), "</ul>"]
    families = [None, *c.grouping.families]
    for family in families:
        figs = [f for f in c.figures if f.family == family]
        if not figs:
            continue
        parts.append(f"<h2>{escape(family or 'All families')}</h2>")
        for f in figs:
            data = base64.b64encode(Path(f.path).read_bytes()).decode()
            parts.append(
                f"<figure id='{escape(f.name)}'><img src='data:image/png;base64,{data}' alt='{escape(f.title)}' "
                f"data-file='{escape(Path(f.path).name)}'><figcaption><b>{escape(f.title)}</b> "
                f"({escape(f.paper)}). {escape(f.caption)} <a href='{escape(Path(f.path).name)}'>"
                f"{escape(Path(f.path).name)}</a></figcaption></figure>")
    parts.append("<h2>Runs</h2><details><summary>every labelled run</summary>")
    parts.append(_table(["Run", "Family", "Group", metric, "Why not converged"],
                        [[escape(lab.name), escape(lab.family), lab.group, _num(lab.value),
                          escape("; ".join(lab.reasons))] for lab in c.grouping.labelled], {3}))
    parts.append("</details>")
    if c.problems:
        parts.append("<h2>Problems</h2><ul>")
        for name, messages in sorted(c.problems.items()):
            for m in messages:
                parts.append(f"<li class='problem'><b>{escape(name)}</b>: {escape(m)}</li>")
        parts.append("</ul>")
    if c.predictions is not None:
        parts.append(f"<script>{_SORT_SCRIPT}</script>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(c: Comparison, path: Path) -> Path:
    """Write the page to ``path`` (a staging directory's: see :mod:`.output`); returns it."""
    path.write_text(render(c), encoding="utf-8")
    return path
