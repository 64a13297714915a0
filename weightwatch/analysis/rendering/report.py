"""``weightwatch compare`` as one call: the comparison, its report written to disk, the verdicts.

:func:`compare` chains :func:`~weightwatch.analysis.comparison.compare.compare_runs`
(load, group, test), :func:`write_report` (the PNGs of :mod:`.figures`,
index.html of :mod:`.html`, the population's TensorBoard view of
:mod:`.tbexport`) and, given a reference, each run's verdict
(:func:`~weightwatch.analysis.classification.classify.classify_below`).
"""

from __future__ import annotations

from pathlib import Path

from ..classification.classify import classify_below
from ..classification.reference import Reference, load_reference
from ..comparison.compare import Comparison, compare_runs
from ..comparison.dispersion import PERMUTATIONS
from .figures import write_figures
from .html import write_html
from .tbexport import write_tensorboard
from .verdicts import reference_notes


def write_report(c: Comparison, out: str | Path | None, *, figures: bool = True, tensorboard: bool = True) -> None:
    """Write ``c``'s figures and index.html into ``out`` (None: neither) and, with ``tensorboard``,
    its TensorBoard view under ``c.root``; fills ``c.out``, ``c.figures``, ``c.report``, ``c.tensorboard``.

    A TensorBoard view that cannot be written is a warning in ``c.warnings``, not an error.
    """
    if out is not None:
        c.out = Path(out)
        c.out.mkdir(parents=True, exist_ok=True)
        if figures:
            c.figures = write_figures(c, c.out)
        c.report = write_html(c, c.out / "index.html")
    if tensorboard:
        try:
            c.tensorboard = write_tensorboard(c)
        except OSError as exc:
            c.warnings.append(f"could not write the TensorBoard view into {str(c.root)!r}: {exc}")


def compare(root: str | Path, *, metric: str | None = None, thresholds: tuple[float, float] | None = None,
            out: str | Path | None = "report", figures: bool = True, tensorboard: bool = True,
            workers: int | None = None, cache: bool = True, progress: bool = True,
            permutations: int = PERMUTATIONS, reference: str | Path | Reference | None = None) -> Comparison:
    """Compare the runs below ``root``: group them by final metric (non / low / mid / high, per
    family), test whether the high runs' weights are more alike than the low runs', and write
    figures and index.html to ``out`` (None: write nothing) and, with ``tensorboard``, the
    population's TensorBoard view under ``root``.

    Args:
        metric: the final-metric tag (default: the first of val_accuracy, eval_accuracy,
            accuracy, test_accuracy, acc found).
        thresholds: (a, b) group boundaries on the metric instead of clustering.
        workers / cache / progress: see :func:`~weightwatch.analysis.loading.loader.load_runs`.
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
                     permutations=permutations)
    if reference is not None:
        ref = load_reference(reference)
        c.predictions = classify_below(root, ref)
        c.reference_notes = reference_notes(ref)
    write_report(c, out, figures=figures, tensorboard=tensorboard)
    return c
