"""Shapes of logged histograms, row by row: the weights' (moments, peak at zero) and the node
strengths' distribution over the neurons of a layer (the bag-of-neurons of Scabini & Bruno 2023).

>>> e = np.array([[0.0, 1.0, 2.0, 3.0, 4.0]]); c = np.array([[1.0, 1.0, 1.0, 1.0]])
>>> q = strength_distribution(e, c, np.array([2.0]))
>>> float(q["s_q50"][0]), round(float(q["s_entropy"][0]), 6)
(1.0, 1.0)
"""

from __future__ import annotations

import math

import numpy as np

from ..loading.run import HistogramSeries

#: Quantiles of the node strengths over a layer's neurons (relative to their mean).
STRENGTH_QUANTILES = (10, 25, 50, 75, 90)
NEURON_STATS = (*(f"s_q{q}" for q in STRENGTH_QUANTILES), "s_entropy")


def histogram_shape(edges: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Shape of histograms given row-wise: edges (n, k + 1), counts (n, k) -> four (n,) arrays.

    Moments use the bin centres. ``h_peak0`` is the density of the bin holding
    zero times std * sqrt(2 pi) (0 when zero lies outside the histogram).
    """
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum(axis=1)
    nan = np.full(n.shape, np.nan)
    out = {"h_kurt": nan.copy(), "h_skew": nan.copy(), "h_peak0": nan.copy(), "h_mode": nan.copy()}
    for r in np.flatnonzero(n > 0):
        e, c = edges[r], counts[r]
        centres = (e[:-1] + e[1:]) / 2.0
        mean = float(c @ centres) / n[r]
        d = centres - mean
        var = float(c @ d ** 2) / n[r]
        if not var > 0:
            continue
        std = math.sqrt(var)
        out["h_kurt"][r] = float(c @ d ** 4) / n[r] / var ** 2
        out["h_skew"][r] = float(c @ d ** 3) / n[r] / std ** 3
        out["h_mode"][r] = (centres[int(np.argmax(c))] - mean) / std
        density = 0.0
        if e[0] <= 0.0 <= e[-1]:
            j = min(int(np.searchsorted(e, 0.0, side="right")) - 1, c.size - 1)
            width = e[j + 1] - e[j]
            density = c[j] / (n[r] * width) if width > 0 else 0.0
        out["h_peak0"][r] = density * std * math.sqrt(2 * math.pi)
    return out


def histogram_rows(steps: np.ndarray, hist: HistogramSeries | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The histogram rows at ``steps``: (has (n,) bool, edges (n, k+1), counts (n, k))."""
    if hist is None or len(hist.steps) == 0:
        return np.zeros(steps.shape, bool), np.zeros((steps.size, 2)), np.zeros((steps.size, 1))
    at = np.asarray(hist.steps, dtype=np.int64)
    i = np.clip(np.searchsorted(at, steps), 0, at.size - 1)
    has = at[i] == steps
    return has, np.asarray(hist.edges)[i], np.asarray(hist.counts)[i]


def strength_distribution(edges: np.ndarray, counts: np.ndarray, mean: np.ndarray) -> dict[str, np.ndarray]:
    """The node-strength histograms' distribution over neurons, row-wise: edges (n, k + 1), counts (n, k),
    mean (n,) the layers' mean strength -> (n,) arrays ``s_q10 .. s_q90`` (quantiles, linear within a
    bin, over ``mean``) and ``s_entropy`` (entropy of the bin frequencies over log(k): 1 when spread
    evenly, 0 when every neuron falls in one bin). NaN where a row is empty."""
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum(axis=1)
    out = {name: np.full(n.shape, np.nan) for name in NEURON_STATS}
    for r in np.flatnonzero(n > 0):
        cdf = np.concatenate([[0.0], np.cumsum(counts[r])]) / n[r]
        for q in STRENGTH_QUANTILES:
            out[f"s_q{q}"][r] = np.interp(q / 100.0, cdf, edges[r]) / mean[r] if mean[r] > 0 else np.nan
        f = counts[r][counts[r] > 0] / n[r]
        k = counts.shape[1]
        out["s_entropy"][r] = float(-(f * np.log(f)).sum() / math.log(k)) if k > 1 else np.nan
    return out
