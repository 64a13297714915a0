"""Score a run while it trains: P(optimal) and the predicted final metric at each logged step.

The callbacks hand every :class:`~weightwatch.stats.Snapshot` the
:class:`~weightwatch.recorder.Recorder` computes to a :class:`LiveScorer`,
which keeps the run's history in the same form the loader reads back from the
event file (scalars rounded to float32, as TensorBoard stores them), with the
metrics logged through the recorder and the run's hyperparameters, computes
the features of :mod:`.features` and asks the reference's model for that
step. The score is logged as two scalars:

- ``weightwatch/p_optimal``: probability that the run ends in the optimal group;
- ``weightwatch/predicted_accuracy``: the predicted final value of the
  reference's metric (named after accuracy, its usual meaning).

:class:`StopRule` turns the scores into a decision to stop a run early; the
pruners (Optuna, Ray Tune) and the callbacks' stop option share it.

>>> rule = StopRule(threshold=0.2, min_step=2, patience=2)
>>> rule.should_stop([(1, 0.0), (2, 0.1)]), rule.should_stop([(1, 0.0), (2, 0.1), (3, 0.05)])
(False, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from weightwatch.layers import LayerInfo
from weightwatch.recorder import clean_metrics
from weightwatch.stats import Snapshot
from weightwatch.summaries import hparam_value
from weightwatch.tags import histogram_tags, scalar_tags

from ..loading.run import HistogramSeries, Run, Series
from .reference import Reference, load_reference

P_OPTIMAL = "weightwatch/p_optimal"
PREDICTED = "weightwatch/predicted_accuracy"


@dataclass(frozen=True)
class Score:
    """The verdict at one step: ``model_step`` is the step of the reference's model that gave it."""

    step: int
    p_optimal: float
    predicted: float
    model_step: int

    def as_metrics(self) -> dict[str, float]:
        """The two scalars the callbacks log (also what to report to Ray Tune)."""
        return {P_OPTIMAL: self.p_optimal, PREDICTED: self.predicted}


@dataclass(frozen=True)
class StopRule:
    """Stop a run when P(optimal) stays below ``threshold`` for ``patience`` scored steps in a
    row, counting only steps >= ``min_step`` (the first epochs are the least certain)."""

    threshold: float = 0.1
    min_step: int = 1
    patience: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold is a probability, got {self.threshold}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")

    def should_stop(self, history: Sequence[tuple[int, float]]) -> bool:
        """``history``: (step, P(optimal)) in the order they were scored."""
        run = 0
        for step, p in reversed(list(history)):
            if step < self.min_step or not p < self.threshold:
                break
            run += 1
        return run >= self.patience


def stop_rule(stop: StopRule | float | bool | None) -> StopRule | None:
    """The callbacks' ``stop=`` argument: a rule, a threshold, True (the default rule) or None/False."""
    if stop is None or stop is False:
        return None
    if stop is True:
        return StopRule()
    if isinstance(stop, StopRule):
        return stop
    return StopRule(threshold=float(stop))


class LoggedRun:
    """A run's history as the loader would read it back from the event file, built from the
    Recorder's snapshots (scalars rounded to float32, histograms as written)."""

    def __init__(self, layers: Sequence[LayerInfo], bins: int = 64, name: str = "live",
                 hparams: Mapping[str, Any] | None = None) -> None:
        self.bins = bins
        info: dict[str, Any] = {"layers": [layer.to_json() for layer in layers]}
        if hparams:
            info["hparams"] = {k: hparam_value(v) for k, v in hparams.items()}  # as weightwatch.json holds them
        self.run = Run(name=name, path=Path(name), info=info)

    def add_metrics(self, step: int, metrics: Mapping[str, Any] | None) -> None:
        """Add the user's scalar metrics logged at ``step`` (loss, val_accuracy, ...), as the event file holds them."""
        at = np.array([step], dtype=np.int64)
        for tag, value in clean_metrics(metrics or {}).items():
            v = np.array([np.float32(value)], dtype=np.float64)
            old = self.run.scalars.get(tag)
            self.run.scalars[tag] = Series(at, v) if old is None else _appended(old, at, v)

    def append(self, snapshot: Snapshot) -> None:
        """Add one snapshot (a step logged again replaces it and what followed: a resumed run)."""
        step = np.array([snapshot.step], dtype=np.int64)
        scalars = self.run.scalars
        for tag, value in scalar_tags(snapshot).items():
            v = np.array([np.float32(value)], dtype=np.float64)  # what the event file holds
            old = scalars.get(tag)
            scalars[tag] = Series(step, v) if old is None else _appended(old, step, v)
        hists = self.run.histograms
        for tag, edges, counts, _, _ in histogram_tags(snapshot, self.bins):
            e = np.asarray(edges, dtype=np.float64)[None, :]
            c = np.asarray(counts, dtype=np.float64)[None, :]
            old = hists.get(tag)
            if old is None or old.edges.shape[1] != e.shape[1]:
                hists[tag] = HistogramSeries(step, e, c)
            else:
                hists[tag] = _appended_hist(old, snapshot.step, e, c)


