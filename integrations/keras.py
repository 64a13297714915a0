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
first), as PyTorch's module paths are. A Dense reading a channels-last conv's
flattened (H, W, C) output gets its kernel's input axis in torch's (C, H, W) order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from weightwatch._optional import require


def _import_keras() -> Any:
    """``keras``; an ImportError naming the extra when it is missing, or KERAS_BACKEND when
    Keras is installed but its backend is not (Keras defaults to tensorflow)."""
    try:
        return require("keras", "keras", "weightwatch.integrations.keras")
    except ImportError as exc:
        cause = exc.__cause__
        if isinstance(cause, ModuleNotFoundError) and cause.name and cause.name.split(".")[0] != "keras":
            backend = os.environ.get("KERAS_BACKEND", "tensorflow")
            raise ImportError(
                f"weightwatch.integrations.keras: Keras is installed but cannot load its backend {backend!r} "
                f"({cause}). Set KERAS_BACKEND to an installed backend: torch, jax or tensorflow."
            ) from cause
        raise


keras = _import_keras()

from weightwatch.flow import Flow  # noqa: E402
from weightwatch.layers import LayerInfo, LayerTensors, finish_discovery  # noqa: E402

from ._keras_flow import read_flow  # noqa: E402

from ._callback import Run, Schedule, WatchingCallback, check_every, scalar_metrics  # noqa: E402

__all__ = ["WeightWatchCallback", "discover_layers", "find_layers", "trace_flow"]

_L = keras.layers
_CONV = (_L.Conv1D, _L.Conv2D, _L.Conv3D)
#: normalisation layers and the attributes of their scale and shift vectors
_NORM = tuple((cls, scale, shift) for cls, scale, shift in (
    (getattr(_L, "LayerNormalization", None), "gamma", "beta"),
    (getattr(_L, "BatchNormalization", None), "gamma", "beta"),
    (getattr(_L, "GroupNormalization", None), "gamma", "beta"),
    (getattr(_L, "RMSNormalization", None), "scale", None),
) if cls is not None)
Layout = Callable[[Any], Any]


# -- reading the backend's arrays in the core's layout --------------------------------------
def _array(x: Any) -> Any:
    """The array behind a Keras variable or tensor: a detached ``torch.Tensor`` on the torch
    backend (a view, on the variable's device), a numpy array on the others."""
    value = x.value if isinstance(x, keras.Variable) else x
    if type(value).__module__.split(".")[0] == "torch":
        return value.detach()
    return np.asarray(keras.ops.convert_to_numpy(value))


def _permute(x: Any, axes: Sequence[int]) -> Any:
    """``x`` with its axes reordered, as a view (torch tensor or numpy array)."""
    return x.permute(*axes) if hasattr(x, "permute") else np.transpose(x, axes)


def _same(x: Any) -> Any:
    return x


def _dense(x: Any) -> Any:
    """(in, out) -> (out, in)."""
    return _permute(x, (1, 0))


def _conv(x: Any) -> Any:
    """(*k, in, out) -> (out, in, *k), for 1, 2 and 3 spatial axes."""
    n = len(x.shape)
    return _permute(x, (n - 1, n - 2, *range(n - 2)))


def _after_channels_last(channels: int) -> Layout:
    """(H*W*C, out), inputs in (H, W, C) order -> (out, C*H*W), inputs in (C, H, W) order.

    The only conversion that copies: the reordered input axis is no view of the kernel.
    """
    def layout(x: Any) -> Any:
        out = x.shape[1]
        return _permute(x.reshape(-1, channels, out), (2, 1, 0)).reshape(out, -1)
    layout.reorders_inputs = True  # type: ignore[attr-defined]  # the data flow reorders its columns alike
    return layout


def _qkv(x: Any) -> Any:
    """(E, heads, head_dim) -> (heads * head_dim, E): node h * head_dim + d is head h's unit d."""
    return _dense(x.reshape(x.shape[0], -1))


def _attention_out(x: Any) -> Any:
    """(heads, head_dim, E_out) -> (E_out, heads * head_dim)."""
    return _dense(x.reshape(-1, x.shape[-1]))


