"""The framework-independent engine behind every integration.

An integration finds the layers once (a list of :class:`LayerInfo`), then at
each log call passes the current tensors; the :class:`Recorder` reduces them
(on their own device) and builds the statistics on the calling thread; the
event records and the sketch are built and written on a background thread
(:class:`weightwatch.events.BackgroundWriter`), one log call in flight at
most. It writes one run's event file, plus ``weightwatch.json`` describing the run (see :data:`RUN_INFO_FILE`) and
``weightwatch_sketch.npz``, a fixed-size sample of each kernel (see
:mod:`weightwatch.sketch`).
"""

from __future__ import annotations

import hashlib
import json
import numbers
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import __version__, summaries
from .events import BackgroundWriter, EventFileWriter
from .flow import Flow, column_request, kernel_rows, order_flow
from .outgoing import OutgoingTerms
from .layers import LayerInfo, LayerTensors
from .ops import KernelJob, RawLayer, reduce_jobs
from .object_events import ObjectEventWriter
from .rundir import claim_run_dir, release
from .sketch import sketch_indices, write_sketch
from .storage import Location, RemoteDir, location, write_whole
from .stats import Snapshot, summarize
from .tags import histogram_tags, scalar_tags

#: Written next to the event file: format version, framework, layers, hparams.
RUN_INFO_FILE = "weightwatch.json"
RUN_INFO_FORMAT = "weightwatch-run"
RUN_INFO_VERSION = 1
#: Tags weightwatch writes for the weights; a metric may not start with one.
WEIGHT_TAG_PREFIXES = ("weights/", "bias/", "node_strength/")


def architecture_id(layers: Sequence[LayerInfo]) -> str:
    """A short hash of the layer kinds and shapes (names excluded), so runs of
    the same architecture match across frameworks."""
    sig = json.dumps([(layer.kind, list(layer.shape), layer.heads) for layer in layers])
    return hashlib.sha1(sig.encode()).hexdigest()[:12]


def _job(info: LayerInfo, tensors: LayerTensors, columns: tuple[int, int] | None,
         sample: Any = None) -> KernelJob:
    """The reduction of one layer's kernel (and bias), with the column sums ``columns``
    (``(input_units, col_groups)``) when it feeds another layer's outgoing term."""
    input_units, col_groups = columns or (0, 1)
    return KernelJob(kernel=tensors.kernel, nodes=kernel_rows(info), input_units=input_units,
                     bias=tensors.bias, sample=sample, col_groups=col_groups)


