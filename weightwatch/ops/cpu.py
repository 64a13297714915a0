"""Fused CPU kernels (numba) for every per-layer reduction.

Two parallel passes over a kernel viewed as a (nodes, fan_in) matrix:

1. the minimum and maximum, and a probe that is NaN when any entry is not finite;
2. in one sweep, per node the signed and absolute row sums, the total sum of
   squares (float64 accumulators) and the exact histogram over [min, max].

Both are written so LLVM vectorises them (``reassoc`` lets it reorder the
float64 sums; NaN semantics are kept). A kernel holding NaN or Inf goes through
slower general kernels that skip non-finite entries and count them.

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

    fast = {"reassoc", "contract"}  # not "nnan": the probe relies on NaN propagating

    @njit(parallel=True, fastmath=fast, cache=True, nogil=True)
    def range_fast(w, nblocks):  # pragma: no cover - compiled
        rows, cols = w.shape
        per = (rows + nblocks - 1) // nblocks
        mins = np.full(nblocks, np.inf)
        maxs = np.full(nblocks, -np.inf)
        probes = np.zeros(nblocks)
        for b in prange(nblocks):
            lo = w.dtype.type(np.inf)
            hi = w.dtype.type(-np.inf)
            probe = w.dtype.type(0.0)
            for i in range(b * per, min(rows, (b + 1) * per)):
                for j in range(cols):
                    x = w[i, j]
                    lo = min(lo, x)
                    hi = max(hi, x)
                    probe += x * 0  # NaN as soon as one entry is NaN or +-Inf
            mins[b] = lo
            maxs[b] = hi
            probes[b] = probe
        return mins.min(), maxs.max(), probes.sum()

    @njit(parallel=True, fastmath=fast, cache=True, nogil=True)
    def sweep_fast(w, lo, scale, bins, nblocks, want_cols):  # pragma: no cover - compiled
        rows, cols = w.shape
        per = (rows + nblocks - 1) // nblocks
        row_sum = np.zeros(rows)
        row_abs = np.zeros(rows)
        sqs = np.zeros(nblocks)
        hist = np.zeros((nblocks, _LANES, bins), np.int64)
        col = np.zeros((nblocks, cols if want_cols else 0))
        for b in prange(nblocks):
            qb = 0.0
            for i in range(b * per, min(rows, (b + 1) * per)):
                r = 0.0
                a = 0.0
                q = 0.0
                for j in range(cols):  # vectorised: independent float64 sums
                    x = np.float64(w[i, j])
                    r += x
                    a += abs(x)
                    q += x * x
                row_sum[i] = r
                row_abs[i] = a
                qb += q
                if want_cols:
                    for j in range(cols):
                        col[b, j] += w[i, j]
                for j in range(cols):  # the row is in cache now; binning is scalar work
                    k = min(int((w[i, j] - lo) * scale), bins - 1)
                    hist[b, j & (_LANES - 1), k] += 1
            sqs[b] = qb
        counts = hist.sum(axis=0).sum(axis=0)
        return row_sum, row_abs, row_sum.sum(), sqs.sum(), counts, col.sum(axis=0)

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

    _kernels = (range_fast, sweep_fast, range_pass, sweep, numba.get_num_threads)
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
    range_fast, sweep_fast, range_pass, sweep, threads = _compile()
    w = as_matrix(kernel, nodes)
    nblocks = max(1, min(w.shape[0], 4 * threads()))
    want_cols = input_units > 0
    lo, hi, probe = range_fast(w, nblocks)
    bad = 0
    if not np.isfinite(probe):
        lo, hi, bad = range_pass(w, nblocks)
    finite = bool(np.isfinite(lo))
    rlo, rhi = histogram_range(float(lo), float(hi), finite)
    blo, scale = bin_scale(rlo, rhi, bins, w.dtype.type)
    sweep_kernel = sweep if bad else sweep_fast
    row_sum, row_abs, total, total_sq, counts, cols = sweep_kernel(w, blo, scale, bins, nblocks, want_cols)
    return RawLayer(
        count=int(w.size - bad), nonfinite=int(bad), total=float(total), total_sq=float(total_sq),
        min=float(lo) if finite else math.nan, max=float(hi) if finite else math.nan,
        edges=bin_edges(rlo, rhi, bins), counts=counts,
        row_sum=row_sum, row_abs=row_abs,
        col_sum=cols.reshape(input_units, -1).sum(axis=1) if want_cols else None,
    )
