"""Fused CPU kernels (numba) for every per-layer reduction.

Two parallel passes over a kernel viewed as a (nodes, fan_in) matrix:

1. :func:`moments`: in one sweep the minimum and maximum (on integer keys
   ordered like the floats, :func:`sortable_keys`: NaN or infinite when an
   entry is), per node the signed and absolute row sums,
   the total sum of squares (float64 accumulators) and, when asked, the column
   sums (per block of rows for a grouped convolution; the consumers' outgoing
   weights of :mod:`weightwatch.flow`). Written so LLVM vectorises it (``reassoc`` lets it reorder the float64
   sums; NaN semantics are kept).
2. :func:`histogram`: the exact counts over the float64 ``edges`` that are
   written to the event file. The bin is first estimated with one multiply in
   the kernel's type (vectorised, no table lookup); only an estimate within
   :func:`estimate_slack` of a bin boundary is checked against
   :func:`thresholds`, the edges rounded up to that type, so
   ``numpy.histogram(weights, bins=edges)`` gives the same counts, values
   lying exactly on an edge included.

A kernel holding NaN or Inf (rare, and then speed hardly matters) is binned on
a copy whose non-finite entries are replaced by the finite minimum; their
share is taken back out of the sums and of the first bin.

Scheduling: both passes split the work into many small blocks that threads
take one at a time (``parallel_chunksize(1)``), so a thread that loses its core
to the training loop delays at most one block instead of a fixed half of the
kernel. Numba compiles on first use and caches the machine code on disk.
"""

from __future__ import annotations

import math

import numpy as np

from .raw import RawLayer, bin_edges, bin_scale, histogram_range
from .threads import blocks_for, thread_count

_kernels: dict[bool, tuple] = {}
# Interleaved sub-histograms: consecutive entries often land in the same bin,
# and incrementing one counter back to back stalls on the store.
_LANES = 4
# Entries whose bins are computed before they are counted (a buffer in L1).
_CHUNK = 4096


def _compile(parallel: bool):
    """(moments, histogram), compiled with numba's parallel regions or plain loops
    (the latter safe to run from several Python threads at once)."""
    if parallel in _kernels:
        return _kernels[parallel]
    from numba import njit, prange

    fast = {"reassoc", "contract"}  # not "nnan"/"ninf": NaN and Inf must behave as IEEE says

    @njit(parallel=parallel, fastmath=fast, cache=True, nogil=True)
    def moments(w, bits, shift, mask, nblocks, col_groups):  # pragma: no cover - compiled
        rows, cols = w.shape
        per = (rows + nblocks - 1) // nblocks
        per_group = rows // max(col_groups, 1)  # rows of one column-sum block
        row_sum = np.zeros(rows)
        row_abs = np.zeros(rows)
        sqs = np.zeros(nblocks)
        lows = np.empty(nblocks, bits.dtype)
        highs = np.empty(nblocks, bits.dtype)
        # per thread block, so threads never add into one row of partial sums
        col = np.zeros((nblocks, col_groups, cols if col_groups > 0 else 0))
        for b in prange(nblocks):
            lo = mask  # the largest key of the kernel's type: above +inf's and every NaN's but one
            hi = -mask - 1
            qb = 0.0
            for i in range(b * per, min(rows, (b + 1) * per)):
                r = 0.0
                a = 0.0
                q = 0.0
                for j in range(cols):  # vectorised: integer extremes and independent float64 sums
                    k = bits[i, j]
                    k = k ^ ((k >> shift) & mask)  # ordered like the float (see sortable_keys)
                    lo = min(lo, k)
                    hi = max(hi, k)
                    xd = np.float64(w[i, j])
                    r += xd
                    a += abs(xd)
                    q += xd * xd
                row_sum[i] = r
                row_abs[i] = a
                qb += q
                if col_groups > 0:  # the row again, from L1: the kernel is read from memory once
                    g = i // per_group
                    for j in range(cols):
                        col[b, g, j] += w[i, j]
            lows[b] = lo
            highs[b] = hi
            sqs[b] = qb
        return lows.min(), highs.max(), row_sum, row_abs, sqs.sum(), col.sum(axis=0)

    @njit(fastmath={"contract"}, cache=True, nogil=True)
    def estimate_bins(x, lo, scale, slack, top, bins, doubt):  # pragma: no cover - compiled
        zero = np.int32(0)
        for j in range(x.size):  # vectorised: no table lookup
            v = (x[j] - lo) * scale
            low = min(max(np.int32(v - slack), zero), top)
            bins[j] = low
            doubt[j] = min(max(np.int32(v + slack), zero), top) - low  # 1: an edge lies within the slack

    @njit(cache=True, nogil=True)
    def settle_doubts(x, bins, doubt, thresholds):  # pragma: no cover - compiled
        for j in range(x.size):
            if doubt[j]:  # rare: the exact test against the edges either side
                k = bins[j]
                bins[j] = k - np.int32(x[j] < thresholds[k]) + np.int32(x[j] >= thresholds[k + 1])

    @njit(cache=True, nogil=True)
    def count_bins(bins, m, hist):  # pragma: no cover - compiled
        for j in range(m):  # the scatter: scalar work, spread over lanes
            hist[j & (_LANES - 1), bins[j]] += 1

    @njit(parallel=parallel, cache=True, nogil=True)
    def histogram(flat, thresholds, lo, scale, slack, nblocks):  # pragma: no cover - compiled
        n = flat.size
        nbins = thresholds.size - 1
        top = np.int32(nbins - 1)
        per = (n + nblocks - 1) // nblocks
        hist = np.zeros((nblocks, _LANES, nbins), np.int64)
        for b in prange(nblocks):
            bins = np.empty(_CHUNK, np.int32)
            doubt = np.empty(_CHUNK, np.int32)
            for start in range(b * per, min(n, (b + 1) * per), _CHUNK):
                m = min(_CHUNK, n - start, (b + 1) * per - start)
                x = flat[start:start + m]
                estimate_bins(x, lo, scale, slack, top, bins, doubt)
                settle_doubts(x, bins[:m], doubt, thresholds)
                count_bins(bins, m, hist[b])
        return hist.sum(axis=0).sum(axis=0)

    _kernels[parallel] = (moments, histogram)
    return _kernels[parallel]


