"""Which layer's output feeds which layer's input, and the complex-network outgoing term.

The signed (CNT) node strength of La Malfa et al. 2021 adds to each node the
signed sum of the weights that leave it. Which weights those are is a matter
of the network's data flow, found by the integrations (torch.fx or forward
hooks for PyTorch, the functional graph for Keras) and handed here as a
:class:`Flow`: a list of :class:`Edge`, each saying, for every input unit of
a consumer layer, which output *unit* of a producer layer it reads.

Units. A linear layer's units are its output neurons ``0 .. out - 1``. A
convolution's units are its (channel, position) outputs, numbered
``c * P + p`` with ``p`` the row-major index over its output's spatial axes
(PyTorch's C, H, W flatten order) and ``P`` the number of positions; its
*nodes* are the channels (see :mod:`weightwatch.layers`).

Consumer input units. A linear consumer has ``in`` of them, one per column of
its (out, in) kernel. A convolution consumer has ``C_in * S`` of them (its
input's channels times spatial positions); the weight leaving input unit
(c, y) is the sum of every kernel weight that touches it in the unrolled
convolution, which depends on stride, padding, dilation and groups
(:func:`conv_input_sums`, the graph La Malfa et al.'s ``Convolution.py``
builds by loops).

Several consumers add up: a unit read by two layers (a residual stream, a
projection shared by two heads) gets the sum of both outgoing terms.

The outgoing terms themselves are summed in :mod:`weightwatch.outgoing`. Pure numpy; no framework import.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .layers import LayerInfo


@dataclass(frozen=True)
class ConvGeometry:
    """How a convolution consumer reads its input, per spatial axis.

    Attributes:
        stride / dilation: per spatial axis.
        pad_before: zero rows added before the first input position (the
            padding after follows from ``output_spatial``).
        groups: channel groups; input channel c belongs to group c // (C_in / groups).
        input_spatial / output_spatial: the spatial shapes it reads and writes.
    """

    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad_before: tuple[int, ...]
    groups: int
    input_spatial: tuple[int, ...]
    output_spatial: tuple[int, ...]


@dataclass(frozen=True)
class Edge:
    """``producer``'s output reaches ``consumer``'s input.

    Attributes:
        units: int array shaped like the consumer's input units ((in,) for a
            linear consumer, (C_in, *input_spatial) for a convolution, (C_in,)
            for a convolution whose geometry is unknown): the producer unit
            each one reads, or -1 for those fed by something else. A linear
            consumer applied to tokens that read different units (a conv map
            read as a sequence) has (tokens, in): column f counts once per token.
        pooled: the path went through a pooling, which mixes positions:
            ``units`` then holds producer *channels*, and every position of a
            channel gets the mean of the outgoing weights of that channel.
        norms: the normalisation layers passed on the way, as (norm layer
            name, index into its scale vector for each consumer input unit,
            -1 where it does not apply); their scale is folded into the
            outgoing weights when asked (see :func:`weightwatch.outgoing.outgoing_terms`).
    """

    producer: str
    consumer: str
    units: np.ndarray
    pooled: bool = False
    norms: tuple[tuple[str, np.ndarray], ...] = ()


@dataclass
class Flow:
    """The data flow between a model's layers, found once before include / exclude.

    Attributes:
        edges: every producer -> consumer link.
        positions: output positions P of each convolution (1 when unknown).
        geometry: how each convolution consumer reads its input.
        method: how it was found: ``fx``, ``hooks``, ``keras``, ``order``.
        lost: operations where some units could not be followed (their
            producers get no outgoing term through that path).
    """

    edges: list[Edge] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)
    geometry: dict[str, ConvGeometry] = field(default_factory=dict)
    method: str = "order"
    lost: list[str] = field(default_factory=list)
    # per-edge plans of weightwatch.outgoing, made on first use
    _plans: dict[int, tuple[Edge, Any]] = field(default_factory=dict, repr=False, compare=False)
    _index: dict[str, list[Edge]] = field(default_factory=dict, repr=False, compare=False)
    _index_key: tuple[int, ...] = field(default=(), repr=False, compare=False)

    def consumers(self, producer: str) -> list[Edge]:
        """The edges leaving ``producer``, in the order found (indexed once per change of :attr:`edges`:
        a transformer's residual stream has hundreds, asked for by every layer at every log)."""
        edges = self.edges
        key = (id(edges), len(edges), id(edges[0]) if edges else 0, id(edges[-1]) if edges else 0)
        if self._index_key != key:
            index: dict[str, list[Edge]] = {}
            for e in edges:
                index.setdefault(e.producer, []).append(e)
            self._index, self._index_key = index, key
        return list(self._index.get(producer, ()))

    def pairs(self) -> dict[str, list[str]]:
        """producer -> its consumers, in the order found."""
        out: dict[str, list[str]] = {}
        for e in self.edges:
            if e.consumer not in out.setdefault(e.producer, []):
                out[e.producer].append(e.consumer)
        return out

    def needed(self) -> set[str]:
        """Layers whose current values the outgoing terms read (consumers and norms)."""
        return {e.consumer for e in self.edges} | {n for e in self.edges for n, _ in e.norms}


def order_flow(layers: Sequence[LayerInfo]) -> Flow:
    """The fallback when the data flow cannot be traced: registration order.

    Among ``linear`` and ``conv`` layers, each feeds the next one when the
    shapes agree (its nodes equal the next one's inputs, or a conv feeds a
    linear whose inputs are a multiple of its channels, through a flatten in
    C, H, W order). A convolution consumer is read per channel (its geometry
    is unknown). Attention projections are not chained.
    """
    flow = Flow(method="order")
    chain = [layer for layer in layers if layer.kind in ("linear", "conv")]
    for prev, nxt in zip(chain, chain[1:]):
        if nxt.inputs == prev.nodes:
            flow.edges.append(Edge(prev.name, nxt.name, np.arange(prev.nodes), pooled=prev.kind == "conv"))
        elif prev.kind == "conv" and nxt.kind == "linear" and nxt.inputs % prev.nodes == 0:
            flow.positions[prev.name] = nxt.inputs // prev.nodes
            flow.edges.append(Edge(prev.name, nxt.name, np.arange(nxt.inputs)))
    return flow


def fallback(model: str, reason: BaseException, layers: Sequence[LayerInfo]) -> Flow:
    """:func:`order_flow`, with the one warning that says why, naming the model."""
    warnings.warn(f"weightwatch: could not trace the data flow of {model} ({type(reason).__name__}: {reason}); "
                  "the complex-network strength pairs layers in registration order instead "
                  "(see docs/node-strength.md)", RuntimeWarning, stacklevel=3)
    return order_flow(layers)


def warn_lost(model: str, flow: Flow) -> Flow:
    """One warning naming the operations the tracer could not follow, if any; returns ``flow``."""
    if flow.lost:
        warnings.warn(f"weightwatch: in {model}, the data flow could not be followed through {flow.lost}: "
                      "layers feeding them get no outgoing term through that path", RuntimeWarning, stacklevel=3)
    return flow


# -- the weights leaving each input unit of a consumer ----------------------------------------
def kernel_rows(info: LayerInfo) -> int:
    """Rows of the (rows, fan_in) view every reduction takes of the layer's kernel:
    its leading dimension, 1 for a vector (a norm's scale)."""
    return info.shape[0] if len(info.shape) > 1 else 1


def column_request(info: LayerInfo, geometry: ConvGeometry | None) -> tuple[int, int]:
    """``(input_units, col_groups)`` to ask of the layer's reduction (:class:`weightwatch.ops.KernelJob`)
    so that its ``col_sum`` holds what :func:`consumer_input_sums` reads: one signed sum per column of
    the (rows, fan_in) view, per channel group for a grouped convolution (each group's output
    channels read only that group's input channels)."""
    groups = geometry.groups if info.kind == "conv" and geometry is not None else 1
    return info.size // kernel_rows(info), groups


def consumer_input_sums(info: LayerInfo, col_sum: np.ndarray, geometry: ConvGeometry | None) -> np.ndarray:
    """The signed outgoing weight of each input unit of ``info``, shaped like its edges' ``units``.

    Args:
        col_sum: the layer's ``RawLayer.col_sum`` as :func:`column_request` asks for it:
            (fan_in,) for a linear layer ((in,); non-finite weights left out, as in every
            statistic) or a norm's scale vector; (groups * C_in / groups * prod(k),) for a
            convolution, group-major, which is (C_in, *k) in the kernel's input-channel order.
    Returns:
        (in,) for a linear layer (a per-token consumer's edge repeats it per token); for a
        convolution, :func:`conv_input_sums` of the (C_in, *k) sums.
    """
    sums = np.asarray(col_sum, dtype=np.float64)
    if info.kind != "conv":
        return sums
    groups = geometry.groups if geometry is not None else 1
    return conv_input_sums(sums.reshape(info.shape[1] * groups, *info.shape[2:]), geometry)


def _hits(k: int, geometry: ConvGeometry, axis: int) -> np.ndarray:
    """(k, S) 0/1: whether kernel offset i touches input position y along ``axis``."""
    size, out = geometry.input_spatial[axis], geometry.output_spatial[axis]
    s, d, p = geometry.stride[axis], geometry.dilation[axis], geometry.pad_before[axis]
    hits = np.zeros((k, size))
    for i in range(k):
        y = np.arange(out) * s - p + i * d
        hits[i, y[(y >= 0) & (y < size)]] = 1.0
    return hits


def conv_input_sums(sums: np.ndarray, geometry: ConvGeometry | None) -> np.ndarray:
    """The weight leaving each input unit of a convolution in its unrolled graph.

    Args:
        sums: (C_in, *k): per input channel and kernel offset, the signed sum over output channels.
    Returns:
        (C_in, *input_spatial): for input unit (c, y), the sum of the kernel
        weights of every output (all channels, all positions) that reads it,
        i.e. ``conv_transpose(ones(output), W)``. Without geometry: (C_in,),
        the whole kernel summed per input channel.
    """
    if geometry is None:
        return sums.reshape(sums.shape[0], -1).sum(axis=1)
    out = sums
    for axis in range(sums.ndim - 1):
        # contract the kernel axis after C_in with its (k, S) hits: the spatial axis comes out last, so
        # after every axis the result is (C_in, *input_spatial), C-contiguous (BLAS, no einsum transposes)
        out = np.tensordot(out, _hits(sums.shape[1 + axis], geometry, axis), axes=([1], [0]))
    return np.ascontiguousarray(out)
