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

**Repeated cross-validation of the challenger** (``cv_repeats``, default
:data:`CV_REPEATS`). The family that beat the others on the first fold split
won a maximum over ten families and, inside it, over up to three classifiers,
all on the same folds: its first-split gain carries the luck of that split
(which runs fell together), and would be optimistic even if it were exact for
that split. So when the best family is not ``metric``, that challenger alone is
cross-validated again, from scratch, on ``cv_repeats`` further stratified fold
splits (``random_state + 1`` .. ``+ cv_repeats``), choosing its classifier afresh
inside each repeat, so that choice is part of what is estimated. The metric so
far needs no model (its AUC is the raw one), so each repeat gives one gain
AUC(challenger's out-of-fold P) - AUC(metric so far). The decision uses the
mean of these gains over the repeats only: the first split selected the
challenger, and an estimate from splits that took no part in the selection
carries no winner's curse from it. Its standard error is the same paired,
stratified bootstrap over the runs, each resample scoring every repeat on the
same runs (so it is the error of the mean gain, not of one split). The rule is
unchanged: the challenger replaces the metric so far only when that mean gain
is at least :data:`MARGIN` and above one standard error. What stays: the luck
of which 60 runs were drawn, which no resampling of the same runs removes.
``cv_repeats=0`` decides from the first split, as before.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .candidates import CLASSIFIERS, REGRESSORS, classifier_oof, cross_validate, filled, usable
from .curves import EXTRAPOLATORS, METRIC_SO_FAR
from .families import FAMILIES, LINEAR_ONLY, WEIGHT_FAMILIES, family_masks


#: How much better (AUC) a family must validate than the metric so far to be used instead of it.
MARGIN = 0.02
#: Bootstrap resamples for the standard error of a family's AUC gain over the metric so far.
GAIN_RESAMPLES = 400
#: Further fold splits on which a challenger of the metric so far is cross-validated again (see the module doc).
CV_REPEATS = 4


def auc_gain(y: np.ndarray, score: np.ndarray, base: np.ndarray, random_state: int = 0,
             resamples: int = GAIN_RESAMPLES) -> tuple[float, float]:
    """(gain, standard error) of ROC AUC of ``score`` over ``base`` (n,), scores of ``y`` (n,) bool.

    ``score`` is (n,) or (R, n), R scorings of the same runs (repeated cross-validation): the gain
    is then the mean over the R of AUC(score[r]) - AUC(base). The standard error is that of the
    paired difference over bootstrap resamples of the runs, drawn within each class so both are
    always present (every row of ``score`` on the same resample).
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, dtype=bool)
    scores = np.atleast_2d(score)

    def diff(idx: np.ndarray) -> float:
        return float(np.mean([roc_auc_score(y[idx], s[idx]) for s in scores]) - roc_auc_score(y[idx], base[idx]))

    gain = diff(np.arange(y.size))
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    rng = np.random.default_rng(random_state)
    diffs = np.array([diff(np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)]))
                      for _ in range(resamples)])
    return gain, float(diffs.std(ddof=1))


def repeated_oof(x: np.ndarray, y: np.ndarray, cv: int, random_state: int, repeats: int,
                 names: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """(the classifier chosen in each repeat, their out-of-fold P(optimal) (repeats, n)): the choice among
    ``names`` made afresh on (filled) ``x`` (n, f) for the folds of ``random_state + 1`` .. ``+ repeats``."""
    chosen = [classifier_oof(x, y, cv, random_state + r, names) for r in range(1, repeats + 1)]
    return [c[0] for c in chosen], np.array([c[1] for c in chosen]).reshape(repeats, len(y))


def metric_score(x: np.ndarray, names: Sequence[str], raw_auc: float) -> np.ndarray:
    """The metric so far (n,) as the ``metric`` family ranks it: NaN filled by the median, negated
    when it falls for the good runs (``raw_auc`` < 0.5)."""
    raw = x[:, list(names).index(METRIC_SO_FAR)]
    base = np.where(np.isfinite(raw), raw, np.nanmedian(raw))
    return -base if raw_auc < 0.5 else base


def challenge(xf: np.ndarray, y: np.ndarray, first: np.ndarray, base: np.ndarray, classifier_names: tuple[str, ...],
              cv: int, random_state: int, repeats: int) -> dict[str, Any]:
    """Is the challenger worth using instead of the metric so far? Its out-of-fold P (n,) of the first
    split ``first``, the metric so far ``base`` (n,), its (filled) columns ``xf`` (n, f); see the module doc.

    Returns the first split's gain and standard error, the gain per repeat and their mean with its
    standard error (with ``repeats`` > 0), the classifiers the repeats chose, and ``kept``.
    """
    from sklearn.metrics import roc_auc_score

    gain, se = auc_gain(y, first, base, random_state)
    out: dict[str, Any] = {"gain_over_metric": gain, "gain_se": se, "cv_repeats": repeats}
    if repeats > 0:  # the first split selected the challenger: decide from splits that did not
        chosen, probas = repeated_oof(xf, y, cv, random_state, repeats, classifier_names)
        gain, se = auc_gain(y, probas, base, random_state)
        base_auc = roc_auc_score(y, base)
        out.update(repeat_classifiers=chosen, gain_per_repeat=[float(roc_auc_score(y, p) - base_auc) for p in probas],
                   gain_over_metric_repeated=gain, gain_se_repeated=se)
    out["kept"] = bool(gain >= MARGIN and gain > se)
    return out


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
        challenger: where the best family by the first split was not ``metric``: its name and
            :func:`challenge`'s numbers (``kept``: it replaced the metric so far); None otherwise.
    """

    families: dict[str, dict[str, Any]]
    baselines: dict[str, dict[str, Any]]
    classifier_family: str
    regressor_family: str
    weights_add_nothing: bool
    masks: dict[str, np.ndarray]
    challenger: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"families": self.families, "baselines": self.baselines, "classifier_family": self.classifier_family,
                "regressor_family": self.regressor_family, "weights_add_nothing": self.weights_add_nothing,
                "challenger": self.challenger}


