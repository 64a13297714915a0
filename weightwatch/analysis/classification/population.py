"""The labelled population a reference is fitted on: which runs are optimal, their features, which steps.

>>> y_opt, threshold, rule = make_labels(np.array([0.1, 0.5, 0.8, 0.9]), top=0.5)
>>> y_opt.tolist(), threshold, rule
([False, False, True, True], 0.8, 'top')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..comparison.groups import group_runs
from ..loading.metric import final_metric
from ..loading.run import Run
from .features import FEATURE_NAMES, FeatureTable, record_steps, run_features
from .hparams import HparamColumn, hparam_columns, hparam_values

#: At most this many steps get their own models (evenly spaced, the last always included).
MAX_STEPS = 20


def make_labels(values: np.ndarray, *, threshold: float | None = None, top: float | None = None,
                runs: Sequence[Run] | None = None, metric: str | None = None) -> tuple[np.ndarray, float, str]:
    """Which runs count as optimal: (y (n,) bool, threshold, rule).

    - ``threshold``: final metric >= threshold;
    - ``top``: the best fraction ``top`` of the runs (``top=0.5``: the better half);
    - neither: the high group, as ``weightwatch compare`` groups ``runs`` (aligned with
      ``values``; per architecture family); ``threshold`` is then the lowest final
      metric in the high group.
    """
    values = np.asarray(values, dtype=np.float64)
    if threshold is not None and top is not None:
        raise ValueError("give either a threshold or a top fraction, not both")
    if threshold is not None:
        return values >= threshold, float(threshold), "threshold"
    if top is not None:
        if not 0 < top < 1:
            raise ValueError(f"top must be a fraction between 0 and 1, got {top}")
        ranked = np.sort(values)[::-1]
        threshold = float(ranked[max(int(round(top * values.size)) - 1, 0)])
        return values >= threshold, threshold, "top"
    if runs is None:
        raise ValueError("the high group needs the runs (or give a threshold or a top fraction)")
    grouping = group_runs(runs, metric)
    group = {id(lab.run): lab.group for lab in grouping.labelled}
    y = np.array([group.get(id(run)) == "high" for run in runs], dtype=bool)
    if not y.any():
        raise ValueError("compare found no high group in these runs; give --threshold or --top")
    return y, float(values[y].min()), "high-group"


@dataclass
class Population:
    """The labelled runs of a population and their features.

    Attributes:
        runs / tables: aligned, the runs that have the metric (tables: :func:`~.features.run_features`
            with the hyperparameter columns appended, (n_steps, F + H)).
        values: (n,) their final metric.
        unlabelled: names of the runs without it (not used, listed).
        hparams: the H hyperparameter columns; horizon: the last step logged (curves extrapolate to it).
    """

    metric: str
    runs: list[Run]
    tables: list[FeatureTable]
    values: np.ndarray
    unlabelled: list[str] = field(default_factory=list)
    hparams: list[HparamColumn] = field(default_factory=list)
    horizon: int = 0

    @property
    def names(self) -> list[str]:
        """The F + H column names."""
        return [*FEATURE_NAMES, *(c.name for c in self.hparams)]

    def rows(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices of the runs that logged weights at ``step`` (m,), their features (m, F + H))."""
        idx, xs = [], []
        for i, t in enumerate(self.tables):
            j = int(np.searchsorted(t.steps, step))
            if j < t.steps.size and t.steps[j] == step:
                idx.append(i)
                xs.append(t.values[j])
        return np.array(idx, dtype=np.int64), (np.vstack(xs) if xs else np.zeros((0, len(self.names))))


def with_hparams(table: FeatureTable, run: Run, columns: Sequence[HparamColumn]) -> FeatureTable:
    """``table`` with ``run``'s hyperparameter ``columns`` appended to every row."""
    h = np.tile(hparam_values(run, columns), (table.steps.size, 1))
    return FeatureTable(table.steps, np.hstack([table.values, h]))


