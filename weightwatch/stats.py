"""Host-side maths: turn per-layer reductions into the logged statistics.

Pure numpy on small arrays (one value per node at most). Definitions follow
../shared/reference/metrics.md; the README's tag table lists every output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .layers import LayerInfo
from .ops.raw import RawLayer
from .ops.units import unit_moments

PERCENTILES = (0, 25, 50, 75, 100)
WEIGHT_STATS = ("mean", "std", "min", "max", "l2", *(f"p{q}" for q in PERCENTILES), "nonfinite")
STRENGTH_STATS = ("mean", "std", "pos_mean", "neg_mean", "fluctuation")


@dataclass
class TensorStats:
    """Statistics of one set of weights (finite entries; ``nonfinite`` counts the rest).

    ``std`` is the population std (ddof 0). ``percentiles`` maps q -> value.
    """

    count: int
    nonfinite: int
    mean: float
    std: float
    min: float
    max: float
    l2: float
    percentiles: dict[int, float]

    def as_dict(self) -> dict[str, float]:
        out = {"mean": self.mean, "std": self.std, "min": self.min, "max": self.max, "l2": self.l2}
        out.update({f"p{q}": v for q, v in self.percentiles.items()})
        out["nonfinite"] = float(self.nonfinite)
        return out


@dataclass
class NodeStrength:
    """Node strengths of one layer; every array has shape (nodes,).

    Attributes:
        strength: S_j = sum_i |w_ij| (seed paper's absolute in-strength).
        positive: S+_j = sum_i max(w_ij, 0).
        negative: S-_j = sum_i min(w_ij, 0).
        signed: complex-network strength: signed in-sum + bias + signed out-sum
            into every consumer (see :mod:`weightwatch.flow`); for a convolution
            the mean over its output positions of the per-position strengths.
        head_means: mean S per attention head, shape (heads,), or empty.
        fluctuation: std (ddof 0) of the signed strengths of every *unit*: the
            (channel, position) units of a convolution, the nodes otherwise.
    """

    strength: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    signed: np.ndarray
    head_means: np.ndarray = field(default_factory=lambda: np.zeros(0))
    fluctuation: float | None = None

    def as_dict(self) -> dict[str, float]:
        out = {
            "mean": float(self.strength.mean()),
            "std": float(self.strength.std()),
            "pos_mean": float(self.positive.mean()),
            "neg_mean": float(self.negative.mean()),
            "fluctuation": float(self.signed.std()) if self.fluctuation is None else self.fluctuation,
        }
        out.update({f"head{h}_mean": float(v) for h, v in enumerate(self.head_means)})
        return out


@dataclass
class LayerSummary:
    info: LayerInfo
    weights: TensorStats
    edges: np.ndarray  # (bins + 1,)
    counts: np.ndarray  # (bins,)
    bias: TensorStats | None = None
    strength: NodeStrength | None = None


@dataclass
class Snapshot:
    """Everything computed at one log call."""

    step: int
    layers: list[LayerSummary]
    total: TensorStats
    #: per layer, the kernel's values at the sketch positions (see weightwatch.sketch)
    sketch: list[np.ndarray | None] = field(default_factory=list)


def _invert_cdf(xs: np.ndarray, cdf: np.ndarray, qs: Sequence[float], lo: float, hi: float) -> dict[int, float]:
    """Percentiles of a piecewise-linear CDF given at points xs (both (m,), cdf
    increasing from 0 to the total count); q = 0 and 100 give the exact lo / hi."""
    n = cdf[-1]
    if n == 0:
        return {int(q): math.nan for q in qs}
    q = np.asarray(qs, dtype=np.float64)
    target = q / 100.0 * n
    # the first point where the CDF reaches q% of the mass; side='left' skips empty bins
    i = np.clip(np.searchsorted(cdf, target, side="left"), 1, len(cdf) - 1)
    rise = cdf[i] - cdf[i - 1]
    frac = (target - cdf[i - 1]) / np.where(rise > 0, rise, 1.0)
    values = np.clip(xs[i - 1] + frac * (xs[i] - xs[i - 1]), lo, hi)
    values = np.where(q <= 0, lo, np.where(q >= 100, hi, values))
    return {int(k): float(v) for k, v in zip(qs, values)}


def _cdf(counts: np.ndarray) -> np.ndarray:
    """(k,) bin counts -> (k + 1,) cumulative counts at the bin edges."""
    return np.concatenate([[0.0], np.cumsum(counts, dtype=np.float64)])


def histogram_percentiles(edges: np.ndarray, counts: np.ndarray, qs: Sequence[float],
                          lo: float, hi: float) -> dict[int, float]:
    """Percentiles read off a histogram, values spread uniformly within each bin.

    Args:
        edges: (k + 1,) bin edges; counts: (k,) counts.
        lo / hi: the exact minimum and maximum, returned for q = 0 and 100.
    The error is at most one bin width.
    """
    return _invert_cdf(np.asarray(edges, dtype=np.float64), _cdf(counts), qs, lo, hi)


def merged_percentiles(hists: Sequence[tuple[np.ndarray, np.ndarray]], qs: Sequence[float],
                       lo: float, hi: float) -> dict[int, float]:
    """Percentiles of the union of several histograms with different edges.

    Each histogram's CDF is piecewise linear between its edges; their sum is
    piecewise linear between the union of all edges, so it is evaluated there
    exactly and inverted by linear interpolation. It is built from the summed
    densities (each bin adds its count / width from its left edge and takes it
    back at its right one), in O(N log N) for N edges in all: evaluating every
    CDF at every edge would be quadratic in the layer count. A bin of zero width
    (a constant kernel) is a step of its count at that point.
    """
    hists = [(np.asarray(e, dtype=np.float64), np.asarray(c, dtype=np.float64)) for e, c in hists if c.sum() > 0]
    if not hists:
        return {int(q): math.nan for q in qs}
    left = np.concatenate([e[:-1] for e, _ in hists])
    right = np.concatenate([e[1:] for e, _ in hists])
    mass = np.concatenate([c for _, c in hists])
    width = right - left
    spread = width > 0
    density = np.where(spread, mass / np.where(spread, width, 1.0), 0.0)
    xs = np.unique(np.concatenate([left, right]))
    change = np.zeros(xs.size)
    np.add.at(change, np.searchsorted(xs, left[spread]), density[spread])
    np.add.at(change, np.searchsorted(xs, right[spread]), -density[spread])
    slope = np.cumsum(change)[:-1]  # the summed density on each interval [xs[j], xs[j + 1])
    cdf = np.concatenate([[0.0], np.cumsum(slope * np.diff(xs))])
    if not spread.all():  # point masses: the CDF steps up there, so such a point is listed twice
        steps = np.zeros(xs.size)
        np.add.at(steps, np.searchsorted(xs, left[~spread]), mass[~spread])
        after = cdf + np.cumsum(steps)
        jump = steps > 0
        xs = np.concatenate([xs[jump], xs])
        cdf = np.concatenate([(after - steps)[jump], after])
        order = np.lexsort((cdf, xs))
        xs, cdf = xs[order], cdf[order]
    return _invert_cdf(xs, cdf, qs, lo, hi)


def _moments(count: int, total: float, total_sq: float) -> tuple[float, float]:
    if count == 0:
        return math.nan, math.nan
    mean = total / count
    var = max(total_sq / count - mean * mean, 0.0)  # float64 sums: no harmful cancellation
    return mean, math.sqrt(var)


def kernel_stats(raw: RawLayer) -> TensorStats:
    mean, std = _moments(raw.count, raw.total, raw.total_sq)
    return TensorStats(
        count=raw.count, nonfinite=raw.nonfinite, mean=mean, std=std, min=raw.min, max=raw.max,
        l2=math.sqrt(raw.total_sq),
        percentiles=histogram_percentiles(raw.edges, raw.counts, PERCENTILES, raw.min, raw.max),
    )


def vector_stats(values: np.ndarray) -> TensorStats:
    """Exact statistics of a small vector (a bias), computed directly."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        nan = math.nan
        return TensorStats(0, int(v.size), nan, nan, nan, nan, 0.0, {q: nan for q in PERCENTILES})
    # numpy's default ("linear") percentiles, without np.percentile's per-call overhead
    ordered = np.sort(finite)
    pos = np.array(PERCENTILES) / 100.0 * (ordered.size - 1)
    below = np.floor(pos).astype(int)
    above = np.minimum(below + 1, ordered.size - 1)
    pct = ordered[below] + (pos - below) * (ordered[above] - ordered[below])
    mean = float(ordered.sum()) / ordered.size
    dev = ordered - mean
    return TensorStats(
        count=int(finite.size), nonfinite=int(v.size - finite.size), mean=mean,
        std=math.sqrt(float(np.dot(dev, dev)) / ordered.size), min=float(ordered[0]), max=float(ordered[-1]),
        l2=math.sqrt(float(np.dot(ordered, ordered))), percentiles=dict(zip(PERCENTILES, map(float, pct))),
    )


def node_strength(info: LayerInfo, raw: RawLayer, outgoing: np.ndarray | None) -> NodeStrength:
    """The node strengths of one layer.

    Args:
        outgoing: (nodes * P,) signed outgoing term of each unit, in unit order
            ``c * P + p`` (see :mod:`weightwatch.flow`), or None without consumers.
    """
    s = raw.row_abs
    r = raw.row_sum
    incoming = r + (raw.bias if raw.bias is not None else 0.0)
    if outgoing is None:
        signed = incoming
        fluctuation = float(signed.std())
    else:
        # a conv's in-term is the same at every position (its whole kernel plus bias); one pass per
        # moment over the (nodes, P) units instead of numpy's temporaries
        signed, fluctuation = unit_moments(incoming, outgoing.reshape(info.nodes, -1))
    heads = np.zeros(0)
    if info.heads > 1 and info.nodes % info.heads == 0:
        heads = s.reshape(info.heads, -1).mean(axis=1)
    # S+ + S- = r and S+ - S- = s, so one signed and one absolute sum give both parts.
    return NodeStrength(strength=s, positive=(s + r) / 2.0, negative=(r - s) / 2.0, signed=signed,
                        head_means=heads, fluctuation=fluctuation)


def network_stats(raws: Sequence[RawLayer]) -> TensorStats:
    """The same statistics over every watched kernel together."""
    count = sum(r.count for r in raws)
    total = sum(r.total for r in raws)
    total_sq = sum(r.total_sq for r in raws)
    mean, std = _moments(count, total, total_sq)
    finite = [r for r in raws if r.count > 0]
    lo = min((r.min for r in finite), default=math.nan)
    hi = max((r.max for r in finite), default=math.nan)
    return TensorStats(
        count=count, nonfinite=sum(r.nonfinite for r in raws), mean=mean, std=std, min=lo, max=hi,
        l2=math.sqrt(total_sq),
        percentiles=merged_percentiles([(r.edges, r.counts) for r in raws], PERCENTILES, lo, hi),
    )


def summarize(step: int, layers: Sequence[LayerInfo], raws: Sequence[RawLayer],
              outgoing: Mapping[int, np.ndarray]) -> Snapshot:
    """Build the :class:`Snapshot` for one log call.

    Args:
        layers / raws: aligned, one per watched layer.
        outgoing: ``{i: (nodes * P,)}``, the outgoing term of layer i's units
            (see :func:`weightwatch.outgoing.outgoing_terms`); layers without one get
            incoming + bias only.
    """
    out = []
    for i, (info, raw) in enumerate(zip(layers, raws)):
        strength = node_strength(info, raw, outgoing.get(i)) if info.has_nodes else None
        out.append(LayerSummary(
            info=info, weights=kernel_stats(raw), edges=raw.edges, counts=raw.counts,
            bias=vector_stats(raw.bias) if raw.bias is not None else None, strength=strength,
        ))
    return Snapshot(step=step, layers=out, total=network_stats(raws), sketch=[r.sample for r in raws])
