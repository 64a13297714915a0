"""``weightwatch compare`` as one call: the comparison, its report written to disk, the verdicts.

:func:`compare` chains :func:`~weightwatch.analysis.comparison.compare.compare_runs`
(load, group, test), :func:`write_report` (the PNGs of :mod:`.figures`,
index.html of :mod:`.html`, the population's TensorBoard view of
:mod:`.tbexport`, all under ``out``, written through :mod:`.output` so that
no partial file is ever left) and, given a reference, each run's verdict
(:func:`~weightwatch.analysis.classification.classify.classify_below`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..classification.classify import classify_below
from ..classification.reference import Reference, load_reference
from ..comparison.compare import Comparison, compare_runs
from ..comparison.dispersion import PERMUTATIONS
from .figures import write_figures
from .html import write_html
from .output import Staging
from .tbexport import POPULATION_DIR, is_population_file, write_tensorboard
from .verdicts import reference_notes


def write_report(c: Comparison, out: str | Path | None, *, figures: bool = True, tensorboard: bool = True) -> None:
    """Write ``c``'s figures, index.html and, with ``tensorboard``, its TensorBoard view
    (``weightwatch-population/``) into ``out`` (None: nothing); fills ``c.out``, ``c.figures``,
    ``c.report``, ``c.tensorboard``. Nothing is written anywhere else.

    Every file is complete before it replaces the old one; an error or Ctrl-C on the way
    leaves ``out`` as it was.
    """
    if out is None:
        return
    c.out = Path(out)
    with Staging(c.out) as stage:
        if figures:
            c.figures = write_figures(c, stage.dir)
        if tensorboard:
            write_tensorboard(c, stage.dir)
        write_html(c, stage.dir / "index.html")
        old = c.out / POPULATION_DIR
        stale = [p for p in old.iterdir() if p.is_file() and is_population_file(p.name)] if old.is_dir() else []
        moved = stage.publish()
    for path in stale:  # the previous compare's event file and embeddings, once the new ones are in place
        if path not in moved.values():
            path.unlink(missing_ok=True)
    c.figures = [dataclasses.replace(f, path=moved[Path(f.path)]) for f in c.figures]
    c.report = c.out / "index.html"
    c.tensorboard = c.out / POPULATION_DIR if tensorboard else None


def compare(root: str | Path | list[str | Path], *, metric: str | None = None, thresholds: tuple[float, float] | None = None,
            out: str | Path | None = "report", figures: bool = True, tensorboard: bool = True,
            workers: int | None = None, cache: bool = True, progress: bool = True,
            permutations: int = PERMUTATIONS, reference: str | Path | Reference | None = None,
            engine: str = "local") -> Comparison:
    """Compare the runs below ``root``: group them by final metric (non / low / mid / high, per
    family), test whether the high runs' weights are more alike than the low runs', and write
    figures, index.html and, with ``tensorboard``, the population's TensorBoard view to
    ``out`` (None: write nothing). Nothing is written into ``root``.

    Args:
        metric: the final-metric tag (default: the first of val_accuracy, eval_accuracy,
            accuracy, test_accuracy, acc found).
        thresholds: (a, b) group boundaries on the metric instead of clustering.
        workers / cache / progress / engine: see :func:`~weightwatch.analysis.loading.loader.load_runs`.
        permutations: random relabellings of the dispersion test.
        reference: also judge every run with this reference (``c.predictions``).

    Raises FileNotFoundError for a missing ``root`` and
    :class:`~weightwatch.analysis.comparison.compare.NothingToCompare` when there
    is no run, none can be read, or none has the metric.

    With ``runs_dir`` a directory of finished runs and ``tmp`` an empty directory:

    >>> c = compare(runs_dir, out=tmp / "report", tensorboard=False, progress=False)
    >>> c.metric_label, sum(row.runs for row in c.rows), c.report.name
    ('val_accuracy', 24, 'index.html')
    >>> c.grouping.families
    ['CNN (conv, output)', 'DNN (fc×2, output)']
    >>> [d.role for d in c.dispersion if d.family.startswith("DNN")]
    ['fc', 'output', 'all']
    """
    c = compare_runs(root, metric=metric, thresholds=thresholds, workers=workers, cache=cache, progress=progress,
                     permutations=permutations, engine=engine)
    if reference is not None:  # before the report, which shows them
        ref = load_reference(reference)
        problems: list[str] = []
        c.predictions = classify_below(c.roots if len(c.roots) > 1 else c.root, ref, problems=problems,
                                       cache=cache, workers=workers, engine=engine)
        c.reference_notes = reference_notes(ref)
        for p in problems:
            name, _, message = p.partition(": ")
            c.problem(name, f"not classified: {message}")
    write_report(c, out, figures=figures, tensorboard=tensorboard)
    return c
