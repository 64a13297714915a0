"""Learn, from labelled runs, to tell the optimal ones from their weights: ``weightwatch fit``.

For every step at which the runs logged their weights (the early-prediction
curve), candidate scikit-learn models are compared by stratified K-fold
cross-validation on the runs' features (:mod:`.features`) and the best is
refitted on every run and exported to plain arrays (:mod:`.reference`):

- P(optimal): logistic regression on standardised features, gradient-boosted
  trees, extremely randomised trees; the highest out-of-fold ROC AUC wins;
- the final metric (a regression): ridge, gradient-boosted trees, extremely
  randomised trees; the highest out-of-fold R^2 wins.

The quality printed by ``fit`` is that out-of-fold quality of the chosen
model: every run is scored by a model that did not see it (the choice among
three candidates is made on the same folds, a small optimism). Every source
of randomness takes ``random_state``, so a fit is reproducible.

>>> y_opt, threshold, rule = make_labels(np.array([0.1, 0.5, 0.8, 0.9]), top=0.5)
>>> y_opt.tolist(), threshold, rule
([False, False, True, True], 0.8, 'top')
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from weightwatch._optional import require

from .features import FEATURE_NAMES, FeatureTable, run_features
from .reference import Model, Reference, StepModels, json_safe, reference_info
from .loading.run import Run

#: AUC the early-prediction summary looks for ("earliest step with AUC >= 0.9").
EARLY_AUC = 0.9
#: At most this many steps get their own models (evenly spaced, the last always included).
MAX_STEPS = 20

__all__ = ["CLASSIFIERS", "REGRESSORS", "FitResult", "fit_reference", "make_labels", "population_features"]


# -- candidates ---------------------------------------------------------------------------------------

def _sklearn():
    return require("sklearn", "analysis", "weightwatch fit")


def _classifiers(random_state: int) -> dict[str, Any]:
    _sklearn()
    from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000)),
        "boosting": GradientBoostingClassifier(n_estimators=100, max_depth=3, learning_rate=0.1, subsample=0.8,
                                               max_features="sqrt", random_state=random_state),
        "forest": ExtraTreesClassifier(n_estimators=100, min_samples_leaf=2, max_features="sqrt",
                                       random_state=random_state),
    }


def _regressors(random_state: int) -> dict[str, Any]:
    _sklearn()
    from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "ridge": make_pipeline(StandardScaler(), Ridge(alpha=10.0)),
        "boosting": GradientBoostingRegressor(n_estimators=100, max_depth=3, learning_rate=0.1, subsample=0.8,
                                              max_features="sqrt", random_state=random_state),
        "forest": ExtraTreesRegressor(n_estimators=100, min_samples_leaf=2, max_features="sqrt",
                                      random_state=random_state),
    }


CLASSIFIERS = ("logistic", "boosting", "forest")
REGRESSORS = ("ridge", "boosting", "forest")


# -- labels -------------------------------------------------------------------------------------------

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
    from .groups import group_runs

    grouping = group_runs(runs, metric)
    group = {id(lab.run): lab.group for lab in grouping.labelled}
    y = np.array([group.get(id(run)) == "high" for run in runs], dtype=bool)
    if not y.any():
        raise ValueError("compare found no high group in these runs; give --threshold or --top")
    return y, float(values[y].min()), "high-group"


# -- the features of a population ----------------------------------------------------------------------

@dataclass
class Population:
    """The labelled runs of a population and their features.

    Attributes:
        runs / tables: aligned, the runs that have the metric.
        values: (n,) their final metric.
        unlabelled: names of the runs without it (not used, listed).
    """

    metric: str
    runs: list[Run]
    tables: list[FeatureTable]
    values: np.ndarray
    unlabelled: list[str] = field(default_factory=list)

    def rows(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices of the runs that logged weights at ``step`` (m,), their features (m, F))."""
        idx, xs = [], []
        for i, t in enumerate(self.tables):
            j = int(np.searchsorted(t.steps, step))
            if j < t.steps.size and t.steps[j] == step:
                idx.append(i)
                xs.append(t.values[j])
        return np.array(idx, dtype=np.int64), (np.vstack(xs) if xs else np.zeros((0, len(FEATURE_NAMES))))


def population_features(runs: Sequence[Run], metric: str | None = None) -> Population:
    """Features and final metric of every run that has the metric (the others are listed as unlabelled)."""
    from .loading.metric import final_metric

    chosen = metric
    labelled, tables, values, unlabelled = [], [], [], []
    for run in runs:
        found = final_metric(run, chosen)
        table = run_features(run)
        if found is None or not math.isfinite(found[1]) or table.steps.size == 0:
            unlabelled.append(run.name)
            continue
        chosen = chosen or found[0]
        labelled.append(run)
        tables.append(table)
        values.append(found[1])
    if chosen is None:
        raise ValueError("no run has a metric to learn from (looked for val_accuracy, eval_accuracy, accuracy, test_accuracy, acc); "
                         "name one with --metric")
    return Population(chosen, labelled, tables, np.array(values, dtype=np.float64), unlabelled)


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


