"""Keras 3 integration: ``WeightWatchCallback`` for ``model.fit``, on any Keras backend.

>>> model.fit(x, y, epochs=20, callbacks=[WeightWatchCallback("runs/exp1")])  # doctest: +SKIP

Layers are found once, when training begins, and each kernel is then read in
the core's (PyTorch) layout as a view of the backend's array (on the torch
backend a permuted ``torch.Tensor``, no copy; on other backends a numpy view
of ``keras.ops.convert_to_numpy``):

==============================  ==========================  ==============================
Keras layer                     Keras kernel                core layout (a node = a row)
==============================  ==========================  ==============================
Dense                           (in, out)                   (out, in)
Conv1D / Conv2D / Conv3D        (*k, in / groups, out)      (out, in / groups, *k)
MultiHeadAttention query, key,  (E, heads, head_dim)        (heads * head_dim, E), one
value  -> ``<path>.q_proj`` ...                             layer per projection, ``heads``
MultiHeadAttention output       (heads, head_dim, E_out)    (E_out, heads * head_dim)
-> ``<path>.out_proj``
Layer/Batch/Group/RMS-          (features,)                 unchanged
Normalization
Embedding                       (input_dim, output_dim)     unchanged
==============================  ==========================  ==============================

Layer names are the layer's ``weight.path`` with ``/`` written ``.`` (``block/ff/kernel``
-> ``block.ff``) and without the model's own name (which a Sequential puts
first), as PyTorch's module paths are. One more conversion keeps the
complex-network strength right: a Dense that reads the flattened output of a
channels-last convolution sees its inputs in (H, W, C) order, where a torch
Linear after ``nn.Flatten`` sees (C, H, W); its kernel's input axis is put in
channel-major order, so that the conv's outgoing sums group the right inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from weightwatch.flow import Flow
from weightwatch.layers import LayerInfo, finish_discovery

from ._callback import WatchingCallback, WatchSession, scalar_metrics
from ._keras_flow import read_flow
from ._keras_conventions import is_first_process, update_frequency
from ._keras_layers import discover_layers, find_layers
from ._keras_layout import KerasSource, keras
from .options import WatchOptions

__all__ = ["WatchOptions", "WeightWatchCallback", "discover_layers", "find_layers", "trace_flow"]


class WeightWatchCallback(WatchingCallback, keras.callbacks.Callback):
    """Record per-layer weight statistics of a Keras model during ``model.fit``, on any backend.

    Args:
        log_dir: the run directory (one run per directory), created when training begins. It may
            be the ``log_dir`` of a ``keras.callbacks.TensorBoard`` too: that one writes into its
            ``train/`` and ``validation/`` subdirectories, weightwatch into the directory itself.
        update_freq: as keras.callbacks.TensorBoard: ``"epoch"`` (the x axis counts epochs),
            ``"batch"`` or an int N: also record the weights, and the batch's logs as
            ``batch_<name>`` (Keras' running averages), every N training batches. The x axis
            then counts training batches (across epochs), and an ``epoch`` scalar is written
            with the epoch's logs.
        every_n_batches: the older name of ``update_freq=N``.
        options / ``**settings``: the watcher options, a
            :class:`~weightwatch.integrations.options.WatchOptions` and/or its
            fields as keywords. Here ``schedule`` is asked about each epoch
            (from 0); the epoch's logs (loss, accuracy, val_loss, val_accuracy, ...
            as Keras names them) are written at every epoch; with ``stop``, ``model.stop_training`` is set when
            the rule says so.

    The weights are reduced where they live, with the backend's own ops (see
    :mod:`weightwatch.ops`). Under ``keras.distribution`` (DataParallel, ModelParallel) on
    JAX the replicated or sharded variables are read as they are, and only process 0 of a
    multi-process run writes. The run is closed when ``fit`` ends; a later ``fit`` with the
    same callback opens a new event file in the same directory.
    """

    def __init__(self, log_dir: str | Path = "runs/weightwatch", *, update_freq: str | int = "epoch",
                 every_n_batches: int | None = None, options: WatchOptions | None = None,
                 **settings: Any) -> None:
        super().__init__()
        self._store_options(log_dir, options, settings)
        self.every_n_batches = update_frequency(update_freq, every_n_batches)
        self._batches = 0  # training batches seen, across epochs and fits
        self._writes = True  # False on the processes of a multi-process run that do not write

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._writes = is_first_process(keras.backend.backend())
        if self._writes and self._needs_run():
            self._open(self._session)

    def _session(self) -> WatchSession:
        opts = self.options
        everything = find_layers(self.model)
        found = finish_discovery(everything, opts.include, opts.exclude, opts.roles)
        # the flow is read before include / exclude: leaving a layer out changes no other layer's numbers
        return WatchSession(self.log_dir, found, opts, framework="keras", flow=trace_flow(self.model, everything),
                            context=everything, step_unit="step" if self.every_n_batches else "epoch")

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._batches += 1
        if self._writes and self.every_n_batches and self._batches % self.every_n_batches == 0:
            if self._require_run():
                metrics = {f"batch_{k}": v for k, v in scalar_metrics(logs, drop={"batch", "size"}).items()}
                _ = self.model  # on JAX, Keras' model property puts the trainer's state back into the variables
                self.run.log(self._batches, metrics)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if not self._writes:
            return
        metrics = scalar_metrics(logs)
        step = epoch
        if self.every_n_batches:
            step = self._batches
            metrics["epoch"] = float(epoch)
        if not self._require_run():
            return
        self.run.log(step, metrics, weights=bool(self.options.records(epoch)), epoch=epoch + 1.0)  # epochs completed
        if self.run.should_stop:
            self.model.stop_training = True

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.run is not None:
            self.run.close()

    def _require_run(self) -> bool:
        """Whether a run is open; without one (its start failed and was warned about) nothing is logged."""
        if self.run is None and self.options.strict:
            raise RuntimeError("WeightWatchCallback: on_train_begin was not called; pass the callback to model.fit")
        return self.run is not None


def trace_flow(model: Any, everything: Sequence[tuple[LayerInfo, KerasSource]]) -> Flow:
    """The data flow between the layers of ``everything`` (see :mod:`weightwatch.flow`), from the
    model's functional graph (Sequential included)."""
    return read_flow(keras, model, everything)
