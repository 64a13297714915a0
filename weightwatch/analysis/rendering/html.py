"""report/index.html: one self-contained page with the tables and the figures.

The PNGs are embedded (base64 data URIs), so the page can be mailed or
archived alone; each figure also links to its file next to the page.
"""

from __future__ import annotations

import base64
import math
from html import escape
from pathlib import Path

from ..comparison.compare import Comparison
from .numbers import format_p

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; } .note { color: #8a6d00; } .problem { color: #a33; }
"""


def _num(x: float | None) -> str:
    return "&ndash;" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3f}"


def _table(header: list[str], rows: list[list[str]], numeric: set[int]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render(c: Comparison) -> str:
    """The page's HTML."""
    metric = escape(c.metric_label)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>weightwatch compare: {escape(str(c.root))}"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>weightwatch compare: {escape(str(c.root))}</h1>",
             f"<p>{len(c.grouping.labelled)} runs grouped by final <b>{metric}</b>; "
             f"{len(c.grouping.unlabelled)} unlabelled; {len(c.problems)} with problems.</p>",
             "<h2>Runs per group (the paper's Table 2)</h2>",
             _table(["Family", "Group", "Runs", "Min", "Median", "Max"],
                    [[escape(r.family), r.group, str(r.runs), _num(r.min), _num(r.median), _num(r.max)]
                     for r in c.rows], {2, 3, 4, 5})]
    if c.grouping.thresholds:
        parts.append("<p>Group boundaries (low|mid, mid|high): " + "; ".join(
            f"{escape(f)}: {a:.3f}, {b:.3f}" for f, (a, b) in c.grouping.thresholds.items()) + "</p>")
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
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(c: Comparison, path: Path) -> Path:
    path.write_text(render(c), encoding="utf-8")
    return path
