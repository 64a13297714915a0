"""Learn, from labelled runs, to tell the optimal ones from their weights: ``weightwatch fit``.

For every step at which the runs logged their weights (the early-prediction
curve), the candidate models of :mod:`.candidates` are compared by stratified
K-fold cross-validation on the runs' features (:mod:`.features`, gathered by
:mod:`.population`) and the best is refitted on every run and exported to
plain arrays (:mod:`.export`, :mod:`.models`) in a :class:`~.reference.Reference`.

The quality reported is the out-of-fold quality of the chosen model: every
run is scored by a model that did not see it. Every source of randomness
takes ``random_state``, so a fit is reproducible.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..comparison.groups import family_of
from ..loading.loader import load_runs
from ..loading.run import Run
from .candidates import classifiers, cross_validate, filled, regressors, usable
from .export import export
from .models import StepModels
from .population import MAX_STEPS, Population, make_labels, model_steps, population_features
from .reference import Reference
from .reffile import json_safe, reference_info

#: AUC the early-prediction summary looks for ("earliest step with AUC >= 0.9").
EARLY_AUC = 0.9

__all__ = ["EARLY_AUC", "FitResult", "fit", "fit_step"]


def fit_step(step: int, x: np.ndarray, y: np.ndarray, values: np.ndarray, *, cv: int = 5,
             random_state: int = 0) -> StepModels:
    """Choose, refit and export the models of one step from features ``x`` (n, F)."""
    used, fill = usable(x)
    xf = filled(x, fill)[:, used]
    chosen = cross_validate(xf, y.astype(bool), values, cv, random_state)
    clf = classifiers(random_state)[chosen.classifier].fit(xf, y.astype(int))
    reg = regressors(random_state)[chosen.regressor].fit(xf, values)
    regressor = export(reg, used, xf, classifier=False)
    regressor.meta["clip"] = [float(values.min()), float(values.max())]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        typical_opt = np.nanmedian(np.where(np.isfinite(x[y]), x[y], np.nan), axis=0)
        typical_sub = np.nanmedian(np.where(np.isfinite(x[~y]), x[~y], np.nan), axis=0)
    typical_opt[~used] = np.nan
    typical_sub[~used] = np.nan
    cv_info = {**chosen.quality, "classifier": chosen.classifier, "regressor": chosen.regressor,
               "candidates": chosen.candidates, "runs": int(len(y)), "optimal": int(y.sum()),
               "features_used": int(used.sum())}
    return StepModels(step=step, runs=len(y), classifier=export(clf, used, xf, classifier=True), regressor=regressor,
                      fill=fill, coverage=np.isfinite(x).mean(axis=0), typical_optimal=typical_opt,
                      typical_suboptimal=typical_sub, cv=json_safe(cv_info))


def hparams_matrix(runs: Sequence[Run]) -> tuple[np.ndarray, list[str]]:
    """The runs' hyperparameters as numbers (n, h): numeric ones as they are, the others
    one-hot; only those that vary. Returns (matrix, column names)."""
    keys = sorted({k for run in runs for k in run.hparams})
    cols, names = [], []
    for key in keys:
        vals = [run.hparams.get(key) for run in runs]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) or v is None for v in vals)
        if numeric:
            col = np.array([np.nan if v is None else float(v) for v in vals])
            if np.nanmax(col) > np.nanmin(col):
                cols.append(col)
                names.append(key)
            continue
        levels = sorted({str(v) for v in vals})
        if len(levels) > 1:
            for level in levels:
                cols.append(np.array([float(str(v) == level) for v in vals]))
                names.append(f"{key}={level}")
    return (np.column_stack(cols) if cols else np.zeros((len(runs), 0))), names


def hparams_baseline(runs: Sequence[Run], y: np.ndarray, values: np.ndarray, cv: int = 5,
                     random_state: int = 0) -> dict[str, Any]:
    """The same cross-validated quality for models that see only the hyperparameters."""
    x, names = hparams_matrix(runs)
    if not names:
        return {"available": False, "reason": "the runs logged no hyperparameters that vary"}
    used, fill = usable(x)
    chosen = cross_validate(filled(x, fill)[:, used], y.astype(bool), values, cv, random_state)
    return {"available": True, "hparams": names, **chosen.quality, "classifier": chosen.classifier,
            "regressor": chosen.regressor}


@dataclass
class FitResult:
    """What :func:`fit` made: the reference and the numbers ``weightwatch fit`` prints.

    Attributes:
        reference: the fitted :class:`~.reference.Reference`.
        metric / threshold / rule: the labels (optimal: final metric >= threshold).
        runs / optimal: labelled runs, optimal ones; unlabelled: runs without the metric.
        curve: one dict per step: its held-out auc, balanced_accuracy, kendall_tau,
            r2, runs and the chosen classifier / regressor.
        baseline: the same quality for models that see only the hyperparameters.
    """

    reference: Reference
    metric: str
    threshold: float
    rule: str
    runs: int
    optimal: int
    unlabelled: list[str]
    curve: list[dict[str, Any]]
    baseline: dict[str, Any]

    @property
    def final(self) -> dict[str, Any]:
        return self.curve[-1]

    @property
    def earliest(self) -> int | None:
        """The earliest step whose held-out AUC reaches EARLY_AUC, or None."""
        return next((c["step"] for c in self.curve if (c["auc"] or 0) >= EARLY_AUC), None)

    def to_json(self) -> dict[str, Any]:
        return json_safe({"metric": self.metric, "threshold": self.threshold, "rule": self.rule, "runs": self.runs,
                          "optimal": self.optimal, "unlabelled": self.unlabelled, "curve": self.curve,
                          "earliest_step_auc_0.9": self.earliest, "baseline": self.baseline})


def fit(runs: str | os.PathLike[str] | Sequence[Run], *, metric: str | None = None, threshold: float | None = None,
        top: float | None = None, cv: int = 5, random_state: int = 0, baseline: bool = True,
        max_steps: int = MAX_STEPS, progress: Callable[[str], None] | None = None,
        population: Population | None = None) -> FitResult:
    """Fit a reference on ``runs``: a directory of finished runs, or runs already loaded.

    For each logged step, candidate models are compared by cross-validation and
    the best is kept (see the module doc). ``result.reference.save(path)``
    writes the ``.ww`` file ``weightwatch classify`` reads.

    Args:
        metric: the final-metric tag (auto-detected when None, as compare does).
        threshold / top: the labels, see :func:`~.population.make_labels`
            (neither: the runs compare puts in the high group are optimal).
        cv: cross-validation folds (fewer when a group is smaller).
        baseline: also cross-validate models that see only the hyperparameters.
        progress: called with one line per fitted step.
        population: features already computed by :func:`~.population.population_features`.

    Raises ValueError when the runs cannot be labelled into two groups of at
    least 2 runs, FileNotFoundError for a missing directory.

    With ``runs_dir`` a directory of finished runs (``weightwatch compare``'s
    kind, here 24 small digits classifiers):

    >>> result = fit(runs_dir, top=0.5, cv=3, baseline=False)
    >>> result.metric, result.rule, result.runs, result.optimal
    ('val_accuracy', 'top', 24, 12)
    >>> 0.5 <= result.final["auc"] <= 1.0, result.reference.steps[-1].step == result.final["step"]
    (True, True)
    """
    if isinstance(runs, (str, os.PathLike)):
        runs = load_runs(runs, progress=False).runs
    pop = population if population is not None else population_features(runs, metric)
    if len(pop.runs) < 4:
        raise ValueError(f"fit needs at least 4 runs with the metric {pop.metric!r}, found {len(pop.runs)}")
    y, thr, rule = make_labels(pop.values, threshold=threshold, top=top, runs=pop.runs, metric=pop.metric)
    if y.sum() < 2 or (~y).sum() < 2:
        raise ValueError(f"with {rule} {thr:.4g} on {pop.metric!r}, {int(y.sum())} of {len(y)} runs are optimal: "
                         "each group needs at least 2 runs; choose another --threshold or --top")
    steps = model_steps(pop, y, max_steps)
    if not steps:
        raise ValueError("no step was logged by at least half of the runs with both groups present")
    fitted, curve = [], []
    for step in steps:
        idx, x = pop.rows(step)
        m = fit_step(step, x, y[idx], pop.values[idx], cv=cv, random_state=random_state)
        fitted.append(m)
        curve.append({"step": step, **{k: m.cv[k] for k in ("auc", "balanced_accuracy", "kendall_tau", "r2", "runs",
                                                                "classifier", "regressor")}})
        if progress:
            progress(f"step {step}: AUC {m.cv['auc']:.3f} ({m.cv['classifier']}), "
                     f"R^2 {m.cv['r2']:.3f} ({m.cv['regressor']}) on {m.runs} runs")
    base = hparams_baseline(pop.runs, y, pop.values, cv, random_state) if baseline else {"available": False,
                                                                                         "reason": "not asked"}
    label = {"metric": pop.metric, "rule": rule, "threshold": thr,
             "description": f"optimal: final {pop.metric} >= {thr:.6g} ({rule})"}
    architectures = sorted({str(r.architecture) for r in pop.runs})
    families = sorted({family_of(r) for r in pop.runs})
    info = reference_info(label, {"runs": len(pop.runs), "optimal": int(y.sum()), "architectures": architectures,
                                  "families": families,
                                  "metric_range": [float(pop.values.min()), float(pop.values.max())],
                                  "cv": cv, "random_state": random_state}, json_safe(base))
    ref = Reference(info, fitted)
    return FitResult(ref, pop.metric, thr, rule, len(pop.runs), int(y.sum()), pop.unlabelled, json_safe(curve),
                     json_safe(base))
