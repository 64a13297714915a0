"""The complex-network outgoing term of each producer unit, from its consumers' input sums.

The edges of a :class:`~weightwatch.flow.Flow` are fixed once the data flow is
traced, so what each one does is worked out on first use (:class:`_EdgePlan`:
which consumer input each unit reads, the norms' scale indices compressed to
runs, token rows that read alike folded into one) and each log pays only for
the arithmetic, in compiled loops (:mod:`weightwatch.ops.units`).
:class:`OutgoingTerms` hands the terms out one producer at a time, so a log
never holds every unit of a large convolutional network at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .flow import Edge, Flow, consumer_input_sums
from .layers import LayerInfo
from .ops.units import add_scaled, scatter_add


def plan_for(flow: Flow, edge: Edge, size: int, producer_units: int, nodes: int) -> _EdgePlan:
    """The edge's :class:`_EdgePlan` for consumer input sums of ``size``, made on first use (kept in ``flow``)."""
    cached = flow._plans.get(id(edge))
    if cached is None or cached[0] is not edge or cached[1].size != size:
        cached = flow._plans[id(edge)] = (edge, _plan(edge, size, producer_units, nodes))
    return cached[1]


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
        pooled_runs: when pooled, ``read`` compressed to runs (channel of each run, run length): a
            conv map pooled per channel reads each channel over a run of positions.
    """

    size: int
    times: float
    col: np.ndarray | None
    read: np.ndarray
    col_norms: tuple[tuple[str, np.ndarray, int], ...]
    unit_norms: tuple[tuple[str, np.ndarray, int], ...]
    identity: bool
    pooled_counts: np.ndarray | None
    pooled_runs: tuple[np.ndarray, int] | None = None


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
    runs = _runs(read) if edge.pooled else None
    return _EdgePlan(size, times, col, read, col_norms, unit_norms, bool(identity), counts, runs)


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
    pooled = np.zeros(producer.nodes)  # the pooled edges' channel means, spread over the positions once
    for edge in edges:
        weights = np.asarray(sums[edge.consumer], dtype=np.float64).reshape(-1)
        plan = plan_for(flow, edge, weights.size, units, producer.nodes)
        col_norms = plan.col_norms if fold_norm_scale else ()
        if plan.times != 1.0:
            weights = weights * plan.times
        if plan.identity:  # the common case: one fused pass, the last norm's scale applied on the way
            weights = _scaled(weights, col_norms[:-1], scales)
            norm, index, run = col_norms[-1] if col_norms else (None, None, weights.size)
            factor = _factor(scales[norm], index) if norm is not None else np.ones(1)
            add_scaled(total, np.ascontiguousarray(weights), factor, run, first)
            first = False
            continue
        weights = _scaled(weights, col_norms, scales)
        col = plan.col
        if fold_norm_scale and plan.unit_norms:  # rare: a per-token norm index that varies by token
            weights, col = _scaled(weights[col] if col is not None else weights, plan.unit_norms, scales), None
        if edge.pooled:
            picked = weights[col] if col is not None else weights
            channel, run = plan.pooled_runs
            per_run = picked.reshape(-1, run).sum(axis=1) if run > 1 else picked
            pooled += np.bincount(channel, weights=per_run, minlength=producer.nodes)[:producer.nodes] / plan.pooled_counts
            continue
        if first:
            total[:] = 0.0
            first = False
        scatter_add(total, plan.read, col, np.ascontiguousarray(weights))
    by_node = total.reshape(producer.nodes, positions)
    if first:  # only pooled edges
        by_node[:] = pooled[:, None]
    elif pooled.any():
        by_node += pooled[:, None]  # in place, one pass: no (nodes * P,) temporary
    return total


class OutgoingTerms(Mapping):
    """One log's outgoing terms, ``key -> (nodes * P,)`` (:func:`outgoing_terms`), each computed when
    it is asked for rather than all at once: a resnet's per-unit terms at 224x224 add up to more
    memory than its weights. A consumer's input sums (:func:`consumer_input_sums`) are computed
    on first use and released once every producer reading them has had its term; ask for each
    key once (as :func:`weightwatch.stats.summarize` does; asking again recomputes it).

    Args:
        producers: key -> the producer layer (every one has consumers whose sums are in ``columns``).
        columns: layer name -> its ``RawLayer.col_sum`` (consumers, and norms when folded).
        infos: layer name -> its :class:`LayerInfo` (the consumers').
        scales: norm name -> its scale vector, for ``fold_norm_scale``.
    """

    def __init__(self, flow: Flow, producers: Mapping[int, LayerInfo], columns: Mapping[str, np.ndarray],
                 infos: Mapping[str, LayerInfo], scales: Mapping[str, np.ndarray], fold_norm_scale: bool):
        self.flow, self.producers, self.columns, self.infos = flow, dict(producers), columns, infos
        self.scales, self.fold = scales, fold_norm_scale
        self._sums: dict[str, np.ndarray] = {}
        self._readers: dict[str, int] = {}
        for layer in self.producers.values():
            for consumer in {e.consumer for e in flow.consumers(layer.name)}:  # as __getitem__ counts them off
                self._readers[consumer] = self._readers.get(consumer, 0) + 1

    def __getitem__(self, key: int) -> np.ndarray:
        layer = self.producers[key]
        edges = self.flow.consumers(layer.name)
        sums = {e.consumer: self._input_sums(e.consumer) for e in edges}
        term = outgoing_terms(self.flow, layer, sums, self.scales, self.fold)
        for consumer in {e.consumer for e in edges}:  # once per producer, however many edges it has
            self._readers[consumer] -= 1
            if self._readers[consumer] <= 0:
                self._sums.pop(consumer, None)
        return term

    def _input_sums(self, name: str) -> np.ndarray:
        if name not in self._sums:
            self._sums[name] = consumer_input_sums(self.infos[name], self.columns[name], self.flow.geometry.get(name))
        return self._sums[name]

    def __iter__(self):
        return iter(self.producers)

    def __len__(self) -> int:
        return len(self.producers)

    def renumbered(self, keys: Mapping[int, int]) -> OutgoingTerms:
        """The same terms under new keys (``old -> new``; keys not in it are dropped)."""
        return OutgoingTerms(self.flow, {keys[k]: v for k, v in self.producers.items() if k in keys},
                             self.columns, self.infos, self.scales, self.fold)
