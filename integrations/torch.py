"""PyTorch integration: ``WeightWatch`` for plain training loops.

>>> ww = WeightWatch(model, log_dir="runs/exp1", hparams={"lr": 1e-3})  # doctest: +SKIP
>>> for epoch in range(epochs):                                        # doctest: +SKIP
...     train_one_epoch(model)
...     ww.log(epoch, loss=loss, accuracy=acc)
>>> ww.close()                                                          # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weightwatch._optional import require

torch = require("torch", "torch", "weightwatch.integrations.torch")
nn = torch.nn

import warnings  # noqa: E402

from weightwatch.flow import Flow  # noqa: E402
from weightwatch.integrations._callback import WatchSession  # noqa: E402
from weightwatch.integrations._torch_dist import Shards, process, sharded_reducer, unwrap  # noqa: E402
from weightwatch.integrations._torch_layers import _Source, discover_layers, find_layers  # noqa: E402
from weightwatch.integrations._torch_trace import FlowTracer  # noqa: E402
from weightwatch.integrations.options import Schedule, WatchOptions, as_schedule, check_every  # noqa: E402
from weightwatch.layers import LayerInfo, LayerTensors, finish_discovery  # noqa: E402

__all__ = ["WatchOptions", "WeightWatch", "discover_layers", "every_n", "find_layers"]

@dataclass(frozen=True)
class _ShardedSource:
    """A layer of a sharded (FSDP) model: this rank's pieces of its kernel and bias."""

    source: _Source
    shards: Shards

    def tensors(self) -> LayerTensors:
        s = self.source
        w, b = s.raw()
        bias = self.shards.piece(s.owner, s.bias, b, s.bias_rows) if b is not None else None
        return LayerTensors(kernel=self.shards.piece(s.owner, s.weight, w, s.weight_rows), bias=bias)


@dataclass
class Watched:
    """What a watcher of a torch model on this rank reads (:func:`watched`).

    Attributes:
        rank: this process's rank (0 outside torch.distributed).
        found: ``(LayerInfo, source)`` per watched layer.
        everything: every layer found before include / exclude, to trace the data flow on;
            empty for a sharded model (its strengths have no outgoing term).
        reduce: the collective reduction of a sharded model, None when every rank holds it whole.
    """

    rank: int
    found: list[tuple[LayerInfo, Any]]
    everything: list[tuple[LayerInfo, Any]]
    reduce: Any = None

    @property
    def sharded(self) -> bool:
        return self.reduce is not None

    @property
    def writes(self) -> bool:
        return self.rank == 0


def watched(model: nn.Module, options: WatchOptions, sync_timeout: float,
            wrapper: nn.Module | None = None) -> Watched:
    """The layers of ``model`` (the user's module, wrappers looked through by the caller) and how
    they are read on this rank: whole (one process, DDP) or, when sharded (``fully_shard``, or
    FullyShardedDataParallel units in ``model`` or in ``wrapper``, the module a framework wrapped
    it in), this rank's pieces reduced over every rank. Under FSDP it is a collective call (it
    makes weightwatch's own process group): every rank calls it."""
    rank, shards = process(model, wrapper)
    everything = find_layers(model, options.heads, shards.shape if shards is not None else None)
    found = finish_discovery(everything, options.include, options.exclude, options.roles)
    if shards is None:
        return Watched(rank, found, everything)
    found = [(info, _ShardedSource(source, shards)) for info, source in found]
    return Watched(rank, found, [], sharded_reducer(sync_timeout))


def _count_parameters(model: nn.Module) -> int:
    """How many parameter tensors the model has (a cheap check that layers were added)."""
    return sum(1 for _ in model.parameters())


def every_n(n: int) -> Schedule:
    """A schedule that records at steps 0, n, 2n, ...

    >>> [s for s in range(7) if every_n(3)(s)]
    [0, 3, 6]
    """
    if n is None:
        raise ValueError("every_n needs a positive integer, got None")
    return as_schedule(check_every(n, "every_n"))


