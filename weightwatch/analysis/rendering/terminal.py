"""What the commands print: the comparison as terminal tables (rich) and as JSON."""

from __future__ import annotations

from typing import Any

from ..classification.reffile import json_safe
from ..comparison.compare import Comparison, problem_lines
from ..loading.find import printable
from .numbers import format_boundaries, format_p, number
from .tbexport import logdir_spec, projector_command


def to_json(c: Comparison) -> dict[str, Any]:
    """Everything a script needs, JSON-ready (NaN written as null); ``predictions`` only when
    the comparison was given a reference."""
    out = json_safe({
        "root": str(c.root),
        "roots": [str(r) for r in c.roots],
        "metric": c.metric_label,
        "table": [row.as_dict() for row in c.rows],
        "thresholds": {f: list(t) for f, t in c.grouping.thresholds.items()},
        "runs": {lab.name: {"group": lab.group, "family": lab.family, "metric": lab.metric, "value": lab.value,
                            "architecture": lab.run.architecture, "reasons": lab.reasons}
                 for lab in c.grouping.labelled},
        "unlabelled": c.grouping.unlabelled,
        "skipped": c.skipped,
        "dispersion": [d.as_dict() for d in c.dispersion],
        "problems": c.problems,
        "warnings": c.warnings,
        "report": str(c.report) if c.report else None,
        "figures": [str(f.path) for f in c.figures],
        "tensorboard": str(c.tensorboard) if c.tensorboard else None,
        "tensorboard_command": logdir_spec(c.roots, c.out) if c.tensorboard and c.out else None,
        "projector_command": projector_command(c.out) if c.tensorboard and c.out else None,
        "load": {"runs": c.loaded.stats.runs, "seconds": c.loaded.stats.seconds,
                 "bytes_read": c.loaded.stats.bytes_read, "runs_from_cache": c.loaded.stats.runs_from_cache},
    })
    if c.predictions is not None:
        out["predictions"] = json_safe([p.to_json() for p in c.predictions])
    return out


def skipped_lines(skipped: dict[str, str]) -> list[str]:
    """One line per skipped run: ``skipped NAME: REASON`` (control characters escaped)."""
    return [f"  skipped {printable(name)}: {printable(why)}" for name, why in skipped.items()]


def print_terminal(c: Comparison, console: Any = None) -> None:
    """The Table 2 equivalent, the dispersion test and the problems, with rich."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    labelled = len(c.grouping.labelled)
    skipped = len(c.skipped)
    console.print(f"[bold]{labelled} runs[/bold] under {escape(printable(c.where))} grouped by final {c.metric_label}, "
                  f"{skipped} skipped ({c.loaded.stats.seconds:.1f} s to load, {c.loaded.stats.runs_from_cache} "
                  "from cache)", markup=True, highlight=False, soft_wrap=True)
    t = Table(title=f"Runs per group (final {c.metric_label}), as in the paper's Table 2")
    for col in ("Family", "Group", "Runs", "Min", "Median", "Max"):
        t.add_column(col, justify="right" if col in ("Runs", "Min", "Median", "Max") else "left")
    for i, row in enumerate(c.rows):
        new_family = i == 0 or c.rows[i - 1].family != row.family
        t.add_row(row.family if new_family else "", row.group, str(row.runs), number(row.min), number(row.median),
                  number(row.max), end_section=i + 1 < len(c.rows) and c.rows[i + 1].family != row.family)
    console.print(t)
    if c.grouping.thresholds:
        console.print("group boundaries: " + "; ".join(
            f"{f}: {format_boundaries(cuts)}" for f, cuts in c.grouping.thresholds.items()), markup=False)
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
            console.print(f"  {printable(lab.name)}: {'; '.join(lab.reasons)}", markup=False, highlight=False,
                          soft_wrap=True)
        if len(non) > 10:
            console.print(f"  ... and {len(non) - 10} more (see --json)")
    for w in c.warnings:
        console.print(f"[yellow]note:[/yellow] {escape(printable(w))}", soft_wrap=True)
    skipped = c.skipped
    if skipped:
        console.print(f"[yellow]{len(skipped)} runs skipped:[/yellow]")
        console.print("\n".join(skipped_lines(skipped)), markup=False, highlight=False, soft_wrap=True)
    others = {name: messages for name, messages in c.problems.items() if name not in skipped}
    if others:
        console.print(f"[yellow]{len(others)} runs with problems:[/yellow]")
        console.print(problem_lines(others), markup=False, highlight=False, soft_wrap=True)
    if c.report:
        console.print(f"report: {c.report} ({len(c.figures)} figures)")
    if c.tensorboard and c.out:
        console.print(f"in TensorBoard, beside the runs (run 'compare/{c.tensorboard.name}': images and text):\n"
                      f"  {logdir_spec(c.roots, c.out)}\nthe runs' weights in the Projector (which reads a plain "
                      f"--logdir only):\n  {projector_command(c.out)}", markup=False, highlight=False, soft_wrap=True)
