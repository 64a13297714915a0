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

numpy, and one compiled loop for the per-unit sums (:mod:`weightwatch.ops.units`); no framework import.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .layers import LayerInfo
from .ops.units import add_scaled, scatter_add


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
            outgoing weights when asked (see :func:`outgoing_terms`).
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
    _plans: dict[int, tuple[Edge, _EdgePlan]] = field(default_factory=dict, repr=False, compare=False)
    _index: dict[str, list[Edge]] = field(default_factory=dict, repr=False, compare=False)
    _index_key: tuple[int, ...] = field(default=(), repr=False, compare=False)

    def plan(self, edge: Edge, size: int, producer_units: int, nodes: int) -> _EdgePlan:
        """The edge's :class:`_EdgePlan` for consumer input sums of ``size``, made on first use."""
        cached = self._plans.get(id(edge))
        if cached is None or cached[0] is not edge or cached[1].size != size:
            cached = self._plans[id(edge)] = (edge, _plan(edge, size, producer_units, nodes))
        return cached[1]

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


def _constant_runs(index: np.ndarray) -> int:
    """The longest run length L such that ``index`` is ``index[::L]`` with each entry repeated L
    times (a norm's channel index over a conv consumer's (C_in, *spatial) units: L = positions)."""
    n = index.size
    if n == 0:
        return 1
    starts = np.flatnonzero(np.diff(index)) + 1
    run = int(starts[0]) if starts.size else n
    if n % run or np.any(index.reshape(-1, run) != index[::run, None]):
        return 1
    return run


def _runs(index: np.ndarray) -> tuple[np.ndarray, int]:
    """``(index[::run], run)``, ``index`` compressed by :func:`_constant_runs`."""
    run = _constant_runs(index)
    return np.ascontiguousarray(index[::run]), run


@dataclass(frozen=True)
class _EdgePlan:
    """What one :class:`Edge` does to its consumer's input sums, worked out once: the index maps
    are fixed, so each log pays only for the arithmetic (see :func:`outgoing_terms`).

    The edge's M kept units (those that read this producer) each take the consumer input sum
    ``col`` and add it, times the norms' scales, to producer unit ``read``.

    Attributes:
        size: the consumer input sums it was planned for (re-planned if that changes).
        times: how many tokens read each unit alike (identical token rows folded into one).
        col: (M,) the consumer input sum of each kept unit; None for the identity.
        read: (M,) the producer unit (channel, when pooled) of each kept unit.
        col_norms: (norm name, scale index per run of ``run`` consumer input sums, ``run``): the
            norms whose scale depends only on the consumer input (every case but an odd per-token one).
        unit_norms: the same, indexed per kept unit.
        identity: kept unit i is consumer input i and reads producer unit i, for every one.
        pooled_counts: when pooled, how many kept units read each producer channel (at least 1).
    """

    size: int
    times: float
    col: np.ndarray | None
    read: np.ndarray
    col_norms: tuple[tuple[str, np.ndarray, int], ...]
    unit_norms: tuple[tuple[str, np.ndarray, int], ...]
    identity: bool
    pooled_counts: np.ndarray | None


def _same_rows(a: np.ndarray, tile: int) -> bool:
    rows = a.reshape(tile, -1)
    return bool(np.array_equal(rows, np.broadcast_to(rows[0], rows.shape)))


