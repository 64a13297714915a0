"""What the integrations (PyTorch loop, Keras, Lightning, Hugging Face) share.

Imports no framework: each callback finds its layers in its own way, then
drives one :class:`WatchSession` with the epoch (or step) and the metrics its
framework reports. The options they take are :mod:`.options`.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from weightwatch.distributed import ShardPiece
from weightwatch.flow import Flow
from weightwatch.layers import LayerInfo, LayerTensors
from weightwatch.recorder import Recorder, clean_metrics

from ._guard import Guard, WeightWatchWarning

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
    writing side.) After construction no error reaches the caller unless
    ``options.strict``: each becomes one :class:`~._guard.WeightWatchWarning`
    naming the layer or file and what to do, and that layer or that log is skipped.

    Args:
        log_dir: the run directory.
        found: ``(LayerInfo, source)`` per watched layer; ``source.tensors()``
            returns the layer's current kernel in the core's layout.
        options: the watcher options (``hparams``, ``bins``, ``reference``, ``stop``, ``strict``).
        framework: recorded in ``weightwatch.json``.
        hparams: the hyperparameters to record when they are not ``options.hparams``
            (a framework's own record of them).
        writes: whether this process writes the run (False on all ranks but one).
        reduce: the recorder's reductions (:mod:`weightwatch.distributed` under FSDP);
            given, every process computes and one writes; without it, a process that
            does not write does nothing at all.
        flow: the model's data flow (see :mod:`weightwatch.flow`), None for registration order.
        context: every layer found before include / exclude, for the consumers
            and norms the flow reads that are not watched.
        step_unit: how the framework counts the steps it logs at, ``"epoch"`` or ``"step"``
            (optimizer steps), None when the user picks them (the live scorer maps them to the
            reference's unit, see :class:`~weightwatch.analysis.LiveScorer`).
    """

    def __init__(self, log_dir: str | Path, found: Sequence[tuple[LayerInfo, Source]], options: WatchOptions, *,
                 framework: str, hparams: Mapping[str, Any] | None = None, writes: bool = True,
                 reduce: Any = None, flow: Flow | None = None,
                 context: Sequence[tuple[LayerInfo, Source]] = (), step_unit: str | None = None) -> None:
        self.layers = [info for info, _ in found]
        self._sources = [source for _, source in found]
        watched = {info.name for info in self.layers}
        self._context = {info.name: (info, source) for info, source in context if info.name not in watched}
        self.guard = Guard(options.strict)
        self.collective = reduce is not None
        self.recorder: Recorder | None = None
        self.log_dir: Path | None = None
        self.scorer = None
        #: the step of the latest weight record, so one step is never recorded twice
        self.weights_step: int | None = None
        self._skipped: set[int] = set()  # layers that failed in a way that will not heal
        self.halted = False  # a sharded run whose ranks fell out of step logs no more
        self._pending: tuple[Any, float | None] | None = None  # a snapshot whose step's metrics are still to come
        if not writes and not self.collective:
            return
        hparams = options.hparams if hparams is None else hparams
        self.recorder = Recorder(log_dir if writes else None, self.layers, hparams=hparams, bins=options.bins,
                                 framework=framework, reduce=reduce, flow=flow,
                                 context=[info for info, _ in self._context.values()],
                                 fold_norm_scale=options.fold_norm_scale)
        self.log_dir = self.recorder.log_dir
        if options.loaded_reference is not None and writes:  # the live verdict (weightwatch.analysis.LiveScorer)
            from weightwatch.analysis import LiveScorer

            self.scorer = LiveScorer.for_recorder(options.loaded_reference, self.recorder, options.stop_rule,
                                                  step_unit=step_unit)

    @property
    def writes(self) -> bool:
        return self.recorder is not None and self.recorder.writes

    @property
    def closed(self) -> bool:
        return self.recorder is None or self.recorder.closed

    def tensors(self) -> list[LayerTensors | None]:
        """Each layer's current tensors; None for one that cannot be read now (warned once)."""
        out: list[LayerTensors | None] = []
        for i, (info, source) in enumerate(zip(self.layers, self._sources)):
            if i in self._skipped:
                out.append(None)
                continue
            try:
                t = source.tensors()
                problem = _shape_problem(info, t)
            except Exception as exc:  # noqa: BLE001 - any framework error: this layer is skipped
                self.guard.failed(("read", info.name), exc, f"layer {info.name!r} cannot be read",
                                  "It is left out of the records until it can be read again.")
                out.append(None)
                continue
            if problem:
                self.guard.warn(("shape", info.name), f"layer {info.name!r} {problem}; it is left out of the "
                                "records. Create the callback again after changing the model.")
                t = None
            out.append(t)
        return out

    def user_metrics(self, metrics: Mapping[str, Any] | None) -> dict[str, float]:
        """The metrics that are numbers with names of their own; each other one is warned about once."""
        out: dict[str, float] = {}
        for name, value in (metrics or {}).items():
            try:
                if isinstance(name, str) and name.startswith("weightwatch/"):
                    raise ValueError(f"metric {name!r} is named like a weightwatch tag (weightwatch/ is "
                                     "weightwatch's own); rename it")
                if hasattr(value, "numel") and value.numel() == 1:
                    value = value.reshape(())  # a one-element tensor is one number
                out.update(clean_metrics({name: value}))
            except (TypeError, ValueError, RuntimeError) as exc:
                self.guard.failed(("metric", str(name)), exc, f"metric {name!r} is not logged",
                                  "Pass numbers (floats, 0-d tensors, numpy scalars) under names of your own.")
        return out

    def log(self, step: int, metrics: Mapping[str, Any] | None = None, weights: bool = True, *,
            epoch: float | None = None, score: bool = True) -> None:
        """Write ``metrics`` at ``step``, and the weights unless they were already recorded at this step.

        ``epoch``: the epochs completed at this log (fractional; None when unknown), for a live
        scorer whose reference counts steps otherwise. ``score`` False: the framework logs this
        step's metrics later (Hugging Face's Trainer after ``on_epoch_end``); the weights are
        scored by :meth:`score_pending` once they are in (or at the next weights, or at close).
        """
        if self.halted:
            return
        if self.closed:
            if self.recorder is not None:  # logging after close(): say so once, or raise when strict
                self.guard.warn("closed", f"the run in {str(self.log_dir)!r} is closed; nothing more is logged. "
                                "Create a new callback to keep logging.")
            return
        weights = weights and self.weights_step != step
        metrics = self.user_metrics(metrics) if self.writes else {}
        if not weights and not metrics:
            return
        if self.writes and not self._directory_usable():
            return
        tensors = self.tensors() if weights else None
        context = self._context_tensors() if weights else None
        if tensors is not None and all(t is None for t in tensors):  # each was warned about
            tensors, weights = None, False
            if not metrics:
                return
        try:
            snapshot = self.recorder.log(step, tensors, metrics, context=context)
        except Exception as exc:  # noqa: BLE001 - never into the training loop
            if tensors is None or self.collective or isinstance(exc, OSError) or not self._skip_failing(tensors, context):
                self._failed(step, exc)
                return
            return self.log(step, metrics, weights, epoch=epoch, score=score)  # again, without the layers that failed
        if weights:
            self.weights_step = step
        self._scoring(lambda: self._feed(step, metrics, epoch, snapshot, score))

    def score_pending(self) -> None:
        """Score the weights logged with ``score=False`` now that their step's metrics are in."""
        self._scoring(self._score_pending)

    def _scoring(self, work: Callable[[], None]) -> None:
        """``work()`` on the live scorer, if any; a failure turns live scores off (one warning)."""
        if self.scorer is None:
            return
        try:
            work()
        except Exception as exc:  # noqa: BLE001
            self.guard.failed("scorer", exc, "the reference cannot score this run (made for another "
                              "architecture?)", "Live scores are off for this run; training goes on.")
            self.scorer = None

    def _feed(self, step: int, metrics: Mapping[str, float], epoch: float | None, snapshot: Any,
              score: bool) -> None:
        if metrics:  # the curves so far, in before the snapshot they go with is scored
            self.scorer.add_metrics(step, metrics, epoch)
        if snapshot is not None:
            self._score_pending()  # a step whose metrics never came is judged on what it has
            self._pending = (snapshot, epoch)
            if score:
                self._score_pending()

    def _score_pending(self) -> None:
        if self._pending is None:
            return
        (snapshot, epoch), self._pending = self._pending, None
        verdict = self.scorer.log(self.recorder, snapshot, epoch)
        if verdict is None and self.scorer.unjudged:
            self.guard.notice("unjudged", f"{self.scorer.unjudged}.")
        elif verdict is not None and verdict.reason:
            what = ("the live verdict is uncertain, so the stop rule does not act on it and nothing is logged for "
                    "it" if verdict.uncertain else "the live verdict comes from a model that reads the weights only")
            self.guard.notice(("verdict", verdict.uncertain), f"step {verdict.step}: {what}: {verdict.reason}. "
                              "Training goes on (said once).")

    def _context_tensors(self) -> dict[str, LayerTensors]:
        """The current tensors of the unwatched layers the flow reads (consumers, norms)."""
        needed = self.recorder.flow.needed()
        out = {}
        for name, (_, source) in self._context.items():
            if name in needed:
                try:
                    out[name] = source.tensors()
                except Exception as exc:  # noqa: BLE001 - its producers get no outgoing term this time
                    self.guard.failed(("read", name), exc, f"layer {name!r} (read for the data flow) cannot be "
                                      "read", "The layers feeding it get no outgoing term until it can.")
        return out

    def _skip_failing(self, tensors: list[LayerTensors | None], context: dict[str, LayerTensors] | None) -> bool:
        """Find the layers whose reduction fails on their own, skip them from now on (one warning
        each); whether any was found."""
        found = False
        for i, t in enumerate(tensors):
            if t is None:
                continue
            try:
                self.recorder.compute(0, [t if j == i else None for j in range(len(tensors))], context=context)
            except Exception as exc:  # noqa: BLE001
                found = True
                self._skipped.add(i)
                self.guard.failed(("reduce", self.layers[i].name), exc, f"layer {self.layers[i].name!r} cannot "
                                  "be reduced", "It is left out of the records from now on.")
        return found

    def _directory_usable(self) -> bool:
        """False (warned once) while the run directory is gone and cannot be made again; made again
        (a new event file, the run's info rewritten) as soon as it can."""
        if self.recorder.writer.present():
            return True
        self.guard.warn(("deleted", str(self.log_dir)), f"the run directory {str(self.log_dir)!r} was deleted "
                        "while training; weightwatch makes it again and goes on in a new event file (what was "
                        "logged before went with the directory).")
        try:
            self.recorder.reopen()
        except OSError as exc:
            self.guard.failed(("reopen", str(self.log_dir)), exc, f"cannot make {str(self.log_dir)!r} again",
                              "Logging resumes when the directory can be written.")
            return False
        return True

    def _failed(self, step: int, exc: Exception) -> None:
        if self.collective and isinstance(exc, TimeoutError):  # the ranks are out of step for good
            self.halted = True
            self.guard.failed("collective", exc, "the ranks did not all log", "Training goes on unlogged.")
        elif isinstance(exc, OSError):
            where = exc.filename or self.log_dir
            self.guard.failed(("os", type(exc).__name__, str(where)), exc, f"cannot write {str(where)!r}",
                              "This log is skipped; logging resumes when the file system accepts writes "
                              "(free space, permissions).")
        else:
            self.guard.failed(("log", type(exc).__name__), exc, f"the log of step {step} failed",
                              "It is skipped and training goes on; please report this with the model's layers.")

    @property
    def should_stop(self) -> bool:
        """Whether the reference's stop rule says to stop training now."""
        return self.scorer is not None and self.scorer.should_stop

    def close(self, success: bool = True) -> None:
        if self.recorder is None:
            return
        if not self.closed:
            self.score_pending()
        try:
            self.recorder.close(success)
        except Exception as exc:  # noqa: BLE001
            self.guard.failed("close", exc, f"the run in {str(self.log_dir)!r} was not closed cleanly",
                              "Everything logged before is on disk.")


def _shape_problem(info: LayerInfo, tensors: LayerTensors) -> str | None:
    """Why ``tensors`` no longer fit ``info`` (parameters replaced or moved to the meta device), or None."""
    kernel = tensors.kernel
    device = getattr(kernel, "device", None)
    if getattr(device, "type", None) == "meta":
        return "has its parameters on the meta device (not materialised yet, e.g. before to_empty())"
    shape = getattr(kernel, "shape", None)
    if shape is not None and not isinstance(kernel, ShardPiece) and tuple(shape) != tuple(info.shape):
        return f"now has shape {tuple(shape)}, not {tuple(info.shape)} as when the callback was made"
    return None


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
        return self.run is None or self.run.closed

    def _open(self, make: Callable[[], WatchSession]) -> None:
        """``self.run = make()``, inside the training loop: a failure is one warning and no run
        (raised when strict)."""
        try:
            self.run = make()
        except Exception as exc:  # noqa: BLE001 - the framework's training must go on
            if self.options.strict:
                raise
            self.run = None
            warnings.warn(f"weightwatch: {type(self).__name__} could not start its run ({type(exc).__name__}: "
                          f"{exc}); training goes on without it.", WeightWatchWarning, stacklevel=3)
