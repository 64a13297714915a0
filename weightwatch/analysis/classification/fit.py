"""Learn, from labelled runs, to tell the optimal ones from everything they logged: ``weightwatch fit``.

For every step at which the runs logged their weights (the early-prediction
curve), the candidate models of :mod:`.candidates` are compared by stratified
K-fold cross-validation on each feature family alone and combined
(:mod:`.families`: the curves so far, their extrapolation, the
hyperparameters, the weights' statistics, node strengths and updates; see
:mod:`.evaluation`), beside the baselines a user already has (the metric so
far, the best curve extrapolation, the hyperparameters alone). The family
that validates best at that step is refitted on every run and exported to
plain arrays (:mod:`.export`, :mod:`.models`) in a :class:`~.reference.Reference`;
so where the weights add nothing, the reference does not use them (and says so).
At the first step a second classifier flags the runs that will stay at chance
(early "non" detection, with its out-of-fold precision and recall).

The quality reported is the out-of-fold quality of the chosen model: every
run is scored by a model that did not see it. Every source of randomness
takes ``random_state``, so a fit is reproducible.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..comparison.groups import family_of
from ..loading.loader import load_runs
from ..loading.run import Run
from ..comparison.groups import group_runs
from .candidates import classifiers, cross_validate, filled, regressors, usable
from .evaluation import CV_REPEATS, StepChoice, evaluate_step, precision_recall
from .export import export
from .families import FAMILIES, WEIGHTS_ONLY
from .features import FEATURE_NAMES
from .hparams import hparams_matrix
from .models import StepModels
from .population import MAX_STEPS, Population, make_labels, model_steps, population_features, population_step_unit
from .reference import Reference
from .reffile import json_safe, reference_info

#: AUC the early-prediction summary looks for ("earliest step with AUC >= 0.9").
EARLY_AUC = 0.9

__all__ = ["EARLY_AUC", "FitResult", "fit", "fit_step", "hparams_matrix"]


def _exported(kind: str, name: str, mask: np.ndarray, xf: np.ndarray, target: np.ndarray, random_state: int):
    """Fit candidate ``name`` on the columns ``mask`` of the filled features ``xf`` and export it."""
    models = classifiers(random_state) if kind == "classifier" else regressors(random_state)
    model = models[name].fit(xf[:, mask], target)
    return export(model, mask, xf[:, mask], classifier=kind == "classifier")


def fit_step(step: int, x: np.ndarray, y: np.ndarray, values: np.ndarray, *, names: Sequence[str] | None = None,
             cv: int = 5, random_state: int = 0, families: Sequence[str] = FAMILIES,
             cv_repeats: int = CV_REPEATS) -> StepModels:
    """Cross-validate the families (:func:`~.evaluation.evaluate_step`, a challenger of the metric so
    far again on ``cv_repeats`` fold splits) on features ``x`` (n, F + H) with column ``names``, then
    refit and export the best ones of this step."""
    names = list(names) if names is not None else list(FEATURE_NAMES)
    y = y.astype(bool)
    used, fill = usable(x)
    xf = filled(x, fill)
    choice = evaluate_step(x, names, y, values, cv, random_state, families, cv_repeats)
    clf_q, reg_q = choice.families[choice.classifier_family], choice.families[choice.regressor_family]
    classifier = _exported("classifier", clf_q["classifier"], choice.masks[choice.classifier_family], xf,
                           y.astype(int), random_state)
    regressor = _exported("regressor", reg_q["regressor"], choice.masks[choice.regressor_family], xf, values,
                          random_state)
    regressor.meta["clip"] = [float(values.min()), float(values.max())]
    fallback, fallback_reg, fallback_info = _fallback(choice, xf, y, values, random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        typical_opt = np.nanmedian(np.where(np.isfinite(x[y]), x[y], np.nan), axis=0)
        typical_sub = np.nanmedian(np.where(np.isfinite(x[~y]), x[~y], np.nan), axis=0)
    # a driver always has numbers to compare with: a group without the feature shows the fill value
    typical_opt = np.where(np.isfinite(typical_opt), typical_opt, fill)
    typical_sub = np.where(np.isfinite(typical_sub), typical_sub, fill)
    typical_opt[~used] = np.nan
    typical_sub[~used] = np.nan
    cv_info = {"auc": clf_q["auc"], "balanced_accuracy": clf_q["balanced_accuracy"],
               "kendall_tau": reg_q["kendall_tau"], "r2": reg_q["r2"],
               "classifier": clf_q["classifier"], "regressor": reg_q["regressor"],
               "family": choice.classifier_family, "regressor_family": choice.regressor_family,
               "weights_add_nothing": choice.weights_add_nothing, "families": choice.families,
               "baselines": choice.baselines, "challenger": choice.challenger, "runs": int(len(y)),
               "optimal": int(y.sum()),
               "features_used": int(choice.masks[choice.classifier_family].sum())}
    if fallback_info:
        cv_info["fallback"] = fallback_info
    return StepModels(step=step, runs=len(y), classifier=classifier, regressor=regressor,
                      fill=fill, coverage=np.isfinite(x).mean(axis=0), typical_optimal=typical_opt,
                      typical_suboptimal=typical_sub, cv=json_safe(cv_info), fallback=fallback,
                      fallback_regressor=fallback_reg)


def _fallback(choice: StepChoice, xf: np.ndarray, y: np.ndarray, values: np.ndarray, random_state: int):
    """(classifier, regressor, their cv summary): the best weights-only models of the step, each
    only where the chosen one reads more than the weights (None, or an empty summary, otherwise)."""
    ok = [f for f in WEIGHTS_ONLY if choice.families.get(f, {}).get("available")]
    info: dict[str, Any] = {}
    clf = reg = None
    if ok and choice.classifier_family not in WEIGHTS_ONLY:
        family = max(ok, key=lambda f: choice.families[f]["auc"])  # ties: the first (the simpler) family
        q = choice.families[family]
        clf = _exported("classifier", q["classifier"], choice.masks[family], xf, y.astype(int), random_state)
        info.update(family=family, classifier=q["classifier"], auc=q["auc"])
    if ok and choice.regressor_family not in WEIGHTS_ONLY:
        family = max(ok, key=lambda f: choice.families[f]["r2"])
        q = choice.families[family]
        reg = _exported("regressor", q["regressor"], choice.masks[family], xf, values, random_state)
        reg.meta["clip"] = [float(values.min()), float(values.max())]
        info.update(regressor_family=family, regressor=q["regressor"], r2=q["r2"])
    return clf, reg, info


def fit_non(m: StepModels, x: np.ndarray, non: np.ndarray, values: np.ndarray, cv: int,
            random_state: int) -> dict[str, Any]:
    """Early "non" detection: a classifier of "stays at chance" on the first step's features ``x``
    (n, F + H), stored on ``m`` (``m.non``); returns its out-of-fold precision and recall at 0.5."""
    if non.sum() < 2 or (~non).sum() < 2:
        return {"available": False, "reason": f"{int(non.sum())} runs did not converge (need at least 2)"}
    used, fill = usable(x)
    xf = filled(x, fill)
    chosen = cross_validate(xf[:, used], non, values, cv, random_state, ("logistic", "forest"), ("ridge",))
    precision, recall = precision_recall(non, chosen.proba >= 0.5)
    m.non = _exported("classifier", chosen.classifier, used, filled(x, m.fill), non.astype(int), random_state)
    return {"available": True, "step": m.step, "runs": int(non.size), "non": int(non.sum()),
            "auc": chosen.quality["auc"], "precision": precision, "recall": recall,
            "flagged": int((chosen.proba >= 0.5).sum()), "classifier": chosen.classifier}


def hparams_baseline(runs: Sequence[Run], y: np.ndarray, values: np.ndarray, cv: int = 5,
                     random_state: int = 0) -> dict[str, Any]:
    """The cross-validated quality of models that see only the hyperparameters (all three candidates)."""
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
            r2, runs, the chosen classifier / regressor and the families they use
            (``family``, ``regressor_family``), ``families`` (each family's out-of-fold
            quality), ``baselines`` (metric so far, best curve extrapolation, as they are),
            ``weights_add_nothing``, ``fallback`` (the weights-only models kept for runs that
            lack what the chosen ones read: family, candidate, auc / r2; None when not needed) and
            ``challenger`` (where the first split's best family was not ``metric``: its gain over
            the metric so far on the first split and per repeat, their mean and standard errors,
            ``cv_repeats`` and ``kept``; see :mod:`.evaluation`; None otherwise).
        baseline: the same quality for models that see only the hyperparameters.
        non: early "non" detection at the first step: out-of-fold precision and recall
            of the flag "stays at chance" (``available`` False without such runs).
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
    non: dict[str, Any] = field(default_factory=dict)

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
                          "earliest_step_auc_0.9": self.earliest, "baseline": self.baseline, "non": self.non,
                          "weights_add_nothing": [c["step"] for c in self.curve if c["weights_add_nothing"]]})


def fit(runs: str | os.PathLike[str] | Sequence[Run], *, metric: str | None = None, threshold: float | None = None,
        top: float | None = None, cv: int = 5, random_state: int = 0, baseline: bool = True,
        max_steps: int = MAX_STEPS, progress: Callable[[str], None] | None = None,
        population: Population | None = None, families: Sequence[str] | None = None,
        cv_repeats: int = CV_REPEATS) -> FitResult:
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
        families: the feature families the reference may use (default: all of
            :data:`~.families.FAMILIES`; e.g. ``("weights",)`` for a weights-only reference).
        cv_repeats: where the best family of a step is not ``metric``, cross-validate it again on
            this many further fold splits and replace the metric so far only if the mean gain
            passes the rule (see :mod:`.evaluation`); 0 decides from the first split alone.

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
    unknown = sorted(set(families or ()) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown feature families {unknown}; choose from {', '.join(FAMILIES)}")
    if cv_repeats < 0:
        raise ValueError(f"cv_repeats must be 0 or more, got {cv_repeats}")
    families = [f for f in (families or FAMILIES) if baseline or f != "hparams"]
    fitted, curve = [], []
    for step in steps:
        idx, x = pop.rows(step)
        m = fit_step(step, x, y[idx], pop.values[idx], names=pop.names, cv=cv, random_state=random_state,
                     families=families, cv_repeats=cv_repeats)
        fitted.append(m)
        curve.append({"step": step, **{k: m.cv[k] for k in ("auc", "balanced_accuracy", "kendall_tau", "r2", "runs",
                                                                "classifier", "regressor", "family", "regressor_family",
                                                                "weights_add_nothing", "families", "baselines")},
                      "fallback": m.cv.get("fallback"), "challenger": m.cv.get("challenger")})
        if progress:
            progress(f"step {step}: AUC {m.cv['auc']:.3f} ({m.cv['family']}: {m.cv['classifier']}), "
                     f"R^2 {m.cv['r2']:.3f} ({m.cv['regressor_family']}: {m.cv['regressor']}) on {m.runs} runs")
    idx, x = pop.rows(steps[0])
    non = np.array([g == "non" for g in non_groups(pop)], dtype=bool)[idx]
    non_info = fit_non(fitted[0], x, non, pop.values[idx], cv, random_state)
    base = hparams_baseline(pop.runs, y, pop.values, cv, random_state) if baseline else {"available": False,
                                                                                         "reason": "not asked"}
    label = {"metric": pop.metric, "rule": rule, "threshold": thr,
             "description": f"optimal: final {pop.metric} >= {thr:.6g} ({rule})"}
    architectures = sorted({str(r.architecture) for r in pop.runs})
    families = sorted({family_of(r) for r in pop.runs})
    info = reference_info(label, {"runs": len(pop.runs), "optimal": int(y.sum()), "architectures": architectures,
                                  "families": families, "step_unit": population_step_unit(pop.runs),
                                  "metric_range": [float(pop.values.min()), float(pop.values.max())],
                                  "cv": cv, "cv_repeats": cv_repeats, "random_state": random_state},
                          json_safe(base))
    info["features"].update({"hparams": [c.to_json() for c in pop.hparams], "horizon": pop.horizon})
    info["non"] = json_safe(non_info)
    ref = Reference(info, fitted)
    return FitResult(ref, pop.metric, thr, rule, len(pop.runs), int(y.sum()), pop.unlabelled, json_safe(curve),
                     json_safe(base), json_safe(non_info))


def non_groups(pop: Population) -> list[str | None]:
    """Each run's group as ``weightwatch compare`` finds it (``"non"``: stayed at chance)."""
    grouping = group_runs(pop.runs, pop.metric)
    group = {id(lab.run): lab.group for lab in grouping.labelled}
    return [group.get(id(run)) for run in pop.runs]
