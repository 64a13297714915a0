"""The candidate scikit-learn models and their cross-validated comparison.

- P(optimal): logistic regression on standardised features, gradient-boosted
  trees, extremely randomised trees; the highest out-of-fold ROC AUC wins;
- the final metric (a regression): ridge, gradient-boosted trees, extremely
  randomised trees; the highest out-of-fold R^2 wins.

Every run is scored by a model that did not see it (the choice among three
candidates is made on the same folds, a small optimism). Every source of
randomness takes ``random_state``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from weightwatch._optional import require


def _sklearn():
    return require("sklearn", "analysis", "weightwatch fit")


def classifiers(random_state: int) -> dict[str, Any]:
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


def regressors(random_state: int) -> dict[str, Any]:
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


def usable(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(columns with at least two distinct finite values (F,) bool, fill values (F,): their median)."""
    finite = np.isfinite(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fill = np.nanmedian(np.where(finite, x, np.nan), axis=0)
        lo = np.nanmin(np.where(finite, x, np.nan), axis=0)
        hi = np.nanmax(np.where(finite, x, np.nan), axis=0)
    used = finite.any(axis=0) & (hi > lo)
    return used, np.where(np.isfinite(fill), fill, 0.0)


def filled(x: np.ndarray, fill: np.ndarray) -> np.ndarray:
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
    proba: np.ndarray | None = None
    predicted: np.ndarray | None = None


def cross_validate(x: np.ndarray, y: np.ndarray, values: np.ndarray, cv: int = 5,
                   random_state: int = 0, classifier_names: tuple[str, ...] = CLASSIFIERS,
                   regressor_names: tuple[str, ...] = REGRESSORS) -> _Chosen:
    """Out-of-fold quality of the candidates named on (filled) features ``x`` (n, f); picks the best of
    each kind. ``probas`` / ``preds`` of the result: the chosen ones' out-of-fold outputs (n,)."""
    from sklearn.metrics import r2_score

    clf, proba, auc = classifier_oof(x, y, cv, random_state, classifier_names)
    folds, regs = _folds(y, cv, random_state), regressors(random_state)
    preds = {n: _oof(regs[n], x, values, folds, y, False) for n in regressor_names}
    r2 = {n: float(r2_score(values, p)) for n, p in preds.items()}
    reg = max(regressor_names, key=lambda n: r2[n])
    return _Chosen(clf, reg, quality(y, proba, values, preds[reg]), {"auc": auc, "r2": r2}, proba, preds[reg])


def classifier_oof(x: np.ndarray, y: np.ndarray, cv: int = 5, random_state: int = 0,
                   names: tuple[str, ...] = CLASSIFIERS) -> tuple[str, np.ndarray, dict[str, float]]:
    """(the candidate with the highest out-of-fold ROC AUC, its out-of-fold P(optimal) (n,), each
    candidate's AUC) among the classifiers ``names`` on (filled) features ``x`` (n, f), labels ``y`` (n,)."""
    from sklearn.metrics import roc_auc_score

    folds, clfs = _folds(y, cv, random_state), classifiers(random_state)
    probas = {n: _oof(clfs[n], x, y, folds, y, True) for n in names}
    auc = {n: float(roc_auc_score(y, p)) for n, p in probas.items()}
    best = max(names, key=lambda n: auc[n])  # ties: the earlier (simpler) candidate
    return best, probas[best], auc
