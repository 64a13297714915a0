"""What the commands print: the comparison as terminal tables (rich) and as JSON."""

from __future__ import annotations

from typing import Any

from ..classification.reffile import json_safe
from ..comparison.compare import Comparison, problem_lines
from .numbers import format_p, number


def to_json(c: Comparison) -> dict[str, Any]:
    """Everything a script needs, JSON-ready (NaN written as null); ``predictions`` only when
    the comparison was given a reference."""
    out = json_safe({
        "root": str(c.root),
        "metric": c.metric_label,
        "table": [row.as_dict() for row in c.rows],
        "thresholds": {f: list(t) for f, t in c.grouping.thresholds.items()},
        "runs": {lab.name: {"group": lab.group, "family": lab.family, "metric": lab.metric, "value": lab.value,
                            "architecture": lab.run.architecture, "reasons": lab.reasons}
                 for lab in c.grouping.labelled},
        "unlabelled": c.grouping.unlabelled,
        "dispersion": [d.as_dict() for d in c.dispersion],
        "problems": c.problems,
        "warnings": c.warnings,
        "report": str(c.report) if c.report else None,
        "figures": [str(f.path) for f in c.figures],
        "tensorboard": str(c.tensorboard) if c.tensorboard else None,
        "load": {"runs": c.loaded.stats.runs, "seconds": c.loaded.stats.seconds,
                 "bytes_read": c.loaded.stats.bytes_read, "runs_from_cache": c.loaded.stats.runs_from_cache},
    })
    if c.predictions is not None:
        out["predictions"] = json_safe([p.to_json() for p in c.predictions])
    return out


def print_terminal(c: Comparison, console: Any = None) -> None:
    """The Table 2 equivalent, the dispersion test and the problems, with rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    labelled = len(c.grouping.labelled)
    console.print(f"[bold]{labelled} runs[/bold] under {c.root} grouped by final {c.metric_label} "
                  f"({c.loaded.stats.seconds:.1f} s to load, {c.loaded.stats.runs_from_cache} from cache)")
    t = Table(title=f"Runs per group (final {c.metric_label}), as in the paper's Table 2")
    for col in ("Family", "Group", "Runs", "Min", "Median", "Max"):
        t.add_column(col, justify="right" if col in ("Runs", "Min", "Median", "Max") else "left")
    for i, row in enumerate(c.rows):
        new_family = i == 0 or c.rows[i - 1].family != row.family
        t.add_row(row.family if new_family else "", row.group, str(row.runs), number(row.min), number(row.median),
                  number(row.max), end_section=i + 1 < len(c.rows) and c.rows[i + 1].family != row.family)
    console.print(t)
    if c.grouping.thresholds:
        console.print("group boundaries (low|mid, mid|high): " + "; ".join(
            f"{f}: {a:.3f}, {b:.3f}" for f, (a, b) in c.grouping.thresholds.items()))
    if c.dispersion:
        d = Table(title="Are the high runs' weights more alike than the low runs'? (dispersion ratio, "
                        "permutation test)")
        for col in ("Family", "Role", "High", "Low", "Ratio", "p", "Reading"):
            d.add_column(col)
        for x in c.dispersion:
            d.add_row(x.family, x.role, str(x.n_high), str(x.n_low), number(x.ratio),
                      format_p(x.p_value), x.reading)
        console.print(d)
    non = [lab for lab in c.grouping.labelled if lab.group == "non"]
    if non:
        console.print(f"[bold]{len(non)} runs did not converge[/bold]:")
        for lab in non[:10]:
            console.print(f"  {lab.name}: {'; '.join(lab.reasons)}")
        if len(non) > 10:
            console.print(f"  ... and {len(non) - 10} more (see --json)")
    for w in c.warnings:
        console.print(f"[yellow]note:[/yellow] {w}")
    if c.problems:
        console.print(f"[yellow]{len(c.problems)} runs with problems:[/yellow]")
        console.print(problem_lines(c.problems), markup=False, highlight=False)
    if c.report:
        console.print(f"report: {c.report} ({len(c.figures)} figures)")
    if c.tensorboard:
        console.print(f"in TensorBoard: tensorboard --logdir {c.root}  (run '{c.tensorboard.name}': "
                      "images, text and the projector)")
