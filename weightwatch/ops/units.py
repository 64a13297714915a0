"""Compiled helpers (numba) for the per-unit work of the complex-network strength.

A convolution's outgoing term has one value per (channel, position) unit, so
a resnet at 224x224 has tens of millions of them per log. numpy would build a
temporary for every product and sum over them; these loops read each array
once and write the result in place (:mod:`weightwatch.outgoing`,
:func:`weightwatch.stats.node_strength`). Compiled on first use and cached on
disk, like :mod:`.cpu`.
"""

from __future__ import annotations

import numpy as np

_kernels: dict[str, object] = {}


def _compiled():
    if not _kernels:
        from numba import njit

        @njit(cache=True, nogil=True, fastmath={"contract"})
        def add_scaled(total, weights, factor, run, first):  # pragma: no cover - compiled
            for b in range(factor.size):
                f = factor[b]
                start = b * run
                if first:
                    for i in range(start, start + run):
                        total[i] = weights[i] * f
                else:
                    for i in range(start, start + run):
                        total[i] += weights[i] * f

        @njit(cache=True, nogil=True)
        def unit_moments(incoming, outgoing):  # pragma: no cover - compiled
            nodes, per = outgoing.shape
            means = np.empty(nodes)
            grand = 0.0
            for c in range(nodes):
                s = 0.0
                for p in range(per):
                    s += outgoing[c, p]
                means[c] = incoming[c] + s / per
                grand += means[c]
            grand /= nodes
            sq = 0.0
            for c in range(nodes):  # two passes: the deviations from the grand mean, no cancellation
                d0 = incoming[c] - grand
                for p in range(per):
                    d = d0 + outgoing[c, p]
                    sq += d * d
            return means, np.sqrt(sq / (nodes * per))

        @njit(cache=True, nogil=True)
        def scatter_cols(total, read, col, weights):  # pragma: no cover - compiled
            for i in range(read.size):
                total[read[i]] += weights[col[i]]

        @njit(cache=True, nogil=True)
        def scatter(total, read, weights):  # pragma: no cover - compiled
            for i in range(read.size):
                total[read[i]] += weights[i]

        _kernels.update(add_scaled=add_scaled, unit_moments=unit_moments, scatter_cols=scatter_cols, scatter=scatter)
    return _kernels


def add_scaled(total: np.ndarray, weights: np.ndarray, factor: np.ndarray, run: int, first: bool) -> None:
    """``total += weights * repeat(factor, run)`` in place (``=`` when ``first``), float64.

    Args:
        total / weights: (factor.size * run,), C-contiguous float64; ``total`` is written.
        factor: (blocks,), the scale of each run of ``run`` consecutive units.
    """
    _compiled()["add_scaled"](total, weights, factor, run, first)


def scatter_add(total: np.ndarray, read: np.ndarray, col: np.ndarray | None, weights: np.ndarray) -> None:
    """``total[read[i]] += weights[col[i]]`` for every i, in place (``weights[i]`` when ``col`` is None).

    Args:
        total: (units,) float64, written.
        read / col: (M,) int, the target unit and the source entry of each term.
        weights: float64, C-contiguous.
    """
    if col is None:
        _compiled()["scatter"](total, read, weights)
    else:
        _compiled()["scatter_cols"](total, read, col, weights)


def unit_moments(incoming: np.ndarray, outgoing: np.ndarray) -> tuple[np.ndarray, float]:
    """(per-node mean, population std over every unit) of ``incoming[:, None] + outgoing``.

    Args:
        incoming: (nodes,) float64, the same for every position of a node.
        outgoing: (nodes, P) float64.
    """
    means, std = _compiled()["unit_moments"](np.ascontiguousarray(incoming, dtype=np.float64),
                                             np.ascontiguousarray(outgoing, dtype=np.float64))
    return means, float(std)
