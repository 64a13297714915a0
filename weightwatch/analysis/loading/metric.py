"""Which scalar holds a run's performance, and its final value."""

from __future__ import annotations

from .run import Run

#: The metric tags tried, in this order, when none is named.
METRIC_NAMES = ("val_accuracy", "eval_accuracy", "accuracy", "test_accuracy", "acc")  # eval_: Hugging Face


def find_metric(run: Run, metric: str | None = None) -> str | None:
    """The scalar tag holding the run's performance metric, or None.

    ``metric`` (or each of :data:`METRIC_NAMES` in turn) is matched against the
    tag itself, then against the last path component of the run's tags
    (``eval/accuracy`` for ``accuracy``; the shortest such tag wins).

    >>> from pathlib import Path
    >>> import numpy as np
    >>> from weightwatch.analysis.loading.run import Series
    >>> s = Series(np.array([0]), np.array([0.5]))
    >>> find_metric(Run("r", Path("r"), scalars={"loss": s, "eval/accuracy": s}))
    'eval/accuracy'
    """
    for name in [metric] if metric else METRIC_NAMES:
        if name in run.scalars:
            return name
        suffixed = sorted((t for t in run.scalars if t.endswith("/" + name)), key=lambda t: (len(t), t))
        if suffixed:
            return suffixed[0]
    return None


def final_metric(run: Run, metric: str | None = None) -> tuple[str, float] | None:
    """(tag, value at the last step) of the run's metric, or None when it has none.

    The metric is ``metric`` when given, else the first found of
    val_accuracy, eval_accuracy, accuracy, test_accuracy, acc (see :func:`find_metric`).
    """
    tag = find_metric(run, metric)
    if tag is None or run.scalars[tag].values.size == 0:
        return None
    return tag, run.scalars[tag].last
