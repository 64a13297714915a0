"""Fused CPU kernels (numba) for every per-layer reduction.

Two parallel passes over a kernel viewed as a (nodes, fan_in) matrix:

1. the finite minimum and maximum and the number of non-finite entries;
2. in one sweep, per node the signed and absolute row sums, the total sum and
   sum of squares (float64 accumulators), optional column sums, and the exact
   histogram over [min, max].

Doing everything in one sweep matters: on a 2-core CPU the separate torch ops
(sum, abs-sum, dot, bin index, bincount) cost about 16 reads of the weights,
this costs about 5 (see benchmarks/RESULTS.md). Numba compiles on first use
and caches the machine code on disk.
"""

from __future__ import annotations

import math

import numpy as np

from .raw import RawLayer, bin_edges, bin_scale, histogram_range

_kernels: tuple | None = None
# Interleaved sub-histograms: consecutive entries often land in the same bin,
# and incrementing one counter back to back stalls on the store.
_LANES = 4


def _compile():
    global _kernels
    if _kernels is not None:
        return _kernels
    import numba
    from numba import njit, prange

    @njit(parallel=True, cache=True, nogil=True)
    def range_pass(w, nblocks):  # pragma: no cover - compiled
        rows, cols = w.shape
        per = (rows + nblocks - 1) // nblocks
        mins = np.full(nblocks, np.inf)
        maxs = np.full(nblocks, -np.inf)
        bad = np.zeros(nblocks, np.int64)
        for b in prange(nblocks):
            lo = np.inf
            hi = -np.inf
            nb = 0
            for i in range(b * per, min(rows, (b + 1) * per)):
                for j in range(cols):
                    x = w[i, j]
                    if math.isfinite(x):
                        if x < lo:
                            lo = x
                        if x > hi:
                            hi = x
                    else:
                        nb += 1
            mins[b] = lo
            maxs[b] = hi
            bad[b] = nb
        return mins.min(), maxs.max(), bad.sum()

    @njit(parallel=True, cache=True, nogil=True)
    def sweep(w, lo, scale, bins, nblocks, want_cols):  # pragma: no cover - compiled
        rows, cols = w.shape
        per = (rows + nblocks - 1) // nblocks
        row_sum = np.zeros(rows)
        row_abs = np.zeros(rows)
        sums = np.zeros(nblocks)
        sqs = np.zeros(nblocks)
        hist = np.zeros((nblocks, 4, bins + 1), np.int64)
        col = np.zeros((nblocks if want_cols else 1, cols if want_cols else 1))
        for b in prange(nblocks):
            sb = 0.0
            qb = 0.0
            for i in range(b * per, min(rows, (b + 1) * per)):
                r = 0.0
                a = 0.0
                for j in range(cols):
                    x = w[i, j]
                    if not math.isfinite(x):
                        continue
                    xd = np.float64(x)
                    r += xd
                    a += abs(xd)
                    qb += xd * xd
                    if want_cols:
                        col[b, j] += xd
                    k = int((x - lo) * scale)
                    if k > bins - 1:
                        k = bins - 1
                    elif k < 0:
                        k = 0
                    hist[b, j & 3, k] += 1
                row_sum[i] = r
                row_abs[i] = a
                sb += r
            sums[b] = sb
            sqs[b] = qb
        counts = np.zeros(bins, np.int64)
        for b in range(nblocks):
            for lane in range(4):
                for k in range(bins):
                    counts[k] += hist[b, lane, k]
        cols_out = np.zeros(cols if want_cols else 0)
        if want_cols:
            for b in range(nblocks):
                for j in range(cols):
                    cols_out[j] += col[b, j]
        return row_sum, row_abs, sums.sum(), sqs.sum(), counts, cols_out

    _kernels = (range_pass, sweep, numba.get_num_threads)
    return _kernels


def as_matrix(array: np.ndarray, nodes: int) -> np.ndarray:
    """View ``array`` as C-contiguous (nodes, -1) float32/float64 (copies only if needed)."""
    a = np.asarray(array)
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32)
    return np.ascontiguousarray(a.reshape(max(nodes, 1), -1))


def reduce_kernel(kernel: np.ndarray, nodes: int, bins: int, input_units: int = 0) -> RawLayer:
    """All reductions of one kernel on the CPU.

    Args:
        kernel: any shape; viewed as (nodes, fan_in), ``fan_in`` the product of the rest.
        nodes: rows of that view (its leading dimension; 1 for a vector).
        bins: histogram bins.
        input_units: when > 0, also return column sums grouped into this many
            input units: ``in`` for a linear (out, in) kernel, ``C_in`` for a conv
            (C_out, C_in, *k) kernel (summed over kernel positions). 0 skips them.
    """
    range_pass, sweep, threads = _compile()
    w = as_matrix(kernel, nodes)
    nblocks = max(1, min(w.shape[0], 4 * threads()))
    lo, hi, bad = range_pass(w, nblocks)
    finite = bool(np.isfinite(lo))
    rlo, rhi = histogram_range(float(lo), float(hi), finite)
    blo, scale = bin_scale(rlo, rhi, bins, w.dtype.type)
    want_cols = input_units > 0
    row_sum, row_abs, total, total_sq, counts, cols = sweep(w, blo, scale, bins, nblocks, want_cols)
    return RawLayer(
        count=int(w.size - bad), nonfinite=int(bad), total=float(total), total_sq=float(total_sq),
        min=float(lo) if finite else math.nan, max=float(hi) if finite else math.nan,
        edges=bin_edges(rlo, rhi, bins), counts=counts,
        row_sum=row_sum, row_abs=row_abs,
        col_sum=cols.reshape(input_units, -1).sum(axis=1) if want_cols else None,
    )
