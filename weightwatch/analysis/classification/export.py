"""A fitted scikit-learn model as a :class:`~.models.Model`: plain arrays over every feature."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .features import FEATURE_NAMES
from .models import Model


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
