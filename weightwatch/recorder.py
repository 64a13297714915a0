"""The framework-independent engine behind every integration.

An integration finds the layers once (a list of :class:`LayerInfo`), then at
each log call passes the current tensors; the :class:`Recorder` reduces them
(on their own device) and builds the statistics on the calling thread; the
event records and the sketch are built and written on a background thread
(:class:`weightwatch.events.BackgroundWriter`), one log call in flight at
most. It writes one run's event file,
plus ``weightwatch.json`` describing the run (see :data:`RUN_INFO_FILE`) and
``weightwatch_sketch.npz``, a fixed-size sample of each kernel (see
:mod:`weightwatch.sketch`).
"""

from __future__ import annotations

import hashlib
import json
import numbers
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import __version__, summaries
from .events import BackgroundWriter, EventFileWriter
from .layers import LayerInfo, LayerTensors, consecutive_pairs
from .ops import KernelJob, reduce_jobs
from .sketch import sketch_indices, write_sketch
from .stats import Snapshot, summarize
from .tags import histogram_tags, scalar_tags

#: Written next to the event file: format version, framework, layers, hparams.
RUN_INFO_FILE = "weightwatch.json"
RUN_INFO_FORMAT = "weightwatch-run"
RUN_INFO_VERSION = 1


def architecture_id(layers: Sequence[LayerInfo]) -> str:
    """A short hash of the layer kinds and shapes (names excluded), so runs of
    the same architecture match across frameworks."""
    sig = json.dumps([(layer.kind, list(layer.shape), layer.heads) for layer in layers])
    return hashlib.sha1(sig.encode()).hexdigest()[:12]


def clean_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metrics as floats; anything that is not a number fails with its name.

    0-d tensors and numpy scalars are accepted (via ``float()``).
    """
    out = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"metric names must be non-empty strings, got {name!r}")
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
        log_dir: the run directory (created if missing).
        layers: the watched layers, in the model's order.
        hparams: the run's hyperparameters, for the HParams dashboard.
        bins: histogram bins per layer.
        framework: recorded in ``weightwatch.json`` (``torch``, ``keras``, ...).
    """

    def __init__(self, log_dir: str | Path, layers: Sequence[LayerInfo], *,
                 hparams: Mapping[str, Any] | None = None, bins: int = 64, framework: str = "unknown") -> None:
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
        self.pairs = consecutive_pairs(self.layers)
        self._needs_cols = set(self.pairs.values())
        self._sketch_at = [sketch_indices(layer.shape) for layer in self.layers]
        self.writer = EventFileWriter(log_dir)
        self.log_dir = self.writer.log_dir
        self._metric_names: list[str] = []
        self._config_written: list[str] | None = None
        self.last_snapshot: Snapshot | None = None
        self._write_run_info()
        self.writer.write_summary(summaries.custom_scalars_summary(names), step=0)
        self.writer.flush()
        self._background = BackgroundWriter(self.writer)

    # -- public -----------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self.writer.closed

    def log(self, step: int, tensors: Sequence[LayerTensors] | None = None,
            metrics: Mapping[str, Any] | None = None) -> Snapshot | None:
        """Write the user's ``metrics`` and, when ``tensors`` are given, the weights' statistics.

        Args:
            step: the x axis in TensorBoard (epoch or global step).
            tensors: one per layer, aligned with ``self.layers``.
        Returns once the statistics are computed; the records are written
        (and fsynced) on the background thread. When this returns, every earlier
        log call is on disk (a crash loses at most this one); :meth:`flush`
        waits for this one too.
        """
        self._check_open()
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}")
        values = clean_metrics(metrics or {})
        snapshot = self.compute(int(step), tensors) if tensors is not None else None
        for name in values:
            if name not in self._metric_names and not name.startswith(("weights/", "bias/", "node_strength/")):
                self._metric_names.append(name)
        config = self._hparams_events() if self._config_written is None and self._metric_names else []
        if snapshot is not None:
            self.last_snapshot = snapshot
        wall = time.time()
        self._background.submit(lambda: self._log_events(int(step), wall, values, snapshot, config))
        return snapshot

    def flush(self) -> None:
        """Wait until every log call so far is written to the OS (safe from a crash of the process)."""
        self._background.wait()

    def compute(self, step: int, tensors: Sequence[LayerTensors], *, on_device: bool | None = None) -> Snapshot:
        """Reduce ``tensors`` and build the statistics, without writing anything."""
        if len(tensors) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} layer tensors, got {len(tensors)}")
        jobs = [
            KernelJob(
                kernel=t.kernel,
                nodes=info.shape[0] if len(info.shape) > 1 else 1,
                input_units=info.inputs if i in self._needs_cols else 0,
                bias=t.bias,
                sample=self._sketch_at[i],
            )
            for i, (info, t) in enumerate(zip(self.layers, tensors))
        ]
        raws = reduce_jobs(jobs, self.bins, on_device=on_device)
        return summarize(step, self.layers, raws, self.pairs)

    def close(self, success: bool = True) -> None:
        """Mark the run finished in the HParams dashboard and close the file. Idempotent."""
        if self.closed:
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
                self._background.close()

    # -- internals --------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(
                f"weightwatch: the run in {str(self.log_dir)!r} is closed; "
                "create a new WeightWatch / Recorder to keep logging."
            )

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
        write_sketch(self.log_dir, step, [layer.name for layer in self.layers], self._sketch_at, snapshot.sketch)
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
        path = self.log_dir / RUN_INFO_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(info, indent=1, default=str))
        tmp.replace(path)
