"""The comparison of a population: load it, group it, test the claim, collect every problem.

>>> c = compare_runs("runs/")                  # doctest: +SKIP
>>> [(row.family, row.group, row.runs) for row in c.rows]  # doctest: +SKIP

Stages: :mod:`weightwatch.analysis.loading` -> :mod:`.groups` ->
:mod:`.dispersion`. :func:`compare_runs` chains them and collects every
problem, naming the runs concerned; it raises :class:`NothingToCompare` only
when no table can be made at all. Drawing and writing the result is
:mod:`weightwatch.analysis.rendering`'s job (it fills ``figures``, ``report``
and ``tensorboard``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..loading.find import expand_roots, printable
from ..loading.loader import LoadResult, load_runs
from ..loading.metric import METRIC_NAMES
from .dispersion import PERMUTATIONS, Dispersion, dispersion_tests
from .groups import GROUPS, Grouping, TableRow, group_runs, table


class NothingToCompare(Exception):
    """No run could be loaded or labelled: there is no table to show."""


@dataclass
class Figure:
    """One figure written by :mod:`weightwatch.analysis.rendering`: ``path`` (a PNG), its ``title`` and ``caption``, the
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
        root: the (first) directory compared; roots: every one of them.
        problems: run name -> messages (unreadable, truncated or corrupt files,
            runs left out of a figure, ...).
        warnings: messages about the population as a whole (mixed families, ...).
        figures: the PNGs written; report: index.html; tensorboard: the run
            directory holding the population's images and projector embedding.
        predictions: with a reference, each run's verdict
            (:class:`~weightwatch.analysis.classification.reference.Prediction`), else None.
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
    predictions: list[Any] | None = None  # filled a stage later, by classification
    #: with a reference: what it says of itself per step (where the weights add nothing), for the report
    reference_notes: list[str] = field(default_factory=list)
    roots: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.roots = self.roots or [self.root]

    @property
    def where(self) -> str:
        """The roots compared, as one string."""
        return ", ".join(str(r) for r in self.roots)

    @property
    def skipped(self) -> dict[str, str]:
        """Runs left out of the table -> why, in one line: unreadable, or without the metric."""
        out = {name: "; ".join(messages) for name, messages in self.loaded.problems.items()}
        out.update(self.grouping.unlabelled)
        return dict(sorted(out.items()))

    @property
    def metric_label(self) -> str:
        metrics = self.grouping.metrics()
        return metrics[0] if len(metrics) == 1 else (self.grouping.metric or "metric")

    def problem(self, run: str, message: str) -> None:
        self.problems.setdefault(run, []).append(message)


def compare_runs(root: str | Path | list[str | Path], *, metric: str | None = None, thresholds: tuple[float, float] | None = None,
                 workers: int | None = None, cache: bool = True, progress: bool = True,
                 permutations: int = PERMUTATIONS, engine: str = "local") -> Comparison:
    """Load the runs below ``root``, group them and test the claim; writes nothing
    (:func:`weightwatch.analysis.compare` also writes the report).

    ``root`` may be several directories or glob patterns (see
    :func:`~weightwatch.analysis.loading.loader.load_runs`).

    Raises FileNotFoundError for a missing ``root``, ValueError for unusable
    ``thresholds`` and :class:`NothingToCompare` when there is no run, none can be
    read, or none has the metric.
    """
    roots = expand_roots(root)
    where = ", ".join(repr(str(r)) for r in roots)
    if thresholds is not None:  # fail before loading anything
        group_runs([], metric, thresholds)
    loaded = load_runs(roots, histograms="last", workers=workers, cache=cache, progress=progress, engine=engine)
    if not loaded.runs:
        if loaded.problems:
            raise NothingToCompare(f"none of the {len(loaded.problems)} runs under {where} could be read:\n"
                                   + problem_lines(loaded.problems))
        raise NothingToCompare(f"no runs under {where}: no directory there holds TensorBoard event files "
                               "(events.out.tfevents.*)")
    grouping = group_runs(loaded.runs, metric, thresholds)
    if not grouping.labelled:
        wanted = metric or ", ".join(METRIC_NAMES)
        tags = Counter(t for r in loaded.runs for t in r.scalars
                       if not t.startswith(("weights/", "bias/", "node_strength/")))
        raise NothingToCompare(
            f"none of the {len(loaded.runs)} runs has the metric ({wanted}); their scalars: "
            f"{', '.join(t for t, _ in tags.most_common(12)) or 'none'}. Name one with --metric.")
    c = Comparison(roots[0], loaded, grouping, table(grouping), dispersion_tests(grouping, permutations),
                   roots=roots)
    for name, messages in loaded.problems.items():
        for m in messages:
            c.problem(name, f"not loaded: {m}")
    for run in loaded.runs:
        for m in run.problems:
            c.problem(run.name, m)
    for name, why in grouping.unlabelled.items():
        c.problem(name, f"unlabelled: {why}")
    c.warnings += loaded.notes + _population_warnings(grouping)
    return c


def problem_lines(problems: dict[str, list[str]], limit: int = 20) -> str:
    """One line per problem, naming its runs; a message shared by several runs is shown once.
    Control characters in names and messages are escaped (one problem, one line)."""
    runs_of: dict[str, list[str]] = {}
    for name, messages in sorted(problems.items()):
        for m in messages:
            runs_of.setdefault(printable(m), []).append(printable(name))
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


__all__ = ["Comparison", "Figure", "NothingToCompare", "compare_runs", "problem_lines"]
