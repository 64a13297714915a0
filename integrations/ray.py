"""Ray Tune: stop trials whose weights say they will not be among the good ones.

The trainable trains with a reference and reports the verdict with its
metrics (``ww.score.as_metrics()`` gives ``weightwatch/p_optimal`` and
``weightwatch/predicted_accuracy``); :class:`WeightWatchStopper` stops a trial
when P(optimal) stays below a threshold (the same
:class:`~weightwatch.analysis.StopRule` as the other integrations).

>>> from ray import tune                                            # doctest: +SKIP
>>> from weightwatch.integrations.ray import WeightWatchStopper
>>> def trainable(config):                                          # doctest: +SKIP
...     with WeightWatch(model, log_dir, reference="ref.ww") as ww:
...         for epoch in range(epochs):
...             acc = train_one_epoch(model)
...             ww.log(epoch, val_accuracy=acc)
...             tune.report({"val_accuracy": acc, "epoch": epoch, **ww.score.as_metrics()})
>>> tuner = tune.Tuner(trainable, run_config=tune.RunConfig(
...     stop=WeightWatchStopper(threshold=0.1, min_step=1, step="epoch")))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from weightwatch._optional import require
from weightwatch.analysis import P_OPTIMAL, StopRule

tune = require("ray.tune", "ray", "weightwatch.integrations.ray")

__all__ = ["WeightWatchStopper"]


class WeightWatchStopper(tune.Stopper):
    """Stop a trial when the reported P(optimal) follows ``rule``.

    Args:
        threshold / min_step / patience: the :class:`StopRule` (or pass ``rule``).
        metric: the result key holding P(optimal).
        step: the result key holding the step the rule's ``min_step`` counts in
            (``training_iteration``, Ray's own count from 1, by default).
    """

    def __init__(self, threshold: float = 0.1, min_step: int = 1, patience: int = 1, *,
                 rule: StopRule | None = None, metric: str = P_OPTIMAL, step: str = "training_iteration") -> None:
        self.rule = rule if rule is not None else StopRule(threshold, min_step, patience)
        self.metric = metric
        self.step = step
        self.history: dict[str, list[tuple[int, float]]] = {}

    def __call__(self, trial_id: str, result: Mapping[str, Any]) -> bool:
        p = result.get(self.metric)
        if p is None:
            return False
        history = self.history.setdefault(trial_id, [])
        history.append((int(result.get(self.step, len(history) + 1)), float(p)))
        return self.rule.should_stop(history)

    def stop_all(self) -> bool:
        return False
