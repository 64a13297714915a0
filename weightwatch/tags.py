"""The tag layout of a weightwatch run (the README's tag table, as code).

=====================================  =========  ==========================================
tag                                    type       value
=====================================  =========  ==========================================
``weights/<layer>/<stat>``             scalar     kernel statistics, stat in WEIGHT_STATS
``bias/<layer>/<stat>``                scalar     the same for the bias vector
``weights/all/<stat>``                 scalar     over every watched kernel together
``node_strength/<layer>/<stat>``       scalar     mean, std, pos_mean, neg_mean, fluctuation
                                                  (over every consumer in the data flow, see
                                                  docs/node-strength.md), head<h>_mean for
                                                  attention projections
``weights/<layer>``                    histogram  the kernel's values
``node_strength/<layer>``              histogram  the node strengths S
``<metric>``                           scalar     the user's own metrics, under their names
=====================================  =========  ==========================================
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .stats import Snapshot

WEIGHTS = "weights"
BIAS = "bias"
STRENGTH = "node_strength"
ALL = "all"


def scalar_tags(snapshot: Snapshot) -> dict[str, float]:
    out: dict[str, float] = {}
    for layer in snapshot.layers:
        name = layer.info.name
        out.update({f"{WEIGHTS}/{name}/{k}": v for k, v in layer.weights.as_dict().items()})
        if layer.bias is not None:
            out.update({f"{BIAS}/{name}/{k}": v for k, v in layer.bias.as_dict().items()})
        if layer.strength is not None:
            out.update({f"{STRENGTH}/{name}/{k}": v for k, v in layer.strength.as_dict().items()})
    out.update({f"{WEIGHTS}/{ALL}/{k}": v for k, v in snapshot.total.as_dict().items()})
    return out


def histogram_tags(snapshot: Snapshot, bins: int) -> Iterator[tuple[str, np.ndarray, np.ndarray, float, float]]:
    """Yields (tag, edges (k+1,), counts (k,), sum, sum of squares) per histogram."""
    for layer in snapshot.layers:
        w = layer.weights
        yield (f"{WEIGHTS}/{layer.info.name}", layer.edges, layer.counts,
               w.mean * w.count if w.count else 0.0, w.l2 ** 2)
        if layer.strength is not None:
            s = layer.strength.strength
            finite = s[np.isfinite(s)]
            if finite.size:
                counts, edges = small_histogram(finite, bins)
                yield f"{STRENGTH}/{layer.info.name}", edges, counts, float(finite.sum()), float(finite @ finite)


def small_histogram(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """``numpy.histogram(values, bins=bins)`` for a finite (n,) vector, without its per-call overhead
    (a node-strength vector per layer, every log: 60 us each for a thousand layers adds up).

    Same edges (``linspace`` over [min, max], widened by 0.5 each way when constant) and the same
    counts: bin i is [edges[i], edges[i + 1]), the last one closed, each value placed by
    comparison with the edges themselves. Returns (counts (bins,), edges (bins + 1,)).
    """
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    index = np.minimum(np.searchsorted(edges, values, side="right") - 1, bins - 1)
    return np.bincount(index, minlength=bins), edges