@dataclass(frozen=True)
class _Source:
    """Where a watched layer's values live: attributes of a Keras layer, and how to lay them out.

    The attributes are read at every call (a LoRA-enabled Dense computes its kernel).
    """

    layer: Any
    kernel: str
    layout: Layout = _same
    bias: str | None = "bias"
    owner: Any = None  # the MultiHeadAttention a projection belongs to

    def tensors(self) -> LayerTensors:
        kernel = self.layout(_array(getattr(self.layer, self.kernel)))
        bias = getattr(self.layer, self.bias, None) if self.bias else None
        return LayerTensors(kernel=kernel, bias=_array(bias).reshape(-1) if bias is not None else None)


# -- finding the layers ------------------------------------------------------------------------
def _children(layer: Any) -> list[Any]:
    """Direct sub-layers, in the order Keras tracks them (the order of ``layer.weights``)."""
    return list(layer._flatten_layers(include_self=False, recursive=False))


def _walk(model: Any) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    """Every sub-layer once, depth first, with its ancestors (the model excluded).

    A MultiHeadAttention's own sub-layers are not visited: they are read through it.
    """
    seen: set[int] = set()

    def visit(layer: Any, ancestors: tuple[Any, ...]) -> Iterator[tuple[Any, tuple[Any, ...]]]:
        for child in _children(layer):
            if id(child) in seen:
                continue
            seen.add(id(child))
            yield child, ancestors
            if not isinstance(child, _L.MultiHeadAttention):
                yield from visit(child, ancestors + (child,))

    yield from visit(model, ())


def _is_attention(layer: Any) -> bool:
    return isinstance(layer, _L.MultiHeadAttention) or "Attention" in type(layer).__name__


def _blocks(walked: Sequence[tuple[Any, tuple[Any, ...]]]) -> set[int]:
    """ids of the 'blocks': layers holding exactly one top-level attention layer (a transformer
    layer); a Dense inside one is the block's MLP, as in the PyTorch integration."""
    top = [ancestors for layer, ancestors in walked
           if _is_attention(layer) and not any(_is_attention(a) for a in ancestors)]
    holders = [id(a) for ancestors in top for a in ancestors]
    return {i for i in holders if holders.count(i) == 1}


def _variable(layer: Any, attr: str) -> Any:
    """The variable behind ``layer.<attr>`` (the property computes a tensor on a LoRA-enabled layer)."""
    private = getattr(layer, "_" + attr, None)
    return private if isinstance(private, keras.Variable) else getattr(layer, attr)


def _path(variable: Any, root: str, drop: int = 1) -> str:
    """The layer path of a variable, without the model's name ``root``:
    ``block/attn/query/kernel`` -> ``block.attn`` for drop=2."""
    parts = variable.path.split("/")[:-drop]
    return ".".join(parts[1:] if len(parts) > 1 and parts[0] == root else parts)


def _dense_role(name: str, ancestors: tuple[Any, ...], blocks: set[int]) -> str:
    if any("attn" in part or "attention" in part for part in name.lower().split(".")):
        return "attn"
    if any(id(a) in blocks for a in ancestors):
        return "mlp"
    return "fc"


def _sub(layer: Any, name: str) -> Any:
    """A MultiHeadAttention's projection layer (public property in recent Keras, private before)."""
    return getattr(layer, name, None) or getattr(layer, "_" + name)


def _attention_entries(layer: Any, root: str) -> list[tuple[str, str, int, _Source]]:
    """(name, kind, heads, source) for each projection of a MultiHeadAttention."""
    projections = [("q_proj", "query_dense", _qkv, layer.num_heads), ("k_proj", "key_dense", _qkv, layer.num_heads),
                   ("v_proj", "value_dense", _qkv, layer.num_heads),
                   ("out_proj", "output_dense", _attention_out, 1)]
    base = _path(_variable(_sub(layer, "query_dense"), "kernel"), root, drop=2)
    return [(f"{base}.{proj}", "attention", heads, _Source(_sub(layer, attr), "kernel", layout, owner=layer))
            for proj, attr, layout, heads in projections]