def sortable_keys(w: np.ndarray) -> tuple[np.ndarray, np.integer, np.integer]:
    """(keys view, shift, mask): ``w``'s bits as signed integers of its width, to be mapped by
    ``k ^ ((k >> shift) & mask)`` to keys whose integer order is the floats' order.

    Why: a float minimum that must keep IEEE NaN semantics does not vectorise, an integer one
    does (ten times faster here). Negative floats have the sign bit set; flipping their other
    bits reverses their order, so -inf < ... < -0.0 < 0.0 < ... < +inf; the NaNs land beyond
    the infinities (sign bit clear above +inf, set below -inf), so a NaN in the kernel shows
    as a NaN minimum or maximum (:func:`key_to_float`).
    """
    itype = np.int32 if w.dtype == np.float32 else np.int64
    bits = 8 * w.dtype.itemsize
    return w.view(itype), itype(bits - 1), itype(np.iinfo(itype).max)


def key_to_float(key: np.integer, dtype: np.dtype) -> float:
    """The float of ``dtype`` whose :func:`sortable_keys` key is ``key`` (the map is its own inverse)."""
    itype = np.int32 if dtype == np.float32 else np.int64
    k = itype(key)
    bits = k ^ ((k >> itype(8 * dtype.itemsize - 1)) & itype(np.iinfo(itype).max))
    return float(np.array([bits], itype).view(dtype)[0])


