"""The data flow of a Keras model, read from its functional graph (see :mod:`weightwatch.flow`).

A Sequential model is read through the functional graph Keras builds for it.
As in the PyTorch tracer, every tensor carrying a watched layer's output gets
a twin numpy *index array* (one sample, no batch axis) naming the producer
unit of each element; Flatten, Reshape, Permute, Concatenate, Add and the
activations move it as they move the data; a Dense or a convolution reading
it records an :class:`~weightwatch.flow.Edge`. Keras convolutions are
channels-last: a unit is still ``c * P + p`` (PyTorch's order), and a conv
consumer's index is turned to (C, *spatial) before it is recorded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from weightwatch.flow import ConvGeometry, Edge, Flow, fallback, warn_lost
from weightwatch.layers import LayerInfo

Piece = tuple[str, np.ndarray, bool, tuple[tuple[str, np.ndarray], ...]]  # producer, index, pooled, norms


def _sample_shape(tensor: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in tensor.shape[1:])


def _units(shape: tuple[int, ...], dims: list[int]) -> np.ndarray:
    """An index array of ``shape`` numbering the elements of ``dims`` (listed major to minor)."""
    sizes = [shape[d] for d in dims]
    idx = np.arange(math.prod(sizes)).reshape(sizes).transpose(np.argsort(dims))  # axes back in array order
    view = [shape[d] if d in dims else 1 for d in range(len(shape))]
    return np.broadcast_to(idx.reshape(view), shape).copy()


def _same_padding(size: int, k: int, s: int, d: int) -> int:
    """Keras / TensorFlow 'same': the total padding, the smaller half before."""
    out = -(-size // s)
    return max((out - 1) * s + (k - 1) * d + 1 - size, 0) // 2


class KerasTracer:
    """Walks a built functional graph once and collects the edges between watched layers.

    Args:
        names: id(Keras layer) -> the layer name (an attention layer: its prefix).
        dense_layouts: id(Dense) -> how its kernel's input axis is reordered for the core.
    """

    def __init__(self, keras: Any, names: Mapping[int, str], dense_layouts: Mapping[int, Callable]) -> None:
        self.keras, self.names, self.layouts = keras, dict(names), dict(dense_layouts)
        self.pieces: dict[int, list[Piece]] = {}
        self.flow = Flow(method="keras")
        self.lost: set[str] = set()

    def run(self, model: Any) -> Flow:
        graph = getattr(model, "_functional", None) or model
        if not hasattr(graph, "_nodes_by_depth"):
            raise TypeError(f"{type(model).__name__} has no functional graph (a subclassed model)")
        for depth in sorted(graph._nodes_by_depth, reverse=True):
            for node in graph._nodes_by_depth[depth]:
                self._node(node)
        self.flow.lost = sorted(self.lost)
        return self.flow

    # -- one call of one layer ---------------------------------------------------------------------
    def _node(self, node: Any) -> None:
        layer, L = node.operation, self.keras.layers
        ins = list(node.input_tensors)
        outs = list(node.output_tensors)
        got = [self.pieces.get(id(t), []) for t in ins]
        if not outs:
            return
        out = outs[0]
        shape = _sample_shape(out)
        if isinstance(layer, L.MultiHeadAttention):
            self._attention(layer, node, out)
        elif isinstance(layer, L.Dense):
            self._consume(self.names.get(id(layer)), layer, got[0] if got else [], conv=False)
            if id(layer) in self.names:
                self.pieces[id(out)] = [(self.names[id(layer)], _units(shape, [len(shape) - 1]), False, ())]
        elif isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
            name = self.names.get(id(layer))
            self._consume(name, layer, got[0] if got else [], conv=True, spatial=_sample_shape(ins[0])[:-1],
                          out_spatial=shape[:-1])
            if name is not None:
                n = len(shape) - 1
                self.flow.positions[name] = math.prod(shape[:-1])
                self.pieces[id(out)] = [(name, _units(shape, [n, *range(n)]), False, ())]
        elif not any(got):
            return
        elif id(layer) in self.names:  # a watched normalisation layer
            axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
            dims = [a % (len(shape) + 1) - 1 for a in axis]
            gamma = _units(shape, dims)
            self.pieces[id(out)] = [(p, i, pooled, norms + ((self.names[id(layer)], gamma),))
                                    for p, i, pooled, norms in got[0]]
        elif isinstance(layer, (L.Flatten, L.Reshape)):
            self.pieces[id(out)] = [(p, i.reshape(shape), pooled, tuple((n, g.reshape(shape)) for n, g in norms))
                                    for p, i, pooled, norms in got[0]]
        elif isinstance(layer, L.Permute):
            axes = [d - 1 for d in layer.dims]
            self.pieces[id(out)] = [(p, i.transpose(axes), pooled, tuple((n, g.transpose(axes)) for n, g in norms))
                                    for p, i, pooled, norms in got[0]]
        elif isinstance(layer, L.Concatenate):
            self._concatenate(layer, ins, got, out)
        elif "Pooling" in type(layer).__name__:
            self.pieces[id(out)] = self._pool(got[0], shape)
        elif all(_sample_shape(t) == shape or not g for t, g in zip(ins, got)):  # activations, adds, dropout
            self.pieces[id(out)] = [piece for g in got for piece in g]
        else:
            self.lost.add(type(layer).__name__)

    def _consume(self, name: str | None, layer: Any, pieces: list[Piece], conv: bool,
                 spatial: tuple[int, ...] = (), out_spatial: tuple[int, ...] = ()) -> None:
        if name is None:
            if pieces:
                self.lost.add(layer.name)
            return
        if conv:
            n = len(spatial)
            k, s = tuple(layer.kernel_size), tuple(layer.strides)
            d = tuple(layer.dilation_rate) if isinstance(layer.dilation_rate, (tuple, list)) else \
                (layer.dilation_rate,) * n
            before = tuple(_same_padding(spatial[a], k[a], s[a], d[a]) if layer.padding == "same" else 0
                           for a in range(n))
            self.flow.geometry[name] = ConvGeometry(s, d, before, int(getattr(layer, "groups", 1)), spatial,
                                                    out_spatial)
        for producer, index, pooled, norms in pieces:
            if conv:  # (*S, C) -> (C, *S), the core's layout
                order = [index.ndim - 1, *range(index.ndim - 1)]
                units, gammas = index.transpose(order), tuple((g_name, g.transpose(order)) for g_name, g in norms)
            else:
                # one row per token; all kept when tokens read different units (column f counts per row)
                rows = index.reshape(-1, index.shape[-1])
                every = not (rows == rows[0]).all()
                layout = self.layouts.get(id(layer))

                def columns(arr: np.ndarray) -> np.ndarray:
                    flat = arr.reshape(-1, arr.shape[-1])
                    return np.stack([self._reorder(r, layout) for r in flat]) if every else self._reorder(flat[0], layout)
                units = columns(index)
                gammas = tuple((g_name, columns(g)) for g_name, g in norms)
            self.flow.edges.append(Edge(producer, name, np.ascontiguousarray(units), pooled, gammas))

    @staticmethod
    def _reorder(columns: np.ndarray, layout: Callable | None) -> np.ndarray:
        """Input columns in the order the core reads the kernel (the Dense layout's reorder)."""
        return columns if layout is None else np.asarray(layout(columns[:, None]))[0]

    def _attention(self, layer: Any, node: Any, out: Any) -> None:
        base = self.names.get(id(layer))
        if base is None:
            return
        args, kwargs = node.arguments.args, node.arguments.kwargs
        query = args[0] if args else kwargs.get("query")
        value = args[1] if len(args) > 1 else kwargs.get("value")
        key = args[2] if len(args) > 2 else kwargs.get("key", value)
        key = value if key is None else key
        for tensor, proj in ((query, "q_proj"), (key, "k_proj"), (value, "v_proj")):
            self._consume(f"{base}.{proj}", layer, self.pieces.get(id(tensor), []), conv=False)
        width = layer.num_heads * (layer._value_dim or layer._key_dim)
        self.flow.edges.append(Edge(f"{base}.v_proj", f"{base}.out_proj", np.arange(width)))
        shape = _sample_shape(out)
        self.pieces[id(out)] = [(f"{base}.out_proj", _units(shape, [len(shape) - 1]), False, ())]

    def _concatenate(self, layer: Any, ins: list, got: list[list[Piece]], out: Any) -> None:
        axis = layer.axis if layer.axis < 0 else layer.axis - 1
        pieces = []
        for k, g in enumerate(got):
            for producer, index, pooled, norms in g:
                def cat(arr: np.ndarray) -> np.ndarray:
                    return np.concatenate([arr if j == k else np.full(_sample_shape(t), -1) for j, t in enumerate(ins)],
                                          axis=axis)
                pieces.append((producer, cat(index), pooled, tuple((n, cat(gm)) for n, gm in norms)))
        self.pieces[id(out)] = pieces

    def _pool(self, pieces: list[Piece], shape: tuple[int, ...]) -> list[Piece]:
        """Pooling mixes positions: each unit becomes its channel (channels last)."""
        kept = []
        for producer, index, pooled, _ in pieces:
            channels = index if pooled else index // self.flow.positions.get(producer, 1)
            flat = channels.reshape(-1, channels.shape[-1])
            if (flat == flat[0]).all() and shape[-1] == flat.shape[1]:
                kept.append((producer, np.broadcast_to(flat[0], shape).copy(), True, ()))
            else:
                self.lost.add("pooling")
        return kept


def read_flow(keras: Any, model: Any, everything: Sequence[tuple[LayerInfo, Any]]) -> Flow:
    """The model's flow from its functional graph; registration order, with one warning naming the
    model, where it has none (a subclassed model).

    ``everything``: (info, source) of every layer found; a source's ``layer`` is
    the Keras layer, ``owner`` the attention layer of a projection, and a
    ``layout`` marked ``reorders_inputs`` reorders a Dense's input columns.
    """
    names: dict[int, str] = {}
    layouts: dict[int, Callable] = {}
    for info, source in everything:
        if info.kind == "attention":
            if info.name.endswith(".q_proj") and source.owner is not None:
                names[id(source.owner)] = info.name[: -len(".q_proj")]
            continue
        names.setdefault(id(source.layer), info.name)
        if getattr(source.layout, "reorders_inputs", False):
            layouts[id(source.layer)] = source.layout
    try:
        return warn_lost(type(model).__name__, KerasTracer(keras, names, layouts).run(model))
    except (TypeError, AttributeError, ValueError) as exc:
        return fallback(type(model).__name__, exc, [info for info, _ in everything])
