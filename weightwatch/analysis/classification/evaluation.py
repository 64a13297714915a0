"""At one step: cross-validate every feature family (:mod:`.families`), measure the baselines,
and choose what the reference uses there.

The baselines are what a user has without weightwatch, taken as they are
(no model): the metric so far and the best of the three curve extrapolations
(:mod:`.curves`) as scores of "ends optimal" (ROC AUC) and as predictions of
the final metric (Kendall tau, R^2), and the hyperparameters-only family.
The ``metric`` family's model is monotone in the metric so far, so it ranks
runs exactly as the raw metric does: its AUC is the raw one. The
reference's P(optimal) comes, per step, from the family with the highest
out-of-fold AUC, but another family replaces the metric so far only when it
validates at least :data:`MARGIN` better *and* by more than one standard error
of that gain (a paired, stratified bootstrap over the runs of the out-of-fold
AUC difference: the one-standard-error rule of Breiman et al. 1984). Choosing
the best of ten on a few dozen runs is optimistic, and the simpler model then
generalises better; ties go to the earlier family of
:data:`~.families.FAMILIES`. Its predicted metric
comes from the family with the highest out-of-fold R^2. The weights "add nothing" at a step when a family
that never looks at them validates at least as well as the best that does.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .candidates import CLASSIFIERS, REGRESSORS, cross_validate, filled, usable
from .curves import EXTRAPOLATORS, METRIC_SO_FAR
from .families import FAMILIES, LINEAR_ONLY, WEIGHT_FAMILIES, family_masks


#: How much better (AUC) a family must validate than the metric so far to be used instead of it.
MARGIN = 0.02
#: Bootstrap resamples for the standard error of a family's AUC gain over the metric so far.
GAIN_RESAMPLES = 400


def auc_gain(y: np.ndarray, score: np.ndarray, base: np.ndarray, random_state: int = 0,
             resamples: int = GAIN_RESAMPLES) -> tuple[float, float]:
    """(gain, standard error) of ROC AUC of ``score`` over ``base``, both (n,) scores of ``y`` (n,) bool.

    The standard error is that of the paired difference over bootstrap resamples of the runs,
    drawn within each class so both are always present.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, dtype=bool)
    gain = float(roc_auc_score(y, score) - roc_auc_score(y, base))
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    rng = np.random.default_rng(random_state)
    diffs = np.empty(resamples)
    for b in range(resamples):
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        diffs[b] = roc_auc_score(y[idx], score[idx]) - roc_auc_score(y[idx], base[idx])
    return gain, float(diffs.std(ddof=1))


