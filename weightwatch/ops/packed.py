"""The one vector every device backend packs its per-layer results into.

A device backend (torch, jax, tensorflow) reduces each kernel where it lives
and concatenates, per layer, in float64::

    [nonfinite, total, total_sq, min, max, counts (bins), row_sum (rows),
     row_abs (rows), col_sum (cols), sample (nsample), bias (nbias)]

``min`` / ``max`` are of the finite entries (+inf / -inf when there are none).
The host receives all layers' vectors in one transfer and :func:`unpack`
turns them back into :class:`RawLayer` objects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .raw import RawLayer, bin_edges, histogram_range


@dataclass(frozen=True)
class Packing:
    """How long each part of one layer's packed vector is.

    Attributes:
        size: kernel entries; rows: nodes (the kernel's leading dimension, 1 for a vector);
        cols: length of the column sums (:attr:`KernelJob.cols`, 0: none); nsample / nbias: sample and bias lengths.
    """

    size: int
    rows: int
    cols: int = 0
    nsample: int = 0
    nbias: int = 0


def unpack(host: np.ndarray, packings: Sequence[Packing], bins: int) -> list[RawLayer]:
    """The layers packed one after another in the 1-D float64 array ``host``."""
    out = []
    offset = 0
    for p in packings:
        bad, total, total_sq, lo, hi = host[offset:offset + 5]
        offset += 5
        finite = bool(bad < p.size)
        rlo, rhi = histogram_range(float(lo), float(hi), finite)
        take = [bins, p.rows, p.rows, p.cols, p.nsample, p.nbias]
        counts, row_sum, row_abs, col_sum, sample, bias = np.split(host[offset:offset + sum(take)],
                                                                   np.cumsum(take)[:-1])
        offset += sum(take)
        out.append(RawLayer(
            count=int(p.size - bad), nonfinite=int(bad), total=float(total), total_sq=float(total_sq),
            min=float(lo) if finite else math.nan, max=float(hi) if finite else math.nan,
            edges=bin_edges(rlo, rhi, bins), counts=counts.astype(np.int64),
            row_sum=row_sum, row_abs=row_abs,
            col_sum=col_sum if p.cols else None, bias=bias if p.nbias else None,
            sample=sample.astype(np.float32) if p.nsample else None,
        ))
    return out
