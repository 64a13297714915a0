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

A verdict can be *uncertain* (``Score.uncertain``, ``p_optimal`` None, nothing
logged for it, never a reason to stop):

- the reference's chosen model of that step reads a feature every training run
  had and this run lacks (a curve it does not log, a hyperparameter it does not
  record), and the step's weights-only fallback, when the reference holds one,
  lacks something too (with the fallback the verdict is the fallback's: not
  uncertain, ``Score.family`` names it; see :meth:`.Reference.judge`);
- the run counts its steps in another unit than the reference's runs
  (:attr:`.Reference.step_unit`) and the log does not say how to map them: a run
  in optimizer steps is mapped to a reference in epochs through the epoch the
  callback passes (the verdict at the end of epoch e is judged as the
  reference's step e; logs between epoch ends are not judged), a run in epochs
  is never mapped to a reference in optimizer steps.

``Score.reason`` says why, and the callbacks warn once, naming what to do.

>>> rule = StopRule(threshold=0.2, min_step=2, patience=2)
>>> rule.should_stop([(1, 0.0), (2, 0.1)]), rule.should_stop([(1, 0.0), (2, 0.1), (3, 0.05)])
(False, True)
>>> rule.should_stop([(1, 0.0), (2, 0.1), (3, None)])  # an uncertain verdict never stops a run
False
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import math

import numpy as np

from weightwatch.layers import LayerInfo
from weightwatch.recorder import clean_metrics
from weightwatch.stats import Snapshot
from weightwatch.summaries import hparam_value
from weightwatch.tags import histogram_tags, scalar_tags

from ..loading.run import HistogramSeries, Run, Series
from .population import STEP_UNITS
from .reference import Reference, load_reference, missing_note

P_OPTIMAL = "weightwatch/p_optimal"
PREDICTED = "weightwatch/predicted_accuracy"


@dataclass(frozen=True)
class Score:
    """The verdict at one step (the run's own step): ``model_step`` is the step of the reference's
    model that gave it.

    ``p_optimal`` / ``predicted`` are None when the verdict is ``uncertain`` (``reason`` says
    why, ``missing`` names the features the run lacks); ``family`` is the feature family of
    the model that judged (the chosen one of that step, or its weights-only fallback).
    """

    step: int
    p_optimal: float | None
    predicted: float | None
    model_step: int
    uncertain: bool = False
    reason: str | None = None
    missing: tuple[str, ...] = ()
    family: str | None = None

    def as_metrics(self) -> dict[str, float]:
        """The scalars the callbacks log (also what to report to Ray Tune): none for what is uncertain."""
        out = {P_OPTIMAL: self.p_optimal, PREDICTED: self.predicted}
        return {k: v for k, v in out.items() if v is not None}


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

    def should_stop(self, history: Sequence[tuple[int, float | None]]) -> bool:
        """``history``: (step, P(optimal)) in the order they were scored; a P(optimal) of None or NaN
        (an uncertain verdict) is no evidence: it ends the run of low ones."""
        run = 0
        for step, p in reversed(list(history)):
            if step < self.min_step or p is None or not p < self.threshold:
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

    def append(self, snapshot: Snapshot, step: int | None = None) -> None:
        """Add one snapshot, at its own step or ``step`` (a step logged again replaces it and what
        followed: a resumed run)."""
        at = snapshot.step if step is None else int(step)
        step_ = np.array([at], dtype=np.int64)
        scalars = self.run.scalars
        for tag, value in scalar_tags(snapshot).items():
            v = np.array([np.float32(value)], dtype=np.float64)  # what the event file holds
            old = scalars.get(tag)
            scalars[tag] = Series(step_, v) if old is None else _appended(old, step_, v)
        hists = self.run.histograms
        for tag, edges, counts, _, _ in histogram_tags(snapshot, self.bins):
            e = np.asarray(edges, dtype=np.float64)[None, :]
            c = np.asarray(counts, dtype=np.float64)[None, :]
            old = hists.get(tag)
            if old is None or old.edges.shape[1] != e.shape[1]:
                hists[tag] = HistogramSeries(step_, e, c)
            else:
                hists[tag] = _appended_hist(old, at, e, c)


class LiveScorer:
    """Scores one run, snapshot by snapshot.

    Args:
        reference: a :class:`~weightwatch.analysis.classification.reference.Reference` or the path of a ``.ww`` file.
        layers: the run's watched layers (the Recorder's).
        bins: histogram bins, as the Recorder uses them.
        stop: a :class:`StopRule` (or see :func:`stop_rule`) behind :attr:`should_stop`.
        step_unit: how this run counts its steps, ``"epoch"`` or ``"step"`` (optimizer steps), as
            the callback knows it; None (a plain loop's own steps): taken to be the reference's.
    """

    def __init__(self, reference: Reference | str | Path, layers: Sequence[LayerInfo], bins: int = 64,
                 stop: StopRule | float | bool | None = None, name: str = "live",
                 hparams: Mapping[str, Any] | None = None, step_unit: str | None = None) -> None:
        if step_unit is not None and step_unit not in STEP_UNITS:
            raise ValueError(f"step_unit must be one of {', '.join(STEP_UNITS)} or None, got {step_unit!r}")
        self.reference = load_reference(reference)
        self.rule = stop_rule(stop)
        self.step_unit = step_unit
        self.logged = LoggedRun(layers, bins, name, hparams)
        self.history: list[Score] = []
        #: why the latest snapshot got no verdict at all (logged between two epoch ends), else None
        self.unjudged: str | None = None

    @classmethod
    def for_recorder(cls, reference: Reference | str | Path, recorder: Any,
                     stop: StopRule | float | bool | None = None, step_unit: str | None = None) -> LiveScorer:
        """A scorer for ``recorder``'s run (its layers, bins, name and hyperparameters). The caller
        hands it the metrics it logs (:meth:`add_metrics`) before the snapshot they go with."""
        return cls(reference, recorder.layers, recorder.bins, stop, name=str(recorder.log_dir),
                   hparams=getattr(recorder, "hparams", None), step_unit=step_unit)

    def reference_step(self, step: int, epoch: float | None = None, metrics: bool = False) -> int | None:
        """This run's ``step`` in the reference's unit, or None when it cannot be mapped.

        The same step when both count alike (or either does not say). A run counting optimizer
        steps, judged by a reference counting epochs, is mapped through ``epoch`` (the epochs
        completed at that log, fractional, as Hugging Face's ``state.epoch``): the weights
        logged at the end of epoch e (0-based) to step e, other weights to None; ``metrics``
        go to the epoch in progress (the last logged in it wins, as one point per epoch).
        A run counting epochs is never mapped to optimizer steps.
        """
        ref, own = self.reference.step_unit, self.step_unit
        if ref is None or own is None or ref == own:
            return int(step)
        if ref == "step" or epoch is None or not math.isfinite(float(epoch)):
            return None  # epochs to optimizer steps, or no epoch given
        epoch = float(epoch)
        if metrics:
            return max(math.ceil(epoch - 1e-6) - 1, 0)
        done = round(epoch)
        return done - 1 if done >= 1 and abs(epoch - done) <= 1e-6 else None

    def add_metrics(self, step: int, metrics: Mapping[str, Any], epoch: float | None = None) -> None:
        """The metrics logged at ``step`` (the learning curves the reference may use); its own tags
        left out. ``epoch``: see :meth:`reference_step` (metrics that cannot be mapped are left out)."""
        at = self.reference_step(int(step), epoch, metrics=True)
        if at is not None:
            self.logged.add_metrics(at, {k: v for k, v in metrics.items() if k not in (P_OPTIMAL, PREDICTED)})

    @property
    def score(self) -> Score | None:
        """The latest score, or None before the first snapshot."""
        return self.history[-1] if self.history else None

    @property
    def should_stop(self) -> bool:
        """Whether the stop rule says to stop now (False without a rule; never on an uncertain verdict)."""
        return self.rule is not None and self.rule.should_stop([(s.step, s.p_optimal) for s in self.history])

    def update(self, snapshot: Snapshot, epoch: float | None = None) -> Score | None:
        """Add ``snapshot`` to the history and score the run at its step (``epoch``: see
        :meth:`reference_step`); None when the snapshot falls between two epoch ends (or at an
        unknown epoch) of a run judged by a reference counting epochs (:attr:`unjudged` says so)."""
        self.unjudged = None
        at = self.reference_step(snapshot.step, epoch)
        if at is None and self.reference.step_unit == "epoch":
            where = "at an unknown epoch" if epoch is None else f"at epoch {float(epoch):.3g}"
            self.unjudged = (f"the reference judges runs at the end of each epoch (its runs count epochs); the weights "
                             f"logged between two epoch ends (step {snapshot.step}, {where}) are recorded but not judged")
            return None
        if at is None:
            score = Score(step=int(snapshot.step), p_optimal=None, predicted=None,
                          model_step=self.reference.steps[0].step, uncertain=True,
                          reason="this run counts its steps in epochs, the reference's runs in optimizer steps, and "
                                 "one cannot be mapped to the other (fit the reference on runs logged like this one, "
                                 "or log this run at its optimizer steps)")
            self.history.append(score)
            return score
        self.logged.append(snapshot, at)
        table = self.reference.table(self.logged.run)
        step, row = table.at(at)
        judged = self.reference.judge(row, step)
        score = Score(step=int(snapshot.step), p_optimal=judged.p_optimal, predicted=judged.predicted,
                      model_step=judged.models.step, uncertain=judged.uncertain,
                      reason=missing_note(self.reference, judged) if judged.missing else None,
                      missing=tuple(judged.missing), family=judged.family)
        self.history.append(score)
        return score

    def log(self, recorder: Any, snapshot: Snapshot | None, epoch: float | None = None) -> Score | None:
        """Score ``snapshot`` (None: nothing new, nothing logged) and write its scalars at its step
        (none for what is uncertain)."""
        if snapshot is None:
            return None
        score = self.update(snapshot, epoch)
        if score is not None and score.as_metrics():
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
