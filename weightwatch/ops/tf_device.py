"""Reductions with TensorFlow ops on the tensors' own device (CPU, GPU).

The TensorFlow counterpart of :mod:`.torch_device` and :mod:`.jax_device`:
each kernel is reduced where it lives (``tf.device`` of the kernel) into a
float64 vector laid out as :mod:`.packed` says, and all layers' vectors reach
the host in one transfer. The histogram is counted over the float64 edges
written to the file, as the CPU kernels count it, so the counts are identical;
float16 / bfloat16 kernels are widened to float32 on the device first.

tensorflow is imported inside the functions: this module is only loaded for
tensorflow tensors.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

from .packed import Packing, unpack
from .raw import KernelJob, RawLayer

__all__ = ["reduce_on_device"]


@functools.cache
def _compiled(dtype: Any) -> Any:
    """The reduction traced once for float32 or float64 kernels of any shape (the shapes in the
    signature are left open, so that every layer reuses one graph and TensorFlow never retraces)."""
    import tensorflow as tf

    spec = tf.TensorSpec

    @tf.function(input_signature=[spec([None, None], dtype), spec([None], tf.int64), spec([None], tf.float64),
                                  spec([], tf.int32), spec([], tf.int32), spec([], tf.int32)])
    def reduce_one(w: Any, sample: Any, bias: Any, bins: Any, cols: Any, col_groups: Any) -> Any:
        """w: (nodes, fan_in); sample: flat positions (may be empty); bias: (nodes,) or empty;
        cols: :attr:`KernelJob.cols` (0: no column sums); col_groups: its row blocks.
        Returns the packed float64 vector."""
        finite = tf.math.is_finite(w)
        bad = tf.reduce_sum(tf.cast(~finite, tf.float64))
        lo = tf.cast(tf.reduce_min(tf.where(finite, w, math.inf)), tf.float64)
        hi = tf.cast(tf.reduce_max(tf.where(finite, w, -math.inf)), tf.float64)
        # histogram_range() on the device: widen a constant kernel, [0, 1] when nothing is finite
        any_finite = bad < tf.cast(tf.size(w), tf.float64)
        zero = tf.constant(0.0, tf.float64)
        rlo = tf.where(any_finite, tf.where(hi > lo, lo, lo - 0.5), zero)
        rhi = tf.where(any_finite, tf.where(hi > lo, hi, hi + 0.5), zero + 1.0)
        wd = tf.cast(tf.where(finite, w, tf.zeros_like(w)), tf.float64)
        # bin_edges() and the CPU kernels' binning, on the device: a float64 estimate
        # checked against the edges written to the file (at most one bin off; twice for
        # degenerate ranges), so counts equal numpy.histogram's over those edges
        steps = tf.cast(tf.range(bins + 1), tf.float64) / tf.cast(bins, tf.float64)
        edges = tf.concat([(rlo + (rhi - rlo) * steps)[:-1], tf.reshape(rhi, [1])], 0)
        idx = tf.clip_by_value(tf.cast((wd - rlo) * (tf.cast(bins, tf.float64) / (rhi - rlo)), tf.int32), 0,
                               bins - 1)
        for _ in range(2):
            below = tf.logical_and(wd < tf.gather(edges, idx), idx > 0)
            above = tf.logical_and(wd >= tf.gather(edges, idx + 1), idx < bins - 1)
            idx = idx - tf.cast(below, tf.int32) + tf.cast(above, tf.int32)
        idx = tf.where(finite, idx, bins)  # non-finite entries go to a dropped extra bin
        counts = tf.math.bincount(tf.reshape(idx, [-1]), minlength=bins + 1, maxlength=bins + 1)[:bins]
        row_sum = tf.reduce_sum(wd, axis=1)
        # per row block: (groups, fan_in), then grouped into input units; sliced away when not asked for
        per_block = tf.reduce_sum(tf.reshape(wd, (col_groups, -1, tf.shape(wd)[1])), axis=1)
        col_sum = tf.reduce_sum(tf.reshape(per_block, (tf.maximum(cols, col_groups), -1)), axis=1)[:cols]
        head = tf.stack([bad, tf.reduce_sum(row_sum), tf.reduce_sum(wd * wd), lo, hi])
        picked = tf.cast(tf.gather(tf.reshape(w, [-1]), sample), tf.float64)
        return tf.concat([head, tf.cast(counts, tf.float64), row_sum, tf.reduce_sum(tf.abs(wd), axis=1), col_sum,
                          picked, bias], 0)

    return reduce_one


def reduce_on_device(jobs: Sequence[KernelJob], bins: int) -> list[RawLayer]:
    """Reduce every job's tensorflow kernel (and bias) on its device; one host transfer for all."""
    import numpy as np
    import tensorflow as tf

    packed, packings = [], []
    for job in jobs:
        kernel = tf.convert_to_tensor(job.kernel)  # reads a tf.Variable where it lives
        nodes = max(job.nodes, 1)
        with tf.device(kernel.device):
            w = tf.reshape(kernel, (nodes, -1))
            if w.dtype not in (tf.float32, tf.float64):
                w = tf.cast(w, tf.float32)  # float16 / bfloat16, widened on the device
            sample = tf.constant([] if job.sample is None else job.sample, tf.int64)
            bias = (tf.zeros([0], tf.float64) if job.bias is None
                    else tf.cast(tf.reshape(job.bias, [-1]), tf.float64))
            packed.append(_compiled(w.dtype)(w, sample, bias, tf.constant(bins), tf.constant(job.cols),
                                             tf.constant(job.col_groups)))
        packings.append(Packing(int(np.prod(kernel.shape)), nodes, job.cols,
                                0 if job.sample is None else len(job.sample), int(bias.shape[0])))
    host = tf.concat(packed, 0).numpy() if packed else np.zeros(0)  # the one transfer
    return unpack(host, packings, bins)