# -- cross-validation -----------------------------------------------------------------------------------

def _usable(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(columns with at least two distinct finite values (F,) bool, fill values (F,): their median)."""
    finite = np.isfinite(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fill = np.nanmedian(np.where(finite, x, np.nan), axis=0)
        lo = np.nanmin(np.where(finite, x, np.nan), axis=0)
        hi = np.nanmax(np.where(finite, x, np.nan), axis=0)
    used = finite.any(axis=0) & (hi > lo)
    return used, np.where(np.isfinite(fill), fill, 0.0)


def _filled(x: np.ndarray, fill: np.ndarray) -> np.ndarray:
    x = np.array(x, dtype=np.float64)
    bad = ~np.isfinite(x)
    x[bad] = np.broadcast_to(fill, x.shape)[bad]
    return x


def _folds(y: np.ndarray, cv: int, random_state: int):
    from sklearn.model_selection import StratifiedKFold

    k = min(cv, int(y.sum()), int((~y).sum()))
    if k < 2:
        raise ValueError("each group needs at least 2 runs to cross-validate")
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state)


def _oof(model: Any, x: np.ndarray, target: np.ndarray, folds, stratify: np.ndarray, proba: bool) -> np.ndarray:
    """Out-of-fold predictions of ``model`` (a fresh clone per fold)."""
    from sklearn.base import clone

    out = np.zeros(len(x))
    for train, test in folds.split(x, stratify):
        m = clone(model).fit(x[train], target[train])
        out[test] = m.predict_proba(x[test])[:, 1] if proba else m.predict(x[test])
    return out


def quality(y: np.ndarray, p: np.ndarray, values: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """ROC AUC and balanced accuracy of P(optimal) ``p`` against ``y``; Kendall tau and R^2 of
    ``predicted`` against the final metric ``values``."""
    from scipy.stats import kendalltau
    from sklearn.metrics import balanced_accuracy_score, r2_score, roc_auc_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tau = kendalltau(predicted, values).statistic if np.ptp(predicted) > 0 else float("nan")
    return {
        "auc": float(roc_auc_score(y, p)),
        "balanced_accuracy": float(balanced_accuracy_score(y, p >= 0.5)),
        "kendall_tau": float(tau),
        "r2": float(r2_score(values, predicted)),
    }


@dataclass
class _Chosen:
    classifier: str
    regressor: str
    quality: dict[str, float]
    candidates: dict[str, dict[str, float]]


def cross_validate(x: np.ndarray, y: np.ndarray, values: np.ndarray, cv: int = 5,
                   random_state: int = 0) -> _Chosen:
    """Out-of-fold quality of every candidate on (filled) features ``x`` (n, f); picks the best of each kind."""
    from sklearn.metrics import r2_score, roc_auc_score

    folds = _folds(y, cv, random_state)
    probas = {n: _oof(m, x, y, folds, y, True) for n, m in _classifiers(random_state).items()}
    preds = {n: _oof(m, x, values, folds, y, False) for n, m in _regressors(random_state).items()}
    auc = {n: float(roc_auc_score(y, p)) for n, p in probas.items()}
    r2 = {n: float(r2_score(values, p)) for n, p in preds.items()}
    clf = max(CLASSIFIERS, key=lambda n: auc[n])  # ties: the earlier (simpler) candidate
    reg = max(REGRESSORS, key=lambda n: r2[n])
    return _Chosen(clf, reg, quality(y, probas[clf], values, preds[reg]),
                   {"auc": auc, "r2": r2})


# -- export to arrays ----------------------------------------------------------------------------------

def _linear(pipeline: Any, used: np.ndarray, link: str, coef: np.ndarray, intercept: float) -> Model:
    scaler = pipeline[0]
    n = used.size
    center, scale, full = np.zeros(n), np.ones(n), np.zeros(n)
    center[used], scale[used], full[used] = scaler.mean_, scaler.scale_, coef
    return Model({"kind": "linear", "link": link, "intercept": float(intercept),
                  "estimator": type(pipeline[-1]).__name__}, {"center": center, "scale": scale, "coef": full})


def _trees(trees: Sequence[Any], used: np.ndarray, link: str, base: float, weight: float, values: Callable,
           estimator: str) -> Model:
    """Concatenate scikit-learn trees into global node arrays; ``values(tree)`` gives (nodes,) node values."""
    cols = np.flatnonzero(used)
    roots, left, right, feature, threshold, value = [], [], [], [], [], []
    offset = 0
    for tree in trees:
        t = tree.tree_
        leaf = t.children_left < 0
        roots.append(offset)
        left.append(np.where(leaf, -1, t.children_left + offset))
        right.append(np.where(leaf, -1, t.children_right + offset))
        feature.append(np.where(leaf, -1, cols[np.where(leaf, 0, t.feature)]))
        threshold.append(np.where(leaf, 0.0, t.threshold))
        value.append(values(t))
        offset += t.node_count
    arrays = {"roots": np.array(roots, dtype=np.int64), "left": np.concatenate(left).astype(np.int64),
              "right": np.concatenate(right).astype(np.int64), "feature": np.concatenate(feature).astype(np.int64),
              "threshold": np.concatenate(threshold).astype(np.float64), "value": np.concatenate(value)}
    return Model({"kind": "trees", "link": link, "base": float(base), "weight": float(weight),
                  "estimator": estimator}, arrays)


def export(model: Any, used: np.ndarray, x: np.ndarray, classifier: bool) -> Model:
    """A fitted candidate as a :class:`Model` over all FEATURE_NAMES; ``x`` (its training
    features, used columns) fixes the boosting's constant start."""
    from sklearn.pipeline import Pipeline

    name = type(model).__name__
    if isinstance(model, Pipeline):
        last = model[-1]
        if classifier:
            return _linear(model, used, "logistic", last.coef_.ravel(), float(np.ravel(last.intercept_)[0]))
        return _linear(model, used, "identity", np.ravel(last.coef_), float(last.intercept_))
    if name.startswith("GradientBoosting"):
        trees = [row[0] for row in model.estimators_]
        sums = sum(t.predict(x) for t in trees) * model.learning_rate
        out = model.decision_function(x) if classifier else model.predict(x)
        base = float(np.mean(np.ravel(out) - sums))
        return _trees(trees, used, "logistic" if classifier else "identity", base, model.learning_rate,
                      lambda t: t.value[:, 0, 0].astype(np.float64), name)
    if name.startswith("ExtraTrees") or name.startswith("RandomForest"):
        trees = model.estimators_
        if classifier:
            def prob(t):
                v = t.value[:, 0, :].astype(np.float64)
                return v[:, list(model.classes_).index(1)] / v.sum(axis=1)
            return _trees(trees, used, "identity", 0.0, 1.0 / len(trees), prob, name)
        return _trees(trees, used, "identity", 0.0, 1.0 / len(trees), lambda t: t.value[:, 0, 0].astype(np.float64),
                      name)
    raise TypeError(f"cannot export {name}")


def constant_model(value: float) -> Model:
    """A model that always answers ``value`` (a step where one group is missing)."""
    return Model({"kind": "linear", "link": "identity", "intercept": float(value), "estimator": "constant"},
                 {"center": np.zeros(len(FEATURE_NAMES)), "scale": np.ones(len(FEATURE_NAMES)),
                  "coef": np.zeros(len(FEATURE_NAMES))})


# -- fitting -------------------------------------------------------------------------------------------

def fit_step(step: int, x: np.ndarray, y: np.ndarray, values: np.ndarray, *, cv: int = 5,
             random_state: int = 0) -> StepModels:
    """Choose, refit and export the models of one step from features ``x`` (n, F)."""
    used, fill = _usable(x)
    xf = _filled(x, fill)[:, used]
    chosen = cross_validate(xf, y.astype(bool), values, cv, random_state)
    clf = _classifiers(random_state)[chosen.classifier].fit(xf, y.astype(int))
    reg = _regressors(random_state)[chosen.regressor].fit(xf, values)
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
    used, fill = _usable(x)
    chosen = cross_validate(_filled(x, fill)[:, used], y.astype(bool), values, cv, random_state)
    return {"available": True, "hparams": names, **chosen.quality, "classifier": chosen.classifier,
            "regressor": chosen.regressor}


@dataclass
class FitResult:
    """What :func:`fit_reference` made: the reference and the numbers ``fit`` prints."""

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


def fit_reference(runs: Sequence[Run], *, metric: str | None = None, threshold: float | None = None,
                  top: float | None = None, cv: int = 5, random_state: int = 0, baseline: bool = True,
                  max_steps: int = MAX_STEPS, progress: Callable[[str], None] | None = None,
                  population: Population | None = None) -> FitResult:
    """Fit a reference on ``runs`` (see the module doc).

    Args:
        metric: the final-metric tag (auto-detected when None, as compare does).
        threshold / top: the labels, see :func:`make_labels`.
        cv: cross-validation folds (fewer when a group is smaller).
        baseline: also cross-validate models that see only the hyperparameters.
        population: features already computed by :func:`population_features`.
    """
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
    info = reference_info(label, {"runs": len(pop.runs), "optimal": int(y.sum()), "architectures": architectures,
                                  "metric_range": [float(pop.values.min()), float(pop.values.max())],
                                  "cv": cv, "random_state": random_state}, json_safe(base))
    ref = Reference(info, fitted)
    return FitResult(ref, pop.metric, thr, rule, len(pop.runs), int(y.sum()), pop.unlabelled, json_safe(curve),
                     json_safe(base))


# -- the command ---------------------------------------------------------------------------------------

def add_fit_arguments(parser: Any) -> None:
    """The arguments of ``weightwatch fit`` (an argparse parser)."""
    parser.add_argument("path", help="directory holding the labelled runs (any depth)")
    parser.add_argument("-o", "--output", default="reference.ww", help="the reference file to write")
    parser.add_argument("--metric", help="final-metric tag (default: val_accuracy, eval_accuracy, accuracy, test_accuracy, acc)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--threshold", type=float, help="optimal: final metric >= THRESHOLD (default: the high group)")
    group.add_argument("--top", type=float, help="optimal: the best fraction TOP of the runs (0.5: the better half)")
    parser.add_argument("--cv", type=int, default=5, help="cross-validation folds")
    parser.add_argument("--seed", type=int, default=0, help="random_state of the models and folds")
    parser.add_argument("--no-baseline", action="store_true", help="skip the hyperparameters-only baseline")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def format_fit(result: FitResult, output: str | None = None, cv: int | None = None) -> str:
    """What ``weightwatch fit`` prints."""
    def f(v: Any) -> str:
        return "  n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:5.3f}"

    ref = result.reference
    lines = [f"{result.runs} runs with {result.metric}; optimal: final {result.metric} >= {result.threshold:.4g} "
             f"({result.rule}): {result.optimal} runs, suboptimal: {result.runs - result.optimal}"]
    if result.unlabelled:
        lines.append(f"not used, no {result.metric}: {', '.join(result.unlabelled)}")
    lines += ["", f"held-out quality ({cv or ref.info['population'].get('cv', '')}-fold cross-validation: every run "
              "is scored by models that did not see it)",
              " step  runs    AUC  bal.acc  Kendall tau    R^2  models: P(optimal) / final metric"]
    for c in result.curve:
        lines.append(f"{c['step']:5d} {c['runs']:5d}  {f(c['auc'])}    {f(c['balanced_accuracy'])}        "
                     f"{f(c['kendall_tau'])}  {f(c['r2'])}  {c['classifier']} / {c['regressor']}")
    earliest = result.earliest
    lines.append(f"earliest step with AUC >= {EARLY_AUC}: {earliest if earliest is not None else 'none'}")
    b = result.baseline
    if b.get("available"):
        lines.append(f"hyperparameters only ({', '.join(b['hparams'])}): AUC {f(b['auc'])}, balanced accuracy "
                     f"{f(b['balanced_accuracy'])}, Kendall tau {f(b['kendall_tau'])}, R^2 {f(b['r2'])}; "
                     f"weights: AUC {f(result.final['auc'])}")
    elif b:
        lines.append(f"hyperparameters only: not measured ({b.get('reason', '')})")
    if output:
        lines.append(f"wrote {output} ({len(ref.steps)} steps)")
    return "\n".join(lines)


def fit_command(args: Any) -> int:
    """``weightwatch fit PATH -o reference.ww``: returns the exit code (0 written, 1 nothing could be fitted)."""
    import json
    import sys
    from pathlib import Path

    from .loading.loader import load_runs

    try:
        loaded = load_runs(args.path, progress=not args.json)
    except FileNotFoundError as exc:
        print(f"weightwatch fit: {exc}", file=sys.stderr)
        return 1
    for name, problems in loaded.problems.items():
        print(f"weightwatch fit: skipped {name}: {'; '.join(problems)}", file=sys.stderr)
    if not loaded.runs:
        print(f"weightwatch fit: no runs found under {args.path!r}", file=sys.stderr)
        return 1
    try:
        result = fit_reference(loaded.runs, metric=args.metric, threshold=args.threshold, top=args.top,
                               cv=args.cv, random_state=args.seed, baseline=not args.no_baseline,
                               progress=None if args.json else lambda line: print(f"  {line}", file=sys.stderr))
    except ValueError as exc:
        print(f"weightwatch fit: {exc}", file=sys.stderr)
        return 1
    path = result.reference.save(Path(args.output))
    if args.json:
        print(json.dumps({**result.to_json(), "reference": str(path)}, indent=1))
    else:
        print(format_fit(result, str(path), args.cv))
    return 0
