"""What the training-loop callbacks (Keras, Lightning, Hugging Face) share.

Imports no framework: each callback finds its layers in its own way, then
drives one :class:`Run` with the epoch (or step) and the metrics its framework
reports.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from weightwatch.flow import Flow
from weightwatch.layers import LayerInfo, LayerTensors
from weightwatch.recorder import Recorder

Schedule = Callable[[int], bool]


class Source(Protocol):
    """Where one watched layer's current values are read from."""

    def tensors(self) -> LayerTensors: ...


def as_schedule(schedule: Schedule | int | None) -> Schedule:
    """``schedule(epoch) -> bool`` from a callable, an int N (epochs 0, N, 2N, ...) or None (every epoch).

    >>> [e for e in range(7) if as_schedule(3)(e)]
    [0, 3, 6]
    """
    if schedule is None:
        return lambda epoch: True
    if isinstance(schedule, bool) or not (isinstance(schedule, int) or callable(schedule)):
        raise TypeError(f"schedule must be a callable epoch -> bool, an int or None, got {schedule!r}")
    if callable(schedule):
        return schedule
    n = check_every(schedule, "schedule")
    return lambda epoch: epoch % n == 0


def check_every(n: int | None, name: str) -> int | None:
    """``n`` itself when it is None or a positive int; otherwise a ValueError naming the option."""
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {n!r}")
    return n


def is_scalar(value: Any) -> bool:
    """Whether ``value`` is one real number: a Python or numpy number, or a 0-d array / tensor.

    >>> [is_scalar(v) for v in (1, 2.5, True, "a", [1.0])]
    [True, True, False, False, False]
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Real):
        return True
    return getattr(value, "ndim", None) == 0 and hasattr(value, "__float__") and "complex" not in str(
        getattr(value, "dtype", ""))


def scalar_metrics(values: Mapping[str, Any] | None, drop: Collection[str] = ()) -> dict[str, float]:
    """The entries of ``values`` that are single real numbers, as floats.

    Frameworks mix numbers with strings and arrays in their logs (run names,
    per-class vectors); those, and the keys in ``drop``, are left out.

    >>> scalar_metrics({"loss": 0.5, "name": "run1", "step": 3}, drop={"step"})
    {'loss': 0.5}
    """
    return {str(k): float(v) for k, v in (values or {}).items() if k not in drop and is_scalar(v)}


class Run:
    """One weightwatch run driven by a callback: the layers found once, and a :class:`Recorder`.

    Args:
        log_dir: the run directory.
        found: ``(LayerInfo, source)`` per watched layer; ``source.tensors()``
            returns the layer's current kernel in the core's layout.
        framework: recorded in ``weightwatch.json``.
        flow: the model's data flow (see :mod:`weightwatch.flow`), None for registration order.
        context: every layer found before include / exclude, for the consumers
            and norms the flow reads that are not watched.
        fold_norm_scale: fold the norms' scale into the outgoing weights.
    """

    def __init__(self, log_dir: str | Path, found: Sequence[tuple[LayerInfo, Source]], *,
                 hparams: Mapping[str, Any] | None, bins: int, framework: str, reference: Any = None,
                 stop: Any = None, flow: Flow | None = None, context: Sequence[tuple[LayerInfo, Source]] = (),
                 fold_norm_scale: bool = False) -> None:
        self.layers = [info for info, _ in found]
        self._sources = [source for _, source in found]
        watched = {info.name for info in self.layers}
        self._context = {info.name: (info, source) for info, source in context if info.name not in watched}
        self.recorder = Recorder(log_dir, self.layers, hparams=hparams, bins=bins, framework=framework, flow=flow,
                                 context=[info for info, _ in self._context.values()],
                                 fold_norm_scale=fold_norm_scale)
        self.log_dir = self.recorder.log_dir
        self.scorer = None
        if reference is not None:  # the live verdict, see weightwatch.analysis.live
            from weightwatch.analysis.live import LiveScorer

            self.scorer = LiveScorer.for_recorder(reference, self.recorder, stop)
        #: the step of the latest weight record, so one step is never recorded twice
        self.weights_step: int | None = None

    def tensors(self) -> list[LayerTensors]:
        return [source.tensors() for source in self._sources]

    def log(self, step: int, metrics: Mapping[str, float] | None = None, weights: bool = True) -> None:
        """Write ``metrics`` at ``step``, and the weights unless they were already recorded at this step."""
        weights = weights and self.weights_step != step
        if not weights and not metrics:
            return
        context = None
        if weights:  # only the unwatched layers the flow reads
            needed = self.recorder.flow.needed()
            context = {name: source.tensors() for name, (_, source) in self._context.items() if name in needed}
        snapshot = self.recorder.log(step, self.tensors() if weights else None, metrics, context=context)
        if weights:
            self.weights_step = step
        if self.scorer is not None:
            self.scorer.log(self.recorder, snapshot)

    @property
    def should_stop(self) -> bool:
        """Whether the reference's stop rule says to stop training now."""
        return self.scorer is not None and self.scorer.should_stop

    def close(self, success: bool = True) -> None:
        self.recorder.close(success)


class WatchingCallback:
    """The options and the run every framework's callback keeps; mixed into each one's class.

    ``log_dir`` None lets the callback pick its framework's TensorBoard directory;
    ``hparams`` None lets it take the framework's own record of them.
    """

    run: Run | None = None

    def _store_options(self, log_dir: str | Path | None, hparams: Mapping[str, Any] | None,
                       schedule: Schedule | int | None, include: Sequence[str] | None,
                       exclude: Sequence[str] | None, roles: Mapping[str, str] | None, bins: int,
                       reference: Any = None, stop: Any = None) -> None:
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
        if reference is not None:  # read (and checked) once, not at every run
            from weightwatch.analysis.live import stop_rule
            from weightwatch.analysis.reference import load_reference

            reference, stop = load_reference(reference), stop_rule(stop)
        self.reference, self.stop = reference, stop
        self.log_dir = log_dir
        self.hparams = dict(hparams) if hparams is not None else None
        self.schedule = as_schedule(schedule)
        self.include, self.exclude, self.roles, self.bins = include, exclude, roles, bins
        self.run = None

    @property
    def layers(self) -> list[LayerInfo]:
        """The watched layers; empty until training began (and on processes that do not write)."""
        return self.run.layers if self.run is not None else []

    @property
    def should_stop(self) -> bool:
        """Whether the reference's stop rule says to stop training now (False without ``stop=``)."""
        return self.run is not None and self.run.should_stop

    def _needs_run(self) -> bool:
        """True when no run is open: none yet, or the last one was closed at the end of training."""
        return self.run is None or self.run.recorder.closed