def thresholds(edges: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """(bins + 1,) in ``dtype``: entry k is the smallest ``dtype`` value >= edges[k]
    (so ``x >= edges[k]`` exactly when ``x >= thresholds[k]`` for x of that type),
    the last one +inf (the last bin is closed on the right)."""
    t = edges.astype(dtype)
    low = t.astype(np.float64) < edges
    t[low] = np.nextafter(t[low], dtype.type(np.inf))
    t[-1] = np.inf
    return t


def estimate_slack(edges: np.ndarray, dtype: np.dtype) -> float:
    """How far (in bins) the estimate ``(x - lo) * scale``, computed in ``dtype``, can lie from x's
    position against :func:`thresholds`, with a margin of about five: the rounding of the
    subtraction, of the product and of ``lo`` and ``scale`` to ``dtype`` (each at most one unit
    roundoff of the bins or of the range's magnitude), and the thresholds' rounding up (at most
    one ulp of the largest edge). An estimate farther than this from every whole number is the
    bin itself; the others are checked against the thresholds.
    """
    bins = edges.size - 1
    width = (edges[-1] - edges[0]) / bins
    magnitude = max(abs(edges[0]), abs(edges[-1])) / width  # the largest edge, in bins
    return float(16 * np.finfo(dtype).eps * (magnitude + bins + 1))


def estimate_is_safe(edges: np.ndarray, dtype: np.dtype) -> bool:
    """True when a bin is wide enough (many ulps of the kernel's type) that the
    estimate ``int((x - lo) * scale)`` is at most one bin off."""
    width = (edges[-1] - edges[0]) / (edges.size - 1)
    return bool(width > 64 * np.spacing(dtype.type(max(abs(edges[0]), abs(edges[-1])))))


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


def reduce_kernel(kernel: np.ndarray, nodes: int, bins: int, input_units: int = 0, *, col_groups: int = 1,
                  threads: int | None = None) -> RawLayer:
    """All reductions of one kernel on the CPU.

    Args:
        kernel: any shape; viewed as (nodes, fan_in), ``fan_in`` the product of the rest.
        nodes: rows of that view (its leading dimension; 1 for a vector).
        bins: histogram bins.
        input_units: when > 0, also return column sums grouped into this many
            input units: ``in`` for a linear (out, in) kernel, ``C_in`` for a conv
            (C_out, C_in, *k) kernel (summed over kernel positions), ``fan_in`` for
            one sum per column. 0 skips them.
        col_groups: with ``input_units``, the rows are split into this many equal
            blocks (a grouped conv's groups) and each block's columns summed apart:
            ``col_sum`` is (col_groups * input_units,), block-major.
        threads: 1 runs plain loops on the calling thread (what
            :func:`weightwatch.ops.reduce_jobs` uses when it spreads layers over
            threads); None lets :func:`.threads.thread_count` choose.
    """
    from numba import parallel_chunksize

    w = as_matrix(kernel, nodes)
    threads = thread_count(w.size) if threads is None else threads
    moments, histogram = _compile(threads > 1)
    with parallel_chunksize(1):  # blocks are handed out one at a time (see the module doc)
        key_lo, key_hi, row_sum, row_abs, total_sq, cols = moments(
            w, *sortable_keys(w), blocks_for(w.size, threads, limit=w.shape[0]), col_groups if input_units > 0 else 0)
        lo, hi = key_to_float(key_lo, w.dtype), key_to_float(key_hi, w.dtype)
        total = float(row_sum.sum())
        bad = None
        if not (np.isfinite(lo) and np.isfinite(hi)):  # an Inf, or a NaN (its key lies beyond the Infs)
            w, lo, hi, bad, fill = _finite_range(w)
        finite = bool(np.isfinite(lo))
        rlo, rhi = histogram_range(float(lo), float(hi), finite)
        edges = bin_edges(rlo, rhi, bins)
        slack = estimate_slack(edges, w.dtype)
        if estimate_is_safe(edges, w.dtype) and slack < 0.5:  # then the estimate is at most one bin off
            blo, scale = bin_scale(rlo, rhi, bins)
            counts = histogram(w.reshape(-1), thresholds(edges, w.dtype), w.dtype.type(blo), w.dtype.type(scale),
                               w.dtype.type(slack), blocks_for(w.size, threads))
        else:  # bins a few ulps wide: the estimate could be more than one bin off
            counts = np.histogram(w, bins=edges)[0].astype(np.int64)
    nonfinite = 0
    if bad is not None:  # the NaN / Inf entries spoil the sums: redo them on the finite values
        per_row = bad.sum(axis=1)
        nonfinite = int(per_row.sum())
        clean = np.where(bad, 0.0, w.astype(np.float64))
        row_sum, row_abs = clean.sum(axis=1), np.abs(clean).sum(axis=1)
        total, total_sq = float(row_sum.sum()), float((clean * clean).sum())
        cols = clean.reshape(col_groups, -1, clean.shape[1]).sum(axis=1) if input_units > 0 else cols
        counts[0] -= nonfinite  # the stand-ins (the finite minimum, or 0 when nothing is finite)
    return RawLayer(
        count=int(w.size - nonfinite), nonfinite=nonfinite, total=total, total_sq=float(total_sq),
        min=float(lo) if finite else math.nan, max=float(hi) if finite else math.nan,
        edges=edges, counts=counts,
        row_sum=row_sum, row_abs=row_abs,
        col_sum=cols.reshape(col_groups * input_units, -1).sum(axis=1) if input_units > 0 else None,
    )
