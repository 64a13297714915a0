"""``weightwatch compare``: load a population, group it, test the claim, write the report.

>>> c = compare("runs/", out="report")        # doctest: +SKIP
>>> print_terminal(c)                          # doctest: +SKIP

Stages, one module each: :mod:`.load` -> :mod:`.groups` -> :mod:`.dispersion`
-> :mod:`.figures` (PNGs) -> :mod:`.html` (index.html) and :mod:`.tbexport`
(the same figures and a projector embedding for TensorBoard). :func:`compare`
chains them and collects every problem, naming the runs concerned; it raises
:class:`NothingToCompare` only when no table can be made at all.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dispersion import Dispersion, dispersion_tests
from .groups import GROUPS, Grouping, TableRow, group_runs, table
from .loading.loader import LoadResult, load_runs
from .loading.metric import METRIC_NAMES


class NothingToCompare(Exception):
    """No run could be loaded or labelled: there is no table to show."""


@dataclass
class Figure:
    """One written figure: ``path`` (a PNG), its ``title`` and ``caption``, the
    ``family`` it shows (None: every family), ``paper`` (the seed paper's figure numbers)."""

    name: str
    path: Path
    title: str
    caption: str = ""
    family: str | None = None
    paper: str = ""


@dataclass
class Comparison:
    """Everything ``compare`` found and wrote.

    Attributes:
        problems: run name -> messages (unreadable, truncated or corrupt files,
            runs left out of a figure, ...).
        warnings: messages about the population as a whole (mixed families, ...).
        figures: the PNGs written; report: index.html; tensorboard: the run
            directory holding the population's images and projector embedding.
    """

    root: Path
    loaded: LoadResult
    grouping: Grouping
    rows: list[TableRow]
    dispersion: list[Dispersion]
    problems: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    out: Path | None = None
    figures: list[Figure] = field(default_factory=list)
    report: Path | None = None
    tensorboard: Path | None = None

    @property
    def metric_label(self) -> str:
        metrics = self.grouping.metrics()
        return metrics[0] if len(metrics) == 1 else (self.grouping.metric or "metric")

    def problem(self, run: str, message: str) -> None:
        self.problems.setdefault(run, []).append(message)


def compare(root: str | Path, *, metric: str | None = None, thresholds: tuple[float, float] | None = None,
            out: str | Path | None = "report", figures: bool = True, tensorboard: bool = True,
            workers: int | None = None, cache: bool = True, progress: bool = True,
            permutations: int = 2000) -> Comparison:
    """Compare the runs below ``root``; write figures and index.html to ``out`` (None: write nothing).

    Raises FileNotFoundError for a missing ``root`` and :class:`NothingToCompare`
    when there is no run, none can be read, or none has the metric.
    """
    root = Path(root)
    loaded = load_runs(root, histograms="last", workers=workers, cache=cache, progress=progress)
    if not loaded.runs:
        if loaded.problems:
            raise NothingToCompare(f"none of the {len(loaded.problems)} runs under {str(root)!r} could be read:\n"
                                   + _problem_lines(loaded.problems))
        raise NothingToCompare(f"no runs under {str(root)!r}: no directory there holds TensorBoard event files "
                               "(events.out.tfevents.*)")
    grouping = group_runs(loaded.runs, metric, thresholds)
    if not grouping.labelled:
        wanted = metric or ", ".join(METRIC_NAMES)
        tags = Counter(t for r in loaded.runs for t in r.scalars
                       if not t.startswith(("weights/", "bias/", "node_strength/")))
        raise NothingToCompare(
            f"none of the {len(loaded.runs)} runs has the metric ({wanted}); their scalars: "
            f"{', '.join(t for t, _ in tags.most_common(12)) or 'none'}. Name one with --metric.")
    c = Comparison(root, loaded, grouping, table(grouping), dispersion_tests(grouping, permutations))
    for name, messages in loaded.problems.items():
        for m in messages:
            c.problem(name, f"not loaded: {m}")
    for run in loaded.runs:
        for m in run.problems:
            c.problem(run.name, m)
    for name, why in grouping.unlabelled.items():
        c.problem(name, f"unlabelled: {why}")
    c.warnings += loaded.notes + _population_warnings(grouping)
    if out is not None:
        c.out = Path(out)
        c.out.mkdir(parents=True, exist_ok=True)
        if figures:
            from .figures import write_figures

            c.figures = write_figures(c, c.out)
        from .html import write_html

        c.report = write_html(c, c.out / "index.html")
    if tensorboard:
        from .tbexport import write_tensorboard

        try:
            c.tensorboard = write_tensorboard(c)
        except OSError as exc:
            c.warnings.append(f"could not write the TensorBoard view into {str(root)!r}: {exc}")
    return c


def _problem_lines(problems: dict[str, list[str]], limit: int = 20) -> str:
    """One line per problem, naming its runs; a message shared by several runs is shown once."""
    runs_of: dict[str, list[str]] = {}
    for name, messages in sorted(problems.items()):
        for m in messages:
            runs_of.setdefault(m, []).append(name)
    lines = []
    for message, names in runs_of.items():
        if len(names) == 1:
            lines.append(f"  {names[0]}: {message}")
        else:
            shown = ", ".join(names[:5]) + (f", ... ({len(names) - 5} more)" if len(names) > 5 else "")
            lines.append(f"  {len(names)} runs ({shown}): {message}")
    if len(lines) > limit:
        lines = lines[:limit] + [f"  ... and {len(lines) - limit} more problems (see --json or index.html)"]
    return "\n".join(lines)


def _population_warnings(grouping: Grouping) -> list[str]:
    out = []
    families = Counter(lab.family for lab in grouping.labelled)
    if len(families) > 1:
        out.append(f"{len(families)} architecture families: "
                   + ", ".join(f"{f} ({n} runs)" for f, n in sorted(families.items()))
                   + "; groups, table and figures are per family")
    metrics = Counter(lab.metric for lab in grouping.labelled)
    if len(metrics) > 1:
        out.append("the runs do not share one metric: " + ", ".join(f"{m} ({n} runs)" for m, n in metrics.items())
                   + "; pass --metric to compare on one")
    for family in sorted(families):
        converged = [lab for lab in grouping.members(family) if lab.group != "non"]
        groups = {lab.group for lab in converged}
        if grouping.given is None and converged and len(groups) < 3:
            out.append(f"{family}: the converged runs' metric takes fewer than 3 distinct values, so only "
                       f"{', '.join(g for g in GROUPS if g in groups)}")
    return out


# -- output ------------------------------------------------------------------------------------------------

def _fmt(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def format_p(p: float) -> str:
    """A p-value for people: 3 decimals, or "<0.001".

    >>> format_p(0.0004), format_p(0.0431)
    ('<0.001', '0.043')
    """
    return "<0.001" if p < 0.001 else _fmt(p)


def to_json(c: Comparison) -> dict[str, Any]:
    """Everything a script needs, JSON-ready (NaN written as null)."""
    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return clean({
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
        t.add_row(row.family if new_family else "", row.group, str(row.runs), _fmt(row.min), _fmt(row.median),
                  _fmt(row.max), end_section=i + 1 < len(c.rows) and c.rows[i + 1].family != row.family)
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
            d.add_row(x.family, x.role, str(x.n_high), str(x.n_low), _fmt(x.ratio),
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
        console.print(_problem_lines(c.problems), markup=False, highlight=False)
    if c.report:
        console.print(f"report: {c.report} ({len(c.figures)} figures)")
    if c.tensorboard:
        console.print(f"in TensorBoard: tensorboard --logdir {c.root}  (run '{c.tensorboard.name}': "
                      "images, text and the projector)")


__all__ = ["GROUPS", "Comparison", "Figure", "NothingToCompare", "compare", "print_terminal", "to_json"]