class WeightWatch:
    """Record per-layer weight statistics of a ``torch.nn.Module`` into TensorBoard.

    Args:
        model: the network; its parameters are read in place at each log call.
            A DDP, DataParallel or ``torch.compile`` wrapper is looked through
            (layer names are the wrapped model's).
        log_dir: the run directory (one run per directory).
        example_input: one batch (a tensor, a tuple of positional arguments or a
            dict of keywords) to trace the data flow on at once; without it the
            flow is traced on the first forward pass (see docs/node-strength.md).
        sync_timeout: under FSDP, how long (seconds) ``log()`` waits for every
            rank to call it before it reports the ranks that did not.
        options: a :class:`~weightwatch.integrations.options.WatchOptions`;
            ``**settings`` are its fields as keywords (``hparams``, ``schedule``,
            ``include``, ``exclude``, ``roles``, ``bins``, ``reference``, ``stop``,
            ``heads``, ``fold_norm_scale``, ``strict``), overriding ``options``. Here ``schedule`` is asked about
            each ``step`` given to :meth:`log`.

    Under torch.distributed only rank 0 writes. With DDP (every rank holds the
    whole model) the other ranks do nothing at all, no collective is called,
    and ranks may call :meth:`log` at different moments. Under FSDP
    (``fully_shard``, or FullyShardedDataParallel) every rank must make the
    WeightWatch and call :meth:`log` at the same steps:
    the statistics are reduced from each rank's shard with a few small
    all-reduces; the complex-network strengths of a sharded model have no
    outgoing term (a consumer's kernel is split over the ranks).
    """

    def __init__(self, model: nn.Module, log_dir: str | Path = "runs/weightwatch", *, example_input: Any = None,
                 sync_timeout: float = 300.0, options: WatchOptions | None = None, **settings: Any) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"WeightWatch needs a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.options = WatchOptions.build(options, settings, owner="WeightWatch")
        opts = self.options
        inner = unwrap(model)
        plan = watched(inner, opts, sync_timeout)
        self.rank, found, everything = plan.rank, plan.found, plan.everything
        if plan.sharded:
            self.tracer, flow = None, Flow(method="untraced")
        else:  # traced before include / exclude, so leaving a layer out changes no other layer's numbers
            self.tracer = FlowTracer(inner, everything, example_input, on_traced=self._use_flow)
            flow = self.tracer.flow or Flow(method="untraced")
        self._parameters = _count_parameters(inner)
        self._inner = inner
        self._warned_untraced = False
        # the same engine the Keras / Lightning / HF callbacks drive
        self.run = WatchSession(log_dir, found, opts, framework="torch", writes=plan.writes, reduce=plan.reduce,
                                flow=flow, context=everything)
        self.layers = self.run.layers
        self.recorder = self.run.recorder
        self.log_dir = self.run.log_dir

    def _use_flow(self, flow: Flow) -> None:
        if getattr(self, "run", None) is not None and self.run.recorder is not None:
            self.run.recorder.flow = flow

    @property
    def flow(self) -> Flow | None:
        """The traced data flow (None until traced), see :mod:`weightwatch.flow`."""
        return self.tracer.flow if self.tracer is not None else None

    def tensors(self) -> list[LayerTensors]:
        """The current kernels and biases (views of the parameters, no copies)."""
        return self.run.tensors()

    def log(self, step: int, **metrics: Any) -> bool:
        """Write ``metrics`` at ``step``, and the weights' statistics when the schedule says so
        (once per step: logging a step again writes only its metrics).

        Returns whether the weights were recorded.
        """
        record = bool(self.options.records(step)) and self.run.weights_step != step
        if record and self.run.writes and _count_parameters(self._inner) != self._parameters:
            self.run.guard.warn("added", "the model has parameters it did not have when the WeightWatch was made "
                                "(layers added or removed); only the layers found then are watched. Make the "
                                "WeightWatch after the model is complete.")
        if record and self.tracer is not None and self.tracer.flow is None and not self._warned_untraced and \
                sum(layer.has_nodes for layer in self.tracer.layers) > 1:
            self._warned_untraced = True
            warnings.warn(f"weightwatch: step {step} is recorded before {type(self.model).__name__} ran a forward "
                          "pass, so its data flow is not traced yet: the complex-network strengths of this record "
                          "have no outgoing term. Pass example_input= to trace it at once.",
                          RuntimeWarning, stacklevel=2)
        with torch.no_grad():
            self.run.log(step, metrics, weights=record)
        return record

    @property
    def scorer(self) -> Any:
        """The live scorer (see ``weightwatch.analysis.LiveScorer``), or None without a reference."""
        return self.run.scorer

    @property
    def score(self) -> Any:
        """The reference's latest verdict (a ``Score``), or None (no reference, nothing recorded yet)."""
        return self.run.scorer.score if self.run.scorer is not None else None

    @property
    def should_stop(self) -> bool:
        """Whether the ``stop`` rule says to stop training now."""
        return self.run.should_stop

    def close(self, success: bool = True) -> None:
        if self.tracer is not None:
            self.tracer.detach()
        self.run.close(success)

    def __enter__(self) -> WeightWatch:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(success=exc_type is None)