class LiveScorer:
    """Scores one run, snapshot by snapshot.

    Args:
        reference: a :class:`~weightwatch.analysis.classification.reference.Reference` or the path of a ``.ww`` file.
        layers: the run's watched layers (the Recorder's).
        bins: histogram bins, as the Recorder uses them.
        stop: a :class:`StopRule` (or see :func:`stop_rule`) behind :attr:`should_stop`.
    """

    def __init__(self, reference: Reference | str | Path, layers: Sequence[LayerInfo], bins: int = 64,
                 stop: StopRule | float | bool | None = None, name: str = "live",
                 hparams: Mapping[str, Any] | None = None) -> None:
        self.reference = load_reference(reference)
        self.rule = stop_rule(stop)
        self.logged = LoggedRun(layers, bins, name, hparams)
        self.history: list[Score] = []

    @classmethod
    def for_recorder(cls, reference: Reference | str | Path, recorder: Any,
                     stop: StopRule | float | bool | None = None) -> LiveScorer:
        """A scorer for ``recorder``'s run (its layers, bins, name and hyperparameters). The caller
        hands it the metrics it logs (:meth:`add_metrics`) before the snapshot they go with."""
        return cls(reference, recorder.layers, recorder.bins, stop, name=str(recorder.log_dir),
                   hparams=getattr(recorder, "hparams", None))

    def add_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        """The metrics logged at ``step`` (the learning curves the reference may use); its own tags left out."""
        self.logged.add_metrics(int(step), {k: v for k, v in metrics.items() if k not in (P_OPTIMAL, PREDICTED)})

    @property
    def score(self) -> Score | None:
        """The latest score, or None before the first snapshot."""
        return self.history[-1] if self.history else None

    @property
    def should_stop(self) -> bool:
        """Whether the stop rule says to stop now (False without a rule)."""
        return self.rule is not None and self.rule.should_stop([(s.step, s.p_optimal) for s in self.history])

    def update(self, snapshot: Snapshot) -> Score:
        """Add ``snapshot`` to the history and score the run at its step."""
        self.logged.append(snapshot)
        table = self.reference.table(self.logged.run)
        step, row = table.at(snapshot.step)
        p, predicted = self.reference.predict(row[None, :], step)
        score = Score(step=int(snapshot.step), p_optimal=float(p[0]), predicted=float(predicted[0]),
                      model_step=self.reference.model_for(step).step)
        self.history.append(score)
        return score

    def log(self, recorder: Any, snapshot: Snapshot | None) -> Score | None:
        """Score ``snapshot`` (None: nothing new, nothing logged) and write the two scalars at its step."""
        if snapshot is None:
            return None
        score = self.update(snapshot)
        recorder.log(snapshot.step, None, score.as_metrics())
        return score


def _appended(old: Series, step: np.ndarray, value: np.ndarray) -> Series:
    """``old`` plus one point; a step logged again replaces the later ones (a resumed run)."""
    keep = old.steps < step[0]
    return Series(np.concatenate([old.steps[keep], step]), np.concatenate([old.values[keep], value]))


def _appended_hist(old: HistogramSeries, at: int, e: np.ndarray, c: np.ndarray) -> HistogramSeries:
    keep = old.steps < at
    return HistogramSeries(np.concatenate([old.steps[keep], [at]]), np.vstack([old.edges[keep], e]),
                           np.vstack([old.counts[keep], c]))
