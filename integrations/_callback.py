"""What the integrations (PyTorch loop, Keras, Lightning, Hugging Face) share.

Imports no framework: each callback finds its layers in its own way, then
drives one :class:`WatchSession` with the epoch (or step) and the metrics its
framework reports. The options they take are :mod:`.options`.
"""

from __future__ import annotations

import numbers
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from weightwatch.layers import LayerInfo, LayerTensors
from weightwatch.recorder import Recorder

from .options import WatchOptions

__all__ = ["Source", "WatchSession", "WatchingCallback", "is_scalar", "scalar_metrics"]


class Source(Protocol):
    """Where one watched layer's current values are read from."""

    def tensors(self) -> LayerTensors: ...


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


class WatchSession:
    """One weightwatch run while it is being written, driven by a callback: the layers found
    once, a :class:`Recorder`, and the live scorer when the options give a reference.

    (The analysis reads finished runs back as ``weightwatch.analysis`` run objects; this is the
    writing side.)

    Args:
        log_dir: the run directory.
        found: ``(LayerInfo, source)`` per watched layer; ``source.tensors()``
            returns the layer's current kernel in the core's layout.
        options: the watcher options (``hparams``, ``bins``, ``reference``, ``stop`` are used here).
        framework: recorded in ``weightwatch.json``.
        hparams: the hyperparameters to record when they are not ``options.hparams``
            (a framework's own record of them).
    """

    def __init__(self, log_dir: str | Path, found: Sequence[tuple[LayerInfo, Source]], options: WatchOptions, *,
                 framework: str, hparams: Mapping[str, Any] | None = None) -> None:
        self.layers = [info for info, _ in found]
        self._sources = [source for _, source in found]
        hparams = options.hparams if hparams is None else hparams
        self.recorder = Recorder(log_dir, self.layers, hparams=hparams, bins=options.bins, framework=framework)
        self.log_dir = self.recorder.log_dir
        self.scorer = None
        if options.loaded_reference is not None:  # the live verdict, see weightwatch.analysis.live
            from weightwatch.analysis.live import LiveScorer

            self.scorer = LiveScorer.for_recorder(options.loaded_reference, self.recorder, options.stop_rule)
        #: the step of the latest weight record, so one step is never recorded twice
        self.weights_step: int | None = None

    def tensors(self) -> list[LayerTensors]:
        return [source.tensors() for source in self._sources]

    def log(self, step: int, metrics: Mapping[str, float] | None = None, weights: bool = True) -> None:
        """Write ``metrics`` at ``step``, and the weights unless they were already recorded at this step."""
        weights = weights and self.weights_step != step
        if not weights and not metrics:
            return
        snapshot = self.recorder.log(step, self.tensors() if weights else None, metrics)
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
    """The options and the session every framework's callback keeps; mixed into each one's class.

    ``log_dir`` None lets the callback pick its framework's TensorBoard directory;
    ``options.hparams`` None lets it take the framework's own record of them.
    """

    run: WatchSession | None = None

    def _store_options(self, log_dir: str | Path | None, options: WatchOptions | None,
                       settings: Mapping[str, Any]) -> None:
        """Keep ``log_dir`` and the validated options (``settings``: the keyword arguments given)."""
        self.options = WatchOptions.build(options, settings, owner=type(self).__name__)
        self.log_dir = log_dir
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