def candidates_for(family: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(classifiers, regressors) cross-validated for ``family``."""
    if family in LINEAR_ONLY:
        return ("logistic",), ("ridge",)
    if family in ("weights", "combined"):
        return CLASSIFIERS, REGRESSORS
    return ("logistic", "forest"), ("ridge", "forest")


def raw_quality(y: np.ndarray, score: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """A raw score used as it is: ROC AUC for ``y``, Kendall tau and R^2 as a prediction of ``values``."""
    from scipy.stats import kendalltau
    from sklearn.metrics import r2_score, roc_auc_score

    score = np.where(np.isfinite(score), score, np.nanmedian(score) if np.isfinite(score).any() else 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tau = kendalltau(score, values).statistic if np.ptp(score) > 0 else float("nan")
    return {"auc": float(roc_auc_score(y, score)), "kendall_tau": float(tau), "r2": float(r2_score(values, score))}


@dataclass
class StepChoice:
    """What :func:`evaluate_step` found.

    Attributes:
        families: family -> its out-of-fold quality (auc, balanced_accuracy, kendall_tau, r2),
            the models chosen and the number of columns; ``{"available": False}`` without columns.
        baselines: ``metric_so_far`` and ``extrapolation`` (the best curve, named in ``curve``),
            raw quality (see :func:`raw_quality`).
        classifier_family / regressor_family: the families the reference uses at this step.
        weights_add_nothing: a family without the weights validates at least as well as any with them.
        masks: family -> (F,) bool columns usable at this step.
    """

    families: dict[str, dict[str, Any]]
    baselines: dict[str, dict[str, Any]]
    classifier_family: str
    regressor_family: str
    weights_add_nothing: bool
    masks: dict[str, np.ndarray]

    def to_json(self) -> dict[str, Any]:
        return {"families": self.families, "baselines": self.baselines, "classifier_family": self.classifier_family,
                "regressor_family": self.regressor_family, "weights_add_nothing": self.weights_add_nothing}


def evaluate_step(x: np.ndarray, names: Sequence[str], y: np.ndarray, values: np.ndarray, cv: int = 5,
                  random_state: int = 0, families: Sequence[str] = FAMILIES) -> StepChoice:
    """Cross-validate each of ``families`` on the runs' features ``x`` (n, F) (columns ``names``)."""
    y = np.asarray(y, dtype=bool)
    used, fill = usable(x)
    xf = filled(x, fill)
    masks = {f: m & used for f, m in family_masks(names).items() if f in families}
    table: dict[str, dict[str, Any]] = {}
    oof: dict[str, np.ndarray] = {}
    for family, mask in masks.items():
        if not mask.any():
            table[family] = {"available": False}
            continue
        clfs, regs = candidates_for(family)
        chosen = cross_validate(xf[:, mask], y, values, cv, random_state, clfs, regs)
        oof[family] = chosen.proba
        table[family] = {"available": True, **chosen.quality, "classifier": chosen.classifier,
                         "regressor": chosen.regressor, "features": int(mask.sum())}
    col = list(names)
    baselines: dict[str, dict[str, Any]] = {}
    if METRIC_SO_FAR in col and np.isfinite(x[:, col.index(METRIC_SO_FAR)]).any():
        baselines["metric_so_far"] = raw_quality(y, x[:, col.index(METRIC_SO_FAR)], values)
    extrap = {e: raw_quality(y, x[:, col.index(f"curve/extrap_{e}")], values) for e in EXTRAPOLATORS
              if f"curve/extrap_{e}" in col and np.isfinite(x[:, col.index(f"curve/extrap_{e}")]).any()}
    if extrap:
        best = max(extrap, key=lambda e: extrap[e]["auc"])
        baselines["extrapolation"] = {**extrap[best], "curve": best,
                                      "all": {e: q["auc"] for e, q in extrap.items()}}
    if "metric_so_far" in baselines and table.get("metric", {}).get("available"):
        # a monotone model of one column ranks as the column does: its AUC is the raw one
        table["metric"]["auc_model"] = table["metric"]["auc"]
        raw = baselines["metric_so_far"]["auc"]
        table["metric"]["auc"] = max(raw, 1.0 - raw)  # a metric that falls for the good runs gets a negative slope
    ok = [f for f in masks if table[f]["available"]]
    if not ok:
        raise ValueError("no feature varies among the runs at this step")
    clf_family = max(ok, key=lambda f: table[f]["auc"])  # max keeps the first of equals: the simpler family
    if "metric" in ok and clf_family != "metric":
        if "metric_so_far" in baselines:
            raw = x[:, col.index(METRIC_SO_FAR)]
            base = np.where(np.isfinite(raw), raw, np.nanmedian(raw))
            if baselines["metric_so_far"]["auc"] < 0.5:
                base = -base  # the metric falls for the good runs: ranked as the metric family ranks it
            gain, se = auc_gain(y, oof[clf_family], base, random_state)
        else:
            gain, se = table[clf_family]["auc"] - table["metric"]["auc"], 0.0
        table[clf_family].update(gain_over_metric=gain, gain_se=se)
        if gain < MARGIN or gain <= se:
            clf_family = "metric"
    reg_family = max(ok, key=lambda f: table[f]["r2"])
    with_w = [table[f]["auc"] for f in ok if f in WEIGHT_FAMILIES]
    without = [table[f]["auc"] for f in ok if f not in WEIGHT_FAMILIES]
    nothing = bool(without) and (not with_w or max(without) >= max(with_w))
    return StepChoice(table, baselines, clf_family, reg_family, nothing, masks)


def precision_recall(y: np.ndarray, flagged: np.ndarray) -> tuple[float, float]:
    """(precision, recall) of ``flagged`` (n,) bool for the true cases ``y`` (n,) bool (NaN: undefined)."""
    tp = float(np.sum(flagged & y))
    precision = tp / flagged.sum() if flagged.any() else float("nan")
    recall = tp / y.sum() if y.any() else float("nan")
    return precision, recall
