"""Per-layer reductions of a sharded model: each rank reduces its own shard, a few small all-reduces combine them.

Under FSDP each rank holds a piece of every kernel. :func:`reduce_sharded`
computes, on every rank, the same :class:`~weightwatch.ops.raw.RawLayer` the
CPU kernels compute for the whole kernel, without any rank holding a whole
weight tensor:

1. each rank's finite minimum and maximum per layer, one ``min`` all-reduce
   (the maxima negated), so every rank bins over the same edges;
2. per layer the counts, sum, sum of squares, exact histogram counts, the
   signed and absolute sums of every node's (row's) incoming weights, the
   column sums (the consumers' outgoing weights), the bias and the sketch entries each rank holds (zeros where
   it holds none), packed into one float64 vector and summed by one ``sum``
   all-reduce. A row split across ranks gets each rank's part of its sums.

Each rank counts its values over the agreed edges exactly as every other path
does (what ``numpy.histogram`` gives over the edges written to the file), so
counts equal those of the unsharded model exactly; sums agree to float64
rounding.

No framework is imported: ``all_reduce(vector, op)`` is given by the
integration (``op`` is ``"sum"`` or ``"min"``), and shard values are read
through :func:`weightwatch.ops.to_numpy`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .ops import KernelJob, to_numpy
from .ops.raw import RawLayer, bin_edges, histogram_range

AllReduce = Callable[[np.ndarray, str], np.ndarray]

__all__ = ["AllReduce", "ShardPiece", "reduce_sharded"]


@dataclass(frozen=True)
class ShardPiece:
    """One rank's part of a tensor: its entries at flat (C-order) positions
    ``start .. start + len(values) - 1`` of the whole tensor of ``size`` entries.

    Attributes:
        values: 1-D array (numpy, torch, ...), possibly empty.
        start: flat position of ``values[0]`` in the whole tensor.
        size: number of entries of the whole tensor.
    """

    values: Any
    start: int
    size: int


def _host(piece: ShardPiece) -> np.ndarray:
    """The piece's values as a 1-D float32 / float64 host array (the type the CPU kernels bin in)."""
    v = to_numpy(piece.values).reshape(-1)
    return v if v.dtype in (np.float32, np.float64) else v.astype(np.float32)


def _dense(piece: ShardPiece | None, positions: np.ndarray | None = None) -> np.ndarray:
    """A whole-tensor float64 vector holding this rank's entries and zeros elsewhere
    (only at ``positions``, sorted flat positions, when given)."""
    if piece is None:
        return np.zeros(0)
    v = _host(piece).astype(np.float64)
    if positions is None:
        out = np.zeros(piece.size)
        out[piece.start:piece.start + v.size] = v
        return out
    out = np.zeros(positions.size)
    mine = (positions >= piece.start) & (positions < piece.start + v.size)
    out[mine] = v[positions[mine] - piece.start]
    return out


def _local_sums(job: KernelJob, v: np.ndarray, lo: float, hi: float, bins: int) -> tuple[np.ndarray, float, float]:
    """This rank's part of one layer's sums, packed as float64:
    [count, nonfinite, total, total_sq, counts (bins,), row_sum (nodes,), row_abs (nodes,),
    col_sum (job.cols,), sample (len(job.sample),), bias (nodes,) or nothing].

    A row (or a column-sum row block) split across ranks gets each rank's part of its
    sums, and the ``sum`` all-reduce adds them up: column sums as row sums."""
    piece: ShardPiece = job.kernel
    nodes = max(job.nodes, 1)
    fan_in = piece.size // nodes if piece.size else 1
    finite = np.isfinite(v)
    x = v[finite]
    rlo, rhi = histogram_range(lo, hi, math.isfinite(lo))
    # exact counts over the edges every rank agreed on, the edges written to the file (as every backend)
    counts = np.histogram(x.astype(np.float64), bins=bin_edges(rlo, rhi, bins))[0]
    pos = piece.start + np.flatnonzero(finite)
    x64 = x.astype(np.float64)
    rows = pos // fan_in
    parts = [np.array([x.size, v.size - x.size, x64.sum(), np.dot(x64, x64)]), counts.astype(np.float64),
             np.bincount(rows, weights=x64, minlength=nodes), np.bincount(rows, weights=np.abs(x64), minlength=nodes)]
    if job.cols:  # unit index block-major: (row block, input unit of the column)
        block = rows // (nodes // job.col_groups)
        unit = block * job.input_units + (pos % fan_in) // (fan_in // job.input_units)
        parts.append(np.bincount(unit, weights=x64, minlength=job.cols))
    if job.sample is not None:
        parts.append(_dense(piece, job.sample))
    if job.bias is not None:
        parts.append(_dense(job.bias))
    return np.concatenate(parts), rlo, rhi


def reduce_sharded(jobs: Sequence[KernelJob], bins: int, all_reduce: AllReduce) -> list[RawLayer]:
    """The :class:`RawLayer` of each whole kernel, from this rank's pieces; every rank gets the same.

    Args:
        jobs: one per layer, in the same order on every rank; ``kernel`` and
            ``bias`` are :class:`ShardPiece` s (``nodes`` the whole kernel's rows).
        bins: histogram bins.
        all_reduce: ``all_reduce(vector, op) -> vector`` over all ranks, ``op``
            ``"sum"`` or ``"min"``; called twice.
    """
    values = [_host(job.kernel) for job in jobs]
    lo_hi = np.full(2 * len(jobs), np.inf)
    for i, v in enumerate(values):
        x = v[np.isfinite(v)]
        if x.size:
            lo_hi[i], lo_hi[len(jobs) + i] = float(x.min()), -float(x.max())
    lo_hi = all_reduce(lo_hi, "min")
    packed, ranges = [], []
    for i, (job, v) in enumerate(zip(jobs, values)):
        lo, hi = float(lo_hi[i]), -float(lo_hi[len(jobs) + i])
        sums, rlo, rhi = _local_sums(job, v, lo, hi, bins)
        packed.append(sums)
        ranges.append((lo, hi, rlo, rhi))
    total = all_reduce(np.concatenate(packed), "sum")
    out, at = [], 0
    for job, (lo, hi, rlo, rhi) in zip(jobs, ranges):
        nodes = max(job.nodes, 1)
        sizes = [4, bins, nodes, nodes, job.cols, 0 if job.sample is None else job.sample.size,
                 0 if job.bias is None else job.bias.size]
        chunks = np.split(total[at:at + sum(sizes)], np.cumsum(sizes)[:-1])
        at += sum(sizes)
        head, counts, row_sum, row_abs, cols, sample, bias = chunks
        finite = math.isfinite(lo)
        out.append(RawLayer(
            count=int(head[0]), nonfinite=int(head[1]), total=float(head[2]), total_sq=float(head[3]),
            min=lo if finite else math.nan, max=hi if finite else math.nan,
            edges=bin_edges(rlo, rhi, bins), counts=np.rint(counts).astype(np.int64),
            row_sum=row_sum, row_abs=row_abs, col_sum=cols if job.cols else None,
            bias=bias if job.bias is not None else None,
            sample=sample.astype(np.float32) if job.sample is not None else None,
        ))
    return out
