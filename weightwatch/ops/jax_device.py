"""Reductions with jax.numpy on the arrays' own devices (CPU, GPU, TPU; sharded arrays too).

Each kernel is reduced by one jitted function (compiled once per shape and
dtype) into a float64 vector laid out as :mod:`.packed` says; the host then
fetches every layer's vector with one ``jax.device_get``: the weights never
leave their device. The sums are float64 (the 64-bit mode is switched on only
around these calls, not for the user's program), and the histogram is counted
over the float64 edges written to the file, as the CPU kernels count it, so the counts are identical.
float16 / bfloat16 kernels are widened to float32 on the device first.

jax is imported inside the functions: this module is only loaded for jax arrays.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Sequence
from typing import Any

from .packed import Packing, unpack
from .raw import KernelJob, RawLayer

__all__ = ["reduce_on_device"]


def _x64() -> contextlib.AbstractContextManager:
    """A context with jax's 64-bit types on (``jax.enable_x64`` in recent jax, experimental before)."""
    import jax

    enable = getattr(jax, "enable_x64", None)
    if enable is None:
        from jax.experimental import enable_x64 as enable
    return enable(True)


@functools.cache
def _compiled() -> Any:
    import jax
    import jax.numpy as jnp

    @functools.partial(jax.jit, static_argnames=("nodes", "bins", "cols", "col_groups"))
    def reduce_one(kernel: Any, sample: Any, bias: Any, *, nodes: int, bins: int, cols: int,
                   col_groups: int) -> Any:
        """kernel: any shape, viewed as (nodes, fan_in); sample: int64 flat positions or None;
        bias: (nodes,) or None; cols: :attr:`KernelJob.cols` (0: no column sums).
        Returns the packed float64 vector."""
        w = kernel.reshape(max(nodes, 1), -1)
        if w.dtype not in (jnp.float32, jnp.float64):
            w = w.astype(jnp.float32)
        finite = jnp.isfinite(w)
        bad = jnp.sum(~finite)
        lo = jnp.min(jnp.where(finite, w, math.inf)).astype(jnp.float64)
        hi = jnp.max(jnp.where(finite, w, -math.inf)).astype(jnp.float64)
        # histogram_range() on the device: widen a constant kernel, [0, 1] when nothing is finite
        any_finite = bad < w.size
        rlo = jnp.where(any_finite, jnp.where(hi > lo, lo, lo - 0.5), 0.0)
        rhi = jnp.where(any_finite, jnp.where(hi > lo, hi, hi + 0.5), 1.0)
        wd = jnp.where(finite, w, 0).astype(jnp.float64)
        # bin_edges() and the CPU kernels' binning, on the device: a float64 estimate
        # checked against the edges written to the file (at most one bin off; twice for
        # degenerate ranges), so counts equal numpy.histogram's over those edges
        edges = rlo + (rhi - rlo) * (jnp.arange(bins + 1, dtype=jnp.float64) / bins)
        edges = edges.at[-1].set(rhi)
        idx = jnp.clip(((wd - rlo) * (bins / (rhi - rlo))).astype(jnp.int32), 0, bins - 1)
        for _ in range(2):
            idx = idx - ((wd < edges[idx]) & (idx > 0)).astype(jnp.int32)
            idx = idx + ((wd >= edges[idx + 1]) & (idx < bins - 1)).astype(jnp.int32)
        idx = jnp.where(finite, idx, bins)  # non-finite entries go to a dropped extra bin
        counts = jnp.bincount(idx.reshape(-1), length=bins + 1)[:bins].astype(jnp.float64)
        row_sum = wd.sum(axis=1)
        parts = [jnp.stack([bad.astype(jnp.float64), row_sum.sum(), (wd * wd).sum(), lo, hi]),
                 counts, row_sum, jnp.abs(wd).sum(axis=1)]
        if cols:  # per row block: (groups, fan_in), then grouped into input units
            parts.append(wd.reshape(col_groups, -1, wd.shape[1]).sum(axis=1).reshape(cols, -1).sum(axis=1))
        if sample is not None:
            parts.append(kernel.reshape(-1)[sample].astype(jnp.float64))
        if bias is not None:
            parts.append(bias.reshape(-1).astype(jnp.float64))
        return jnp.concatenate(parts)

    return reduce_one


def reduce_on_device(jobs: Sequence[KernelJob], bins: int) -> list[RawLayer]:
    """Reduce every job's jax kernel (and bias) where it lives; one host transfer for all."""
    import jax
    import numpy as np

    reduce_one = _compiled()
    packed, packings = [], []
    with _x64():
        for job in jobs:
            kernel = job.kernel
            nodes = max(job.nodes, 1)
            sample = None if job.sample is None else np.asarray(job.sample, np.int64)
            packed.append(reduce_one(kernel, sample, job.bias, nodes=nodes, bins=bins,
                                     cols=job.cols, col_groups=job.col_groups))
            packings.append(Packing(int(kernel.size), nodes, job.cols,
                                    0 if sample is None else len(sample),
                                    0 if job.bias is None else int(job.bias.size)))
        host = jax.device_get(packed)  # the one transfer: every layer's small vector
    return unpack(np.concatenate(host) if host else np.zeros(0), packings, bins)