Entry = tuple[str, str, str, int, _Source]  # (name, kind, role, heads, source)


def _norm_entries(layer: Any, root: str) -> list[Entry]:
    for cls, scale, shift in _NORM:
        if isinstance(layer, cls):
            weight = getattr(layer, scale, None)
            if not isinstance(weight, keras.Variable):
                return []  # scale=False: nothing learnable to watch, as in PyTorch
            if shift is None or not isinstance(getattr(layer, shift, None), keras.Variable):
                shift = None  # center=False, or a norm without a shift
            return [(_path(weight, root), "norm", "norm", 1, _Source(layer, scale, _same, shift))]
    return []


def _dense_layout(inputs: int, after_conv: int | None) -> Layout:
    """A plain transpose, or the channel-major reorder when the Dense reads a channels-last
    conv's flattened output (its inputs a multiple of the conv's channels)."""
    if after_conv and inputs > after_conv and inputs % after_conv == 0:
        return _after_channels_last(after_conv)
    return _dense


def _entries(layer: Any, ancestors: tuple[Any, ...], blocks: set[int], after_conv: int | None,
             root: str) -> list[Entry]:
    """The watched layers one Keras layer gives; [] when weightwatch does not watch it.

    ``root`` is the model's name, left out of the layer names."""
    if isinstance(layer, _L.MultiHeadAttention):
        return [(n, kind, "attn", h, s) for n, kind, h, s in _attention_entries(layer, root)]
    if isinstance(layer, _L.Dense):
        kernel = _variable(layer, "kernel")
        name = _path(kernel, root)
        return [(name, "linear", _dense_role(name, ancestors, blocks), 1,
                 _Source(layer, "kernel", _dense_layout(kernel.shape[0], after_conv)))]
    if isinstance(layer, _CONV):
        return [(_path(_variable(layer, "kernel"), root), "conv", "conv", 1, _Source(layer, "kernel", _conv))]
    if isinstance(layer, _L.Embedding):
        return [(_path(_variable(layer, "embeddings"), root), "embed", "embed", 1,
                 _Source(layer, "embeddings", _same, None))]
    return _norm_entries(layer, root)


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``, ... when another layer already has it."""
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{name}_{n}"
    taken.add(out)
    return out


def discover_layers(model: Any, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
                    roles: Mapping[str, str] | None = None) -> list[tuple[LayerInfo, _Source]]:
    """:func:`find_layers`, then ``include`` / ``exclude`` (globs on the names) and ``roles`` overrides."""
    return finish_discovery(find_layers(model), include, exclude, roles)


def trace_flow(model: Any, everything: Sequence[tuple[LayerInfo, _Source]]) -> Flow:
    """The data flow between the layers of ``everything`` (see :mod:`weightwatch.flow`)."""
    return read_flow(keras, model, everything)


def find_layers(model: Any) -> list[tuple[LayerInfo, _Source]]:
    """Find the layers weightwatch understands in a built Keras model, in the order of ``model.weights``.

    Dense, Conv1D/2D/3D, MultiHeadAttention (one layer per projection), Layer-,
    Batch-, Group- and RMSNormalization, Embedding; layers nested in other
    layers or models too. Roles follow the PyTorch integration: the last
    ``fc`` Dense is the ``output``, a Dense in a layer holding one attention
    layer is ``mlp``, one whose path names attention is ``attn``.
    Before include / exclude (see :func:`discover_layers`).
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"discover_layers needs a Keras model or layer, got {type(model).__name__}")
    walked = list(_walk(model))
    blocks = _blocks(walked)
    found: list[tuple[LayerInfo, _Source]] = []
    taken: set[str] = set()
    after_conv: int | None = None  # channels of the channels-last conv a Dense may read flattened
    for layer, ancestors in walked:
        # a Sequential builds its layers inside its own name scope: its name starts their paths
        for name, kind, role, heads, source in _entries(layer, ancestors, blocks, after_conv, model.name):
            tensors = source.tensors()
            found.append((LayerInfo(_unique(name, taken), kind, role, tuple(tensors.kernel.shape), heads,
                                    tensors.bias is not None), source))
        if isinstance(layer, _CONV):
            after_conv = layer.filters if getattr(layer, "data_format", "") == "channels_last" else None
        elif isinstance(layer, (_L.Dense, _L.MultiHeadAttention)):
            after_conv = None
    if not found:
        kinds = sorted({type(layer).__name__ for layer, _ in walked} | {type(model).__name__})
        raise ValueError(
            f"weightwatch found no layer it can watch in {type(model).__name__}: it has {kinds}"
            + ("" if model.built else " (the model is not built yet: call it once, or build it, first)")
            + ". Supported: Dense, Conv1D/2D/3D, MultiHeadAttention, Layer/Batch/Group/RMSNormalization, "
            "Embedding."
        )
    return found


