"""The small per-layer result that crosses from the device to the host."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class KernelJob:
    """One kernel to reduce: see :func:`weightwatch.ops.cpu.reduce_kernel` for the fields.

    ``kernel`` and ``bias`` are arrays of any framework (numpy, torch, jax,
    tensorflow), in the core's layout. ``input_units`` > 0 asks for column
    sums: the (nodes, fan_in) view's rows split into ``col_groups`` equal
    blocks, each block's columns summed and grouped into ``input_units``
    units (``RawLayer.col_sum``, (col_groups * input_units,), block-major).
    """

    kernel: Any
    nodes: int
    input_units: int = 0
    bias: Any | None = None
    sample: np.ndarray | None = None  # flat kernel positions to copy out (the run's sketch)
    col_groups: int = 1

    @property
    def cols(self) -> int:
        """Length of the column sums asked for (0: none)."""
        return self.input_units * self.col_groups if self.input_units > 0 else 0


@dataclass
class RawLayer:
    """Reductions of one kernel (and its bias), already on the host.

    Statistics are over the *finite* entries; ``nonfinite`` counts the others.

    Attributes:
        count: number of finite kernel entries.
        nonfinite: number of NaN / +-Inf kernel entries.
        total: sum of the finite entries (float64 accumulation).
        total_sq: sum of their squares.
        min / max: of the finite entries (NaN when there are none).
        edges: shape (bins + 1,), the histogram's bin edges.
        counts: shape (bins,), exact counts per bin (int64).
        row_sum: shape (nodes,), signed sum of each node's incoming weights.
        row_abs: shape (nodes,), sum of their absolute values.
        col_sum: shape (col_groups * input_units,), signed sum of each input
            unit's outgoing weights (over the nodes of its row block and its
            kernel positions); only when asked for (see :class:`KernelJob`).
        bias: shape (nodes,), the bias values, or None.
        sample: the kernel's values at the job's ``sample`` positions, or None.
    """

    count: int
    nonfinite: int
    total: float
    total_sq: float
    min: float
    max: float
    edges: np.ndarray
    counts: np.ndarray
    row_sum: np.ndarray | None = None
    row_abs: np.ndarray | None = None
    col_sum: np.ndarray | None = None
    bias: np.ndarray | None = None
    sample: np.ndarray | None = None


def histogram_range(lo: float, hi: float, finite: bool = True) -> tuple[float, float]:
    """The range the histogram spans: [min, max], widened by 0.5 each way when
    the kernel is constant (as numpy does), [0, 1] when nothing is finite."""
    if not finite:
        return 0.0, 1.0
    if hi > lo:
        return lo, hi
    return lo - 0.5, hi + 0.5


def bin_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """shape (bins + 1,): equal-width edges from lo to hi, in float64."""
    edges = lo + (hi - lo) * (np.arange(bins + 1, dtype=np.float64) / bins)
    edges[-1] = hi
    return edges


def bin_scale(lo: float, hi: float, bins: int) -> tuple[float, float]:
    """(lo, scale) for the first estimate of a bin, ``int((x - lo) * scale)``.

    The estimate can be one bin off for values on or next to an edge; every
    backend then checks it against :func:`bin_edges` (the edges written to the
    event file), so counts agree across frameworks and devices and with
    ``numpy.histogram(values, bins=edges)``.
    """
    return float(lo), float(bins / (hi - lo))