def _plan(edge: Edge, size: int, producer_units: int, nodes: int) -> _EdgePlan:
    read = edge.units.reshape(-1)
    norms = [(name, index.reshape(-1)) for name, index in edge.norms]
    tile = max(read.size // max(size, 1), 1)
    times = 1.0
    if tile > 1 and all(_same_rows(a, tile) for a in [read, *(i for _, i in norms)]):
        # every token reads the same units through the same norm entries: one row, counted tile times
        read, norms, times, tile = read[:size], [(n, i[:size]) for n, i in norms], float(tile), 1
    per_col = [tile == 1 or _same_rows(i, tile) for _, i in norms]
    col_norms = tuple((n, *_runs(i[:size])) for (n, i), c in zip(norms, per_col) if c)
    kept = np.flatnonzero(read >= 0)
    everything = kept.size == read.size
    col = None if tile == 1 and everything else np.ascontiguousarray(kept % size)
    read = np.ascontiguousarray(read[kept])
    unit_norms = tuple((n, *_runs(i[kept])) for (n, i), c in zip(norms, per_col) if not c)
    if col is not None and not unit_norms:  # in producer-unit order: the scatter writes memory in sequence
        order = np.argsort(read, kind="stable")
        read, col = read[order], col[order]
    identity = (col is None and not edge.pooled and not unit_norms and read.size == producer_units
                and np.array_equal(read, np.arange(producer_units)))
    counts = None
    if edge.pooled:  # the folded token rows count as often as they were read
        counts = np.maximum(np.bincount(read, minlength=nodes)[:nodes] * times, 1.0)
    return _EdgePlan(size, times, col, read, col_norms, unit_norms, bool(identity), counts)


def _scaled(weights: np.ndarray, norms: Sequence[tuple[str, np.ndarray, int]],
            scales: Mapping[str, np.ndarray]) -> np.ndarray:
    """``weights`` (a new array when any norm applies) times each norm's scale, per run of units."""
    for norm, index, run in norms:
        weights = (weights.reshape(-1, run) * _factor(scales[norm], index)[:, None]).reshape(-1)
    return weights


def _factor(scale: np.ndarray, index: np.ndarray) -> np.ndarray:
    """A norm's scale at each ``index`` (float64), 1 where the index is -1 (the norm does not apply)."""
    return np.where(index >= 0, np.asarray(scale, dtype=np.float64)[np.maximum(index, 0)], 1.0)


def outgoing_terms(flow: Flow, producer: LayerInfo, sums: Mapping[str, np.ndarray],
                   scales: Mapping[str, np.ndarray], fold_norm_scale: bool) -> np.ndarray | None:
    """The outgoing term of each unit of ``producer``, summed over its consumers.

    Args:
        sums: consumer name -> :func:`consumer_input_sums` of it.
        scales: norm layer name -> its scale vector (gamma), used when ``fold_norm_scale``.
    Returns:
        (nodes * P,) in unit order (``c * P + p``), or None when nothing consumes it.
    """
    edges = flow.consumers(producer.name)
    if not edges:
        return None
    positions = flow.positions.get(producer.name, 1)
    units = producer.nodes * positions
    total = np.empty(units)
    first = True  # the first edge writes total, the others add to it
    for edge in edges:
        weights = np.asarray(sums[edge.consumer], dtype=np.float64).reshape(-1)
        plan = flow.plan(edge, weights.size, units, producer.nodes)
        col_norms = plan.col_norms if fold_norm_scale else ()
        if plan.times != 1.0:
            weights = weights * plan.times
        if plan.identity:  # the common case: one fused pass, the last norm's scale applied on the way
            weights = _scaled(weights, col_norms[:-1], scales)
            norm, index, run = col_norms[-1] if col_norms else (None, None, weights.size)
            factor = _factor(scales[norm], index) if norm is not None else np.ones(1)
            add_scaled(total, np.ascontiguousarray(weights), factor, run, first)
        else:
            weights = _scaled(weights, col_norms, scales)
            if fold_norm_scale and plan.unit_norms:  # rare: a per-token norm index that varies by token
                weights = _scaled(weights[plan.col] if plan.col is not None else weights, plan.unit_norms, scales)
                col = None
            else:
                col = plan.col
            if first:
                total[:] = 0.0
            if edge.pooled:
                picked = weights[col] if col is not None else weights
                per_channel = np.bincount(plan.read, weights=picked, minlength=producer.nodes)[:producer.nodes]
                total += np.repeat(per_channel / plan.pooled_counts, positions)
            else:
                scatter_add(total, plan.read, col, np.ascontiguousarray(weights))
        first = False
    return total