class WeightWatchCallback(WatchingCallback, keras.callbacks.Callback):
    """Record per-layer weight statistics of a Keras model during ``model.fit``.

    Args:
        log_dir: the run directory (one run per directory), created when training begins.
        hparams: hyperparameters shown in TensorBoard's HParams dashboard.
        schedule: which epochs record the weights: a callable ``schedule(epoch) -> bool``
            (epoch counted from 0), an int N (every N epochs), or None (every epoch).
            The epoch's logs (loss, accuracy, val_*, ...) are written at every epoch.
        every_n_batches: also record the weights every N training batches. The
            x axis then counts training batches (across epochs) instead of
            epochs, and an ``epoch`` scalar is written with the epoch's logs.
        include / exclude: glob patterns on layer names.
        roles: ``{"glob": role}`` overrides of the automatic roles.
        bins: histogram bins per layer.
        reference / stop: a reference fitted by ``weightwatch fit``: each weight
            record also logs ``weightwatch/p_optimal`` and ``weightwatch/predicted_accuracy``;
            with ``stop`` (a P(optimal) threshold, True, or a ``StopRule``) ``model.stop_training``
            is set when the rule says so (see :mod:`weightwatch.analysis.live`).
        fold_norm_scale: multiply the outgoing weights by the scale (gamma) of the
            normalisation layers between a layer and its consumers (default: weights only).

    The data flow between the layers (which layer's output each one reads) is taken from the
    model's functional graph, Sequential included; see docs/node-strength.md.

    The run is closed when ``fit`` ends; a later ``fit`` with the same callback
    opens a new event file in the same directory.
    """

    def __init__(self, log_dir: str | Path = "runs/weightwatch", *, hparams: Mapping[str, Any] | None = None,
                 schedule: Schedule | int | None = None, every_n_batches: int | None = None,
                 include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
                 roles: Mapping[str, str] | None = None, bins: int = 64, reference: Any = None,
                 stop: Any = None, fold_norm_scale: bool = False) -> None:
        super().__init__()
        self.fold_norm_scale = bool(fold_norm_scale)
        self._store_options(log_dir, hparams, schedule, include, exclude, roles, bins, reference, stop)
        self.every_n_batches = check_every(every_n_batches, "every_n_batches")
        self._batches = 0  # training batches seen, across epochs and fits

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._needs_run():
            everything = find_layers(self.model)
            found = finish_discovery(everything, self.include, self.exclude, self.roles)
            # the flow is read before include / exclude: leaving a layer out changes no other layer's numbers
            self.run = Run(self.log_dir, found, hparams=self.hparams, bins=self.bins, framework="keras",
                           reference=self.reference, stop=self.stop, flow=trace_flow(self.model, everything),
                           context=everything, fold_norm_scale=self.fold_norm_scale)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._batches += 1
        if self.every_n_batches and self._batches % self.every_n_batches == 0:
            self._require_run().log(self._batches)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        metrics = scalar_metrics(logs)
        step = epoch
        if self.every_n_batches:
            step = self._batches
            metrics["epoch"] = float(epoch)
        self._require_run().log(step, metrics, weights=bool(self.schedule(epoch)))
        if self.run.should_stop:
            self.model.stop_training = True

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.run is not None:
            self.run.close()

    def _require_run(self) -> Run:
        if self.run is None:
            raise RuntimeError("WeightWatchCallback: on_train_begin was not called; pass the callback to model.fit")
        return self.run
