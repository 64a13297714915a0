"""Optuna: prune trials whose weights say they will not be among the good ones.

The objective trains with a reference (``WeightWatch(..., reference="ref.ww")``
or any callback given one) and hands each verdict to the trial with
:func:`report`; :class:`WeightWatchPruner` prunes the trial when
P(optimal) stays below a threshold (:class:`~weightwatch.analysis.StopRule`)
and otherwise asks the pruner it wraps, if any.

>>> import optuna                                                  # doctest: +SKIP
>>> from weightwatch.integrations.optuna import WeightWatchPruner, report
>>> study = optuna.create_study(direction="maximize",
...                             pruner=WeightWatchPruner(threshold=0.1, min_step=1))  # doctest: +SKIP
>>> def objective(trial):                                          # doctest: +SKIP
...     with WeightWatch(model, f"runs/{trial.number}", reference="ref.ww") as ww:
...         for epoch in range(epochs):
...             acc = train_one_epoch(model)
...             ww.log(epoch, val_accuracy=acc)
...             report(trial, ww)
...             if trial.should_prune():
...                 raise optuna.TrialPruned()
...     return acc
"""

from __future__ import annotations

from typing import Any

from weightwatch._optional import require
from weightwatch.analysis import Score, StopRule

optuna = require("optuna", "optuna", "weightwatch.integrations.optuna")

__all__ = ["USER_ATTR", "WeightWatchPruner", "report"]

#: The trial user attribute holding {step: P(optimal)} (JSON keys are strings).
USER_ATTR = "weightwatch_p_optimal"


def _score_of(source: Any) -> Score | None:
    if source is None or isinstance(source, Score):
        return source
    score = getattr(source, "score", None)  # WeightWatch, LiveScorer, the callbacks
    if score is None or isinstance(score, Score):
        return score
    raise TypeError(f"report() needs a Score or an object with a .score, got {type(source).__name__}")


def report(trial: Any, source: Any) -> Score | None:
    """Store the latest verdict of ``source`` (a WeightWatch / callback with a reference, or a
    Score) on ``trial``, for :class:`WeightWatchPruner`; returns it (None when there is none yet).
    An uncertain verdict is stored as None: the pruner never prunes on it."""
    score = _score_of(source)
    if score is None:
        return None
    history = dict(trial.user_attrs.get(USER_ATTR, {}))
    history[str(score.step)] = score.p_optimal
    trial.set_user_attr(USER_ATTR, history)
    return score


class WeightWatchPruner(optuna.pruners.BasePruner):
    """Prune a trial when its P(optimal), as stored by :func:`report`, follows ``rule``.

    Args:
        threshold / min_step / patience: the :class:`StopRule` (or pass ``rule``).
        base: another pruner consulted when this one does not prune (e.g. optuna's
            ``MedianPruner`` on the reported accuracy).
    """

    def __init__(self, threshold: float = 0.1, min_step: int = 1, patience: int = 1, *,
                 rule: StopRule | None = None, base: Any = None) -> None:
        self.rule = rule if rule is not None else StopRule(threshold, min_step, patience)
        self.base = base

    def prune(self, study: Any, trial: Any) -> bool:
        stored = trial.user_attrs.get(USER_ATTR, {})
        history = sorted((int(step), None if p is None else float(p)) for step, p in stored.items())
        if self.rule.should_stop(history):
            return True
        return bool(self.base.prune(study, trial)) if self.base is not None else False
