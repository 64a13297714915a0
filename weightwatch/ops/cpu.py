"""Fused CPU kernels (numba) for every per-layer reduction.

Two parallel passes over a kernel viewed as a (nodes, fan_in) matrix:

1. the minimum and maximum (infinite when an entry is) and the number of NaNs;
2. in one sweep, per node the signed and absolute row sums, the total sum of
   squares (float64 accumulators) and the exact histogram over [min, max].

Both are written so LLVM vectorises them (``reassoc`` lets it reorder the
float64 sums; NaN semantics are kept). A kernel holding NaN or Inf (rare, and
then speed hardly matters) is swept on a copy whose non-finite entries are
replaced by the finite minimum, and their share is taken back out of the sums
and of the first bin.

Doing everything in one sweep matters: on a 2-core CPU the separate torch ops
(sum, abs-sum, dot, bin index, bincount) cost about 16 reads of the weights,
this costs about 5 (see benchmarks/RESULTS.md). Numba compiles on first use
and caches the machine code on disk.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from .raw import RawLayer, bin_edges, bin_scale, histogram_range

_kernels: tuple | None = None
# Interleaved sub-histograms: consecutive entries often land in the same bin,
# and incrementing one counter back to back stalls on the store.
_LANES = 4
# Kernels smaller than this run on the calling thread alone.
_PARALLEL_FROM = 1 << 16


def _compile():
    global _kernels
    if _kernels is not None:
        return _kernels
    import numba
    from numba import njit, prange

    fast = {"reassoc", "contract"}  # not "nnan"/"ninf": NaN and Inf must behave as IEEE says

    @njit(parallel=True, fastmath=fast, cache=True, nogil=True)
    def range_fast(w, nblocks):  # pragma: no cover - compiled
        rows, cols = w.shape
        per = (rows + nblocks - 1) // nblocks
        mins = np.full(nblocks, np.inf)
        maxs = np.full(nblocks, -np.inf)
        nans = np.zeros(nblocks, np.int64)
        for b in prange(nblocks):
            lo = w.dtype.type(np.inf)
            hi = w.dtype.type(-np.inf)
            nan = 0
            for i in range(b * per, min(rows, (b + 1) * per)):
                for j in range(cols):
                    x = w[i, j]
                    lo = min(lo, x)  # a NaN never wins a comparison: min/max skip it
                    hi = max(hi, x)
                    nan += x != x  # an integer count vectorises; a float NaN probe does not
            mins[b] = lo
            maxs[b] = hi
            nans[b] = nan
        return mins.min(), maxs.max(), nans.sum()

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

    def threads(size: int) -> int:
        """Threads for a kernel of ``size`` entries: one for small kernels (waking
        other threads costs more than it saves, and on a busy machine a parallel
        region waits for the slowest thread), else torch's intra-op count when
        torch is in use (it honours OMP_NUM_THREADS, torch.set_num_threads and
        launchers that split the cores between processes), else numba's default."""
        n = 1
        if size >= _PARALLEL_FROM:
            n = numba.config.NUMBA_NUM_THREADS
            torch = sys.modules.get("torch")
            if torch is not None and hasattr(torch, "get_num_threads"):
                n = max(1, min(n, torch.get_num_threads()))
        numba.set_num_threads(n)
        return n

    _kernels = (range_fast, sweep_fast, threads)
    return _kernels


def as_matrix(array: np.ndarray, nodes: int) -> np.ndarray:
    """View ``array`` as C-contiguous (nodes, -1) float32/float64 (copies only if needed)."""
    a = np.asarray(array)
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32)
    return np.ascontiguousarray(a.reshape(max(nodes, 1), -1))


def _finite_range(w: np.ndarray) -> tuple[np.ndarray, float, float, np.ndarray, float]:
    """For a kernel with non-finite entries: (copy with them set to a stand-in,
    the finite minimum, the finite maximum, mask of non-finite entries, the
    stand-in: the finite minimum, so it lands in the first bin, or 0)."""
    bad = ~np.isfinite(w)
    finite = w[~bad]
    lo = float(finite.min()) if finite.size else math.nan
    hi = float(finite.max()) if finite.size else math.nan
    fill = 0.0 if math.isnan(lo) else lo
    return np.where(bad, w.dtype.type(fill), w), lo, hi, bad, fill


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
    range_fast, sweep_fast, threads = _compile()
    w = as_matrix(kernel, nodes)
    nblocks = max(1, min(w.shape[0], 4 * threads(w.size)))
    lo, hi, nans = range_fast(w, nblocks)
    bad = None
    if nans or not (np.isfinite(lo) and np.isfinite(hi)):
        w, lo, hi, bad, fill = _finite_range(w)
    finite = bool(np.isfinite(lo))
    rlo, rhi = histogram_range(float(lo), float(hi), finite)
    blo, scale = bin_scale(rlo, rhi, bins, w.dtype.type)
    row_sum, row_abs, total, total_sq, counts, cols = sweep_fast(w, blo, scale, bins, nblocks, input_units > 0)
    nonfinite = 0
    if bad is not None:  # take the stand-in values back out
        per_row = bad.sum(axis=1)
        nonfinite = int(per_row.sum())
        row_sum = row_sum - fill * per_row
        row_abs = row_abs - abs(fill) * per_row
        total -= fill * nonfinite
        total_sq -= fill * fill * nonfinite
        if input_units > 0:
            cols = cols - fill * bad.sum(axis=0)
        counts[min(max(int((w.dtype.type(fill) - blo) * scale), 0), bins - 1)] -= nonfinite
    return RawLayer(
        count=int(w.size - nonfinite), nonfinite=nonfinite, total=float(total), total_sq=float(total_sq),
        min=float(lo) if finite else math.nan, max=float(hi) if finite else math.nan,
        edges=bin_edges(rlo, rhi, bins), counts=counts,
        row_sum=row_sum, row_abs=row_abs,
        col_sum=cols.reshape(input_units, -1).sum(axis=1) if input_units > 0 else None,
    )