def clean_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metrics as floats; anything that is not a number fails with its name.

    0-d tensors and numpy scalars are accepted (via ``float()``); a name
    starting with one of :data:`WEIGHT_TAG_PREFIXES` is refused (it would
    overwrite a weight statistic).
    """
    out = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"metric names must be non-empty strings, got {name!r}")
        if name.startswith(WEIGHT_TAG_PREFIXES):
            raise ValueError(f"metric {name!r} is named like a weightwatch tag ({', '.join(WEIGHT_TAG_PREFIXES)} "
                             "are weightwatch's own); rename it")
        if isinstance(value, bool) or not (isinstance(value, numbers.Real) or hasattr(value, "__float__")):
            raise TypeError(f"metric {name!r} must be a number, got {type(value).__name__}: {value!r}")
        try:
            out[name] = float(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"metric {name!r} must be a single number, got {value!r}") from exc
    return out


class Recorder:
    """Computes and writes one run's weight statistics.

    Args:
        log_dir: the run directory (created if missing; when a run still
            writing holds it, ``<log_dir>_2``, ... see :mod:`weightwatch.rundir`),
            or an fsspec URL (``s3://bucket/runs/exp1``, see :mod:`weightwatch.storage`;
            no lock there: give each run its own URL).
            None: compute only, write nothing (a rank of a sharded job that
            takes part in the reductions but does not write).
        layers: the watched layers, in the model's order.
        hparams: the run's hyperparameters, for the HParams dashboard.
        bins: histogram bins per layer.
        framework: recorded in ``weightwatch.json`` (``torch``, ``keras``, ...).
        reduce: ``reduce(jobs, bins, on_device=None) -> [RawLayer]``, the per-layer reductions;
            :func:`weightwatch.ops.reduce_jobs` by default, the sharded
            reductions of :mod:`weightwatch.distributed` under FSDP.
        flow: which layer feeds which (:mod:`weightwatch.flow`), traced by the
            integration before include / exclude; None pairs the layers in
            registration order (:func:`weightwatch.flow.order_flow`).
        context: the layers the flow reads that are not watched (consumers and
            norms left out); their tensors come with each :meth:`log` call, and
            those feeding a present layer's outgoing term are reduced in the same
            pass as the watched layers (only their column sums are kept).
        fold_norm_scale: multiply the outgoing weights by the scale (gamma) of
            the normalisation layers between producer and consumer.
    """

    def __init__(self, log_dir: str | Path | None, layers: Sequence[LayerInfo], *,
                 hparams: Mapping[str, Any] | None = None, bins: int = 64, framework: str = "unknown",
                 reduce: Callable[..., list[RawLayer]] | None = None, flow: Flow | None = None,
                 context: Sequence[LayerInfo] = (), fold_norm_scale: bool = False) -> None:
        if not layers:
            raise ValueError("Recorder needs at least one layer to watch")
        if not isinstance(bins, int) or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
        names = [layer.name for layer in layers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"layer names must be unique; repeated: {sorted(dup)}")
        self.layers = list(layers)
        self.bins = bins
        self.hparams = dict(hparams or {})
        self.framework = framework
        self.flow = flow if flow is not None else order_flow(self.layers)
        self.context = {layer.name: layer for layer in context}
        self.fold_norm_scale = bool(fold_norm_scale)
        self._sketch_at = [sketch_indices(layer.shape) for layer in self.layers]
        self._reduce = reduce or reduce_jobs
        self._metric_names: list[str] = []
        self._config_written: list[str] | None = None
        self.last_snapshot: Snapshot | None = None
        self._lock = None
        self.writer: EventFileWriter | ObjectEventWriter | None = None
        self.log_dir: Location | None = location(log_dir) if log_dir is not None else None
        self._computing_closed = False
        self._background: BackgroundWriter | None = None
        self._sketch_error: OSError | None = None  # set on the writer thread, raised by the next log call
        if isinstance(self.log_dir, Path):
            try:
                self.log_dir, self._lock = claim_run_dir(self.log_dir)
            except OSError:  # EventFileWriter says why the directory cannot be written
                self._lock = None
        if self.log_dir is not None:
            self.reopen()

    def reopen(self) -> None:
        """Start a new event file in ``log_dir`` (made again if it is gone), with the run's info,
        layout and hyperparameters: how a run goes on after its directory was deleted."""
        if self._background is not None:  # the old file's writer thread: what it still holds is gone anyway
            try:
                self._background.close()
            except OSError:
                pass
        self._sketch_error = None  # a sketch lost with the old directory is not a new problem
        self.writer = (ObjectEventWriter(self.log_dir) if isinstance(self.log_dir, RemoteDir)
                       else EventFileWriter(self.log_dir))
        self._write_run_info()
        self.writer.write_summary(summaries.custom_scalars_summary([layer.name for layer in self.layers]), step=0)
        if self._config_written is not None:
            self._write_hparams()
        self.writer.flush()
        self._background = BackgroundWriter(self.writer)

    # -- public -----------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self.writer.closed if self.writer is not None else self._computing_closed

    @property
    def writes(self) -> bool:
        """False for a compute-only recorder (``log_dir`` None)."""
        return self.writer is not None

    def log(self, step: int, tensors: Sequence[LayerTensors] | None = None,
            metrics: Mapping[str, Any] | None = None,
            context: Mapping[str, LayerTensors] | None = None) -> Snapshot | None:
        """Write the user's ``metrics`` and, when ``tensors`` are given, the weights' statistics.

        Args:
            step: the x axis in TensorBoard (epoch or global step).
            tensors: one per layer, aligned with ``self.layers``.
            context: the current tensors of the ``context`` layers, by name.
        Returns once the statistics are computed; the records are written on the
        background thread. When this returns, every earlier log call is in the OS
        (a crash of the process loses at most this one); :meth:`flush` waits for
        this one too. A compute-only recorder (``log_dir`` None) computes the
        statistics and writes nothing.
        """
        self._check_open()
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}")
        values = clean_metrics(metrics or {})
        snapshot = None
        if tensors is not None:
            snapshot = self.compute(int(step), tensors, context=context)
        if self.writer is None:
            return snapshot
        for name in values:
            if name not in self._metric_names and not name.startswith(WEIGHT_TAG_PREFIXES):
                self._metric_names.append(name)
        config = self._hparams_events() if self._config_written is None and self._metric_names else []
        if snapshot is not None:
            self.last_snapshot = snapshot
        wall = time.time()
        self._background.submit(lambda: self._log_events(int(step), wall, values, snapshot, config),
                                inline=snapshot is None)  # scalars only: cheaper here than waking the writer
        if self._sketch_error is not None:  # an earlier log's sketch could not be written (this log is queued)
            exc, self._sketch_error = self._sketch_error, None
            raise exc
        return snapshot

    def flush(self) -> None:
        """Wait until every log call so far is written to the OS (safe from a crash of the process)."""
        if self._background is not None:
            self._background.wait()

    def compute(self, step: int, tensors: Sequence[LayerTensors | None], *, on_device: bool | None = None,
                context: Mapping[str, LayerTensors] | None = None) -> Snapshot:
        """Reduce ``tensors`` and build the statistics, without writing anything.

        A None entry leaves its layer out of this snapshot (a layer that could not
        be read); the layers it consumes then have no outgoing term from it this time.
        """
        if len(tensors) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} layer tensors, got {len(tensors)}")
        present = [i for i, t in enumerate(tensors) if t is not None]
        if not present:
            raise ValueError("no layer could be read: nothing to record")
        context = context or {}
        wanted = self._columns_wanted([self.layers[i] for i in present])
        names = [self.layers[i].name for i in present]
        # unwatched consumers (and norms) go through the same fused pass: only their column sums are
        # kept, but their kernels too are read once, and from a device cross in the one transfer
        watched = set(names)
        extra = [name for name in wanted if name not in watched and name in context and name in self.context]
        jobs = [_job(self.layers[i], tensors[i], wanted.get(name), self._sketch_at[i])
                for i, name in zip(present, names)]
        jobs += [_job(self.context[name], LayerTensors(context[name].kernel), wanted[name]) for name in extra]
        raws = self._reduce(jobs, self.bins, on_device=on_device)
        columns = {name: raw.col_sum for name, raw in zip(names + extra, raws) if raw.col_sum is not None}
        raws = raws[:len(present)]
        outgoing = self._outgoing(tensors, columns)
        if len(present) == len(self.layers):
            return summarize(step, self.layers, raws, outgoing)
        index = {i: k for k, i in enumerate(present)}
        return summarize(step, [self.layers[i] for i in present], raws, outgoing.renumbered(index))

    def _columns_wanted(self, present: Sequence[LayerInfo]) -> dict[str, tuple[int, int]]:
        """The layers whose column sums the outgoing terms of ``present`` read, each with its
        ``(input_units, col_groups)`` (:func:`weightwatch.flow.column_request`): the consumers of
        every present layer with nodes, and the norms on the way when their scale is folded. In name
        order: the extra jobs they make come in the same order on every rank of a sharded run."""
        infos = {**self.context, **{layer.name: layer for layer in self.layers}}
        names: set[str] = set()
        for layer in present:
            if layer.has_nodes:
                for edge in self.flow.consumers(layer.name):
                    names.add(edge.consumer)
                    names.update(n for n, _ in edge.norms if self.fold_norm_scale)
        return {name: column_request(infos[name], self.flow.geometry.get(name))
                for name in sorted(names) if name in infos}

    def _outgoing(self, tensors: Sequence[LayerTensors | None], columns: Mapping[str, Any]) -> OutgoingTerms:
        """Each watched layer's outgoing term, from the column sums of its consumers' kernels, computed
        when :func:`summarize` asks for it (:class:`weightwatch.outgoing.OutgoingTerms`).

        Args:
            columns: layer name -> its ``RawLayer.col_sum`` from this log's reduction (see
                :meth:`_columns_wanted`), for the consumers and norms that could be read.
        A layer one of whose consumers (or norms, when folded) has no tensors this
        time (not readable, or not passed in ``context``) gets none.
        """
        infos = {**self.context, **{layer.name: layer for layer in self.layers}}
        scales = dict(columns) if self.fold_norm_scale else {}  # a norm's column sums are its scale vector
        producers = {}
        for i, layer in enumerate(self.layers):
            edges = self.flow.consumers(layer.name)
            if not layer.has_nodes or tensors[i] is None or not edges or any(
                    e.consumer not in columns or e.consumer not in infos
                    or any(n not in scales for n, _ in e.norms) and self.fold_norm_scale for e in edges):
                continue
            producers[i] = layer
        return OutgoingTerms(self.flow, producers, columns, infos, scales, self.fold_norm_scale)

    def close(self, success: bool = True) -> None:
        """Mark the run finished in the HParams dashboard, drain the writer and close the file. Idempotent."""
        if self.closed:
            return
        if self.writer is None:
            self._computing_closed = True
            return
        try:
            self._background.wait()  # raises a write error of an earlier log call, after closing
        finally:
            try:
                config = []
                if self._config_written is None or self._config_written != self._metric_names:
                    config = self._hparams_events()
                self.writer.write_many([*config, summaries.event_pb2.Event(
                    wall_time=time.time(), step=0, summary=summaries.hparams_end_summary(success))])
            finally:
                try:
                    self._background.close()
                finally:
                    release(self._lock)

    # -- internals --------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(
                f"weightwatch: the run in {str(self.log_dir)!r} is closed; "
                "create a new WeightWatch / Recorder to keep logging."
            )

    def _write_hparams(self) -> None:
        """Write the HParams config now, on the calling thread (before the writer thread starts)."""
        self.writer.write_many(self._hparams_events())

    def _hparams_events(self) -> list[summaries.event_pb2.Event]:
        """The HParams config for the metric names seen so far (marks them written)."""
        self._config_written = list(self._metric_names)
        now = time.time()
        return [summaries.event_pb2.Event(wall_time=now, step=0, summary=summary)
                for summary in summaries.hparams_summaries(self.hparams, self._config_written,
                                                           group_name=self.log_dir.name)]

    def _log_events(self, step: int, wall: float, values: dict[str, float], snapshot: Snapshot | None,
                    config: list) -> list:
        """The records of one log call (runs on the writer thread): ``config`` (the
        HParams config, when new), then one event holding every scalar and histogram."""
        if snapshot is None:
            return [*config, summaries.log_event(step, wall, values)]
        event = summaries.log_event(step, wall, {**scalar_tags(snapshot), **values},
                                    histogram_tags(snapshot, self.bins))
        if len(snapshot.layers) == len(self.layers):  # a partial snapshot keeps the last sketch
            try:
                write_sketch(self.log_dir, step, [layer.name for layer in self.layers], self._sketch_at,
                             snapshot.sketch)
            except OSError as exc:  # the records still go out; the caller hears of it at its next log
                self._sketch_error = exc
        return [*config, event]

    def _write_run_info(self) -> None:
        info = {
            "format": RUN_INFO_FORMAT,
            "version": RUN_INFO_VERSION,
            "weightwatch": __version__,
            "framework": self.framework,
            "created": time.time(),
            "bins": self.bins,
            "architecture": architecture_id(self.layers),
            "hparams": {k: summaries.hparam_value(v) for k, v in self.hparams.items()},
            "layers": [layer.to_json() for layer in self.layers],
        }
        write_whole(self.log_dir, RUN_INFO_FILE, json.dumps(info, indent=1, default=str).encode())