def population_features(runs: Sequence[Run], metric: str | None = None) -> Population:
    """Features and final metric of every run that has the metric (the others are listed as unlabelled)."""
    chosen = metric
    labelled, values, unlabelled = [], [], []
    for run in runs:
        found = final_metric(run, chosen)
        if found is None or not math.isfinite(found[1]) or record_steps(run).size == 0:
            unlabelled.append(run.name)
            continue
        chosen = chosen or found[0]
        labelled.append(run)
        values.append(found[1])
    if chosen is None:
        raise ValueError("no run has a metric to learn from (looked for val_accuracy, eval_accuracy, accuracy, test_accuracy, acc); "
                         "name one with --metric")
    horizon = max((int(record_steps(run)[-1]) for run in labelled), default=0)
    columns = hparam_columns(labelled)
    tables = [with_hparams(run_features(run, chosen, horizon), run, columns) for run in labelled]
    return Population(chosen, labelled, tables, np.array(values, dtype=np.float64), unlabelled, columns, horizon)


#: How a run counts the steps it logs at: once per epoch from 0, or in optimizer steps.
STEP_UNITS = ("epoch", "step")


def step_unit(run: Run) -> str | None:
    """How ``run`` counts the steps its weights were logged at: ``"epoch"``, ``"step"``
    (optimizer steps), or None when nothing says.

    - an ``epoch`` scalar (Lightning's and Hugging Face's callbacks and Keras' batch mode write
      one): ``"step"`` when a point sits at another step than its value, ``"epoch"`` when every
      point sits at its own value (and one is past 0);
    - else the framework: ``hf`` and ``lightning`` count optimizer steps, ``keras`` epochs;
    - else weights logged at 0, 1, 2, ... (a loop logging once per epoch, as the examples do): ``"epoch"``.

    >>> from pathlib import Path
    >>> from weightwatch.analysis.loading.run import Series
    >>> lightning = Run("l", Path("l"), scalars={"epoch": Series(np.array([21, 43]), np.array([0.0, 1.0]))})
    >>> plain = Run("p", Path("p"), scalars={"weights/all/mean": Series(np.arange(4), np.zeros(4))})
    >>> step_unit(lightning), step_unit(plain)
    ('step', 'epoch')
    """
    epoch = run.scalars.get("epoch")
    if epoch is not None and epoch.steps.size:
        steps, values = np.asarray(epoch.steps, dtype=np.float64), np.asarray(epoch.values, dtype=np.float64)
        if np.any(np.abs(steps - values) > 1e-6):
            return "step"
        if steps.max() > 0:
            return "epoch"
    framework = run.info.get("framework") if isinstance(run.info, dict) else None
    if framework in ("hf", "lightning"):
        return "step"
    if framework == "keras":
        return "epoch"
    steps = record_steps(run)
    if steps.size >= 2 and np.array_equal(steps, np.arange(steps.size)):
        return "epoch"
    return None


def population_step_unit(runs: Sequence[Run]) -> str | None:
    """The step unit all ``runs`` share (see :func:`step_unit`), None when one does not say or they differ."""
    units = {step_unit(run) for run in runs}
    return units.pop() if len(units) == 1 else None


def model_steps(pop: Population, y: np.ndarray, max_steps: int = MAX_STEPS) -> list[int]:
    """The steps that get models: logged by at least half the runs, with both groups present."""
    counts: dict[int, list[int]] = {}
    for i, t in enumerate(pop.tables):
        for s in t.steps.tolist():
            counts.setdefault(s, []).append(i)
    need = max(4, math.ceil(0.5 * len(pop.runs)))
    steps = [s for s, members in sorted(counts.items())
             if len(members) >= need and 2 <= int(y[members].sum()) <= len(members) - 2]
    if len(steps) > max_steps:
        keep = np.unique(np.round(np.linspace(0, len(steps) - 1, max_steps)).astype(int))
        steps = [steps[i] for i in keep]
    return steps