def evaluate_step(x: np.ndarray, names: Sequence[str], y: np.ndarray, values: np.ndarray, cv: int = 5,
                  random_state: int = 0, families: Sequence[str] = FAMILIES,
                  cv_repeats: int = CV_REPEATS) -> StepChoice:
    """Cross-validate each of ``families`` on the runs' features ``x`` (n, F) (columns ``names``);
    a challenger of the metric so far is cross-validated again on ``cv_repeats`` fold splits."""
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
    challenger = None
    if "metric" in ok and clf_family != "metric" and "metric_so_far" in baselines:
        base = metric_score(x, col, baselines["metric_so_far"]["auc"])
        challenger = {"family": clf_family, **challenge(xf[:, masks[clf_family]], y, oof[clf_family], base,
                                                        candidates_for(clf_family)[0], cv, random_state, cv_repeats)}
        table[clf_family].update(gain_over_metric=challenger["gain_over_metric"], gain_se=challenger["gain_se"])
        if not challenger["kept"]:
            clf_family = "metric"
    reg_family = max(ok, key=lambda f: table[f]["r2"])
    with_w = [table[f]["auc"] for f in ok if f in WEIGHT_FAMILIES]
    without = [table[f]["auc"] for f in ok if f not in WEIGHT_FAMILIES]
    nothing = bool(without) and (not with_w or max(without) >= max(with_w))
    return StepChoice(table, baselines, clf_family, reg_family, nothing, masks, challenger)


def precision_recall(y: np.ndarray, flagged: np.ndarray) -> tuple[float, float]:
    """(precision, recall) of ``flagged`` (n,) bool for the true cases ``y`` (n,) bool (NaN: undefined)."""
    tp = float(np.sum(flagged & y))
    precision = tp / flagged.sum() if flagged.any() else float("nan")
    recall = tp / y.sum() if y.any() else float("nan")
    return precision, recall
