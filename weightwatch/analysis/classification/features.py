"""Architecture-agnostic features of a run's weights, at any logged epoch.

A run's layers are grouped into *slots* that every network of a family has,
whatever its sizes, so a model fitted on some architectures applies to others:

==========  ====================================================================
slot        layers
==========  ====================================================================
``first``   the first layer with nodes (linear, conv or attention projection)
``hidden``  the layers with nodes between the first and the output one
``output``  the layer with role ``output`` (else the last layer with nodes)
``conv``    every layer of role conv (likewise ``attn``, ``mlp``, ``norm``)
``all``     every watched layer (its weight statistics are ``weights/all/*``)
==========  ====================================================================

A slot's statistic is the mean over its layers; a slot without layers gives
NaN. Per layer, at one logged step (tags as in :mod:`weightwatch.tags`):

- ``w_p0 .. w_p100, w_mean, w_std``: the kernel's percentiles 0/25/50/75/100,
  mean and std (Unterthiner et al. 2020), ``w_nonfinite``: fraction of
  non-finite entries; ``b_*``: the same 7 for the bias;
- ``s_mean, s_std, s_pos, s_neg, s_fluct``: node strength (mean and std of
  S_j = sum_i |w_ij|, mean S+ and S-, fluctuation of the signed strength),
  ``s_per_input`` = s_mean / fan-in (the mean |w|, independent of width),
  ``s_cv`` = s_std / s_mean, ``s_min_rel`` / ``s_max_rel``: the smallest and
  largest node strength (from the ``node_strength/<layer>`` histogram) over s_mean;
- ``h_kurt, h_skew``: kurtosis and skewness of the ``weights/<layer>``
  histogram (bin centres), ``h_peak0``: its density at zero times
  std * sqrt(2 pi) (1 for a Gaussian centred on zero, > 1 for a peak at zero),
  ``h_mode``: (mode - mean) / std.

Each of these also comes as ``<name>:delta`` (change since the previous logged
step) and ``<name>:start`` (change since the first logged step); both are NaN
at the first step. Finally ``arch/depth`` (layers with nodes),
``arch/log10_params`` and ``arch/log2_width`` (mean log2 nodes of the hidden
layers, else of the first). :data:`FEATURE_NAMES` lists every name, in the
order of the columns; :data:`FEATURE_VERSION` changes whenever they do.

>>> len(FEATURE_NAMES) == len(set(FEATURE_NAMES))
True
>>> FEATURE_NAMES[0]
'first/w_p0'
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from weightwatch.layers import NODE_KINDS, LayerInfo, mark_output
from weightwatch.tags import ALL, BIAS, STRENGTH, WEIGHTS

from ..loading.run import HistogramSeries, Run

FEATURE_SET = "weightwatch-features"
FEATURE_VERSION = 1

SLOTS = ("first", "hidden", "output", "conv", "attn", "mlp", "norm", "all")
_TENSOR = ("p0", "p25", "p50", "p75", "p100", "mean", "std")
STATS = (
    *(f"w_{s}" for s in _TENSOR), "w_nonfinite",
    *(f"b_{s}" for s in _TENSOR),
    "s_mean", "s_std", "s_pos", "s_neg", "s_fluct", "s_per_input", "s_cv", "s_min_rel", "s_max_rel",
    "h_kurt", "h_skew", "h_peak0", "h_mode",
)
CHANGES = ("delta", "start")
ARCH = ("arch/depth", "arch/log10_params", "arch/log2_width")
_BASE = tuple(f"{slot}/{stat}" for slot in SLOTS for stat in STATS)
FEATURE_NAMES: tuple[str, ...] = (*_BASE, *(f"{n}:{c}" for c in CHANGES for n in _BASE), *ARCH)

_STRENGTH_TAGS = {"s_mean": "mean", "s_std": "std", "s_pos": "pos_mean", "s_neg": "neg_mean",
                  "s_fluct": "fluctuation"}


@dataclass
class FeatureTable:
    """Features of one run at each step its weights were logged.

    Attributes:
        steps: (n,) int64, increasing.
        values: (n, len(FEATURE_NAMES)) float64, NaN where a feature does not apply.
    """

    steps: np.ndarray
    values: np.ndarray

    def at(self, step: int | None = None) -> tuple[int, np.ndarray]:
        """(step, row) for the latest logged step <= ``step`` (the last one when None).

        Raises ValueError when the run has no logged step that early.
        """
        if self.steps.size == 0:
            raise ValueError("the run has no logged weights")
        if step is None:
            return int(self.steps[-1]), self.values[-1]
        i = int(np.searchsorted(self.steps, step, side="right")) - 1
        if i < 0:
            raise ValueError(f"the run has no logged weights at or before step {step} "
                             f"(first: {int(self.steps[0])})")
        return int(self.steps[i]), self.values[i]

    def as_dict(self, step: int | None = None) -> dict[str, float]:
        return dict(zip(FEATURE_NAMES, map(float, self.at(step)[1])))


def assign_slots(layers: Sequence[LayerInfo]) -> dict[str, list[int]]:
    """Which layers (indices into ``layers``) make up each slot.

    >>> from weightwatch.layers import LayerInfo as L
    >>> net = [L("a", "linear", "fc", (8, 4)), L("b", "linear", "fc", (8, 8)), L("c", "linear", "output", (2, 8))]
    >>> {k: v for k, v in assign_slots(net).items() if v}
    {'first': [0], 'hidden': [1], 'output': [2], 'all': [0, 1, 2]}
    """
    nodes = [i for i, layer in enumerate(layers) if layer.kind in NODE_KINDS]
    slots: dict[str, list[int]] = {slot: [] for slot in SLOTS}
    if nodes:
        outputs = [i for i in nodes if layers[i].role == "output"]
        out = outputs[-1] if outputs else nodes[-1]
        slots["first"] = [nodes[0]]
        slots["output"] = [out]
        slots["hidden"] = [i for i in nodes if i not in (nodes[0], out)]
    for role in ("conv", "attn", "mlp", "norm"):
        slots[role] = [i for i, layer in enumerate(layers) if layer.role == role]
    slots["all"] = list(range(len(layers)))
    return slots


def _layers_of(run: Run) -> list[LayerInfo]:
    """The run's layers from weightwatch.json; without it, guessed from the tags."""
    layers = run.layers
    if layers:
        return layers
    names = []
    for tag in run.scalars:
        parts = tag.split("/")
        if len(parts) >= 3 and parts[0] == WEIGHTS and parts[-1] == "mean" and parts[1] != ALL:
            names.append("/".join(parts[1:-1]))
    kind = {n: "linear" if f"{STRENGTH}/{n}/mean" in run.scalars else "norm" for n in names}
    out = [LayerInfo(n, kind[n], "fc" if kind[n] == "linear" else "norm", (1, 1) if kind[n] == "linear" else (1,))
           for n in names]
    return mark_output(out)


def record_steps(run: Run) -> np.ndarray:
    """(n,) int64: the steps at which the run's weights were logged."""
    series = run.scalars.get(f"{WEIGHTS}/{ALL}/mean")
    if series is not None:
        return np.unique(np.asarray(series.steps, dtype=np.int64))
    found = [s.steps for tag, s in run.scalars.items() if tag.startswith(WEIGHTS + "/") and tag.endswith("/mean")]
    if not found:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(found).astype(np.int64))


def _aligned(steps: np.ndarray, at: np.ndarray, values: np.ndarray) -> np.ndarray:
    """values (m,) logged at ``at`` (m,), placed on ``steps`` (n,); NaN where missing."""
    out = np.full(steps.shape, np.nan)
    if at.size == 0:
        return out
    i = np.clip(np.searchsorted(at, steps), 0, at.size - 1)
    hit = at[i] == steps
    out[hit] = values[i[hit]]
    return out


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


def _histogram_rows(steps: np.ndarray, hist: HistogramSeries | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The histogram rows at ``steps``: (has (n,) bool, edges (n, k+1), counts (n, k))."""
    if hist is None or len(hist.steps) == 0:
        return np.zeros(steps.shape, bool), np.zeros((steps.size, 2)), np.zeros((steps.size, 1))
    at = np.asarray(hist.steps, dtype=np.int64)
    i = np.clip(np.searchsorted(at, steps), 0, at.size - 1)
    has = at[i] == steps
    return has, np.asarray(hist.edges)[i], np.asarray(hist.counts)[i]


def layer_stats(run: Run, layer: LayerInfo, steps: np.ndarray) -> dict[str, np.ndarray]:
    """The per-layer statistics of the module doc, each an (n,) array over ``steps``."""
    scalars = run.scalars

    def tag(prefix: str, stat: str) -> np.ndarray:
        series = scalars.get(f"{prefix}/{layer.name}/{stat}")
        if series is None:
            return np.full(steps.shape, np.nan)
        return _aligned(steps, np.asarray(series.steps, dtype=np.int64), np.asarray(series.values, dtype=np.float64))

    out = {f"w_{s}": tag(WEIGHTS, s) for s in _TENSOR}
    out["w_nonfinite"] = tag(WEIGHTS, "nonfinite") / max(layer.size, 1)
    out.update({f"b_{s}": tag(BIAS, s) for s in _TENSOR})
    out.update({name: tag(STRENGTH, stat) for name, stat in _STRENGTH_TAGS.items()})
    with np.errstate(divide="ignore", invalid="ignore"):
        fan_in = layer.size / layer.nodes if layer.has_nodes and layer.nodes else np.nan
        out["s_per_input"] = out["s_mean"] / fan_in
        out["s_cv"] = out["s_std"] / out["s_mean"]
        has, edges, counts = _histogram_rows(steps, run.histograms.get(f"{STRENGTH}/{layer.name}"))
        lo = np.where(has, edges[:, 0], np.nan)
        hi = np.where(has, edges[:, -1], np.nan)
        out["s_min_rel"] = lo / out["s_mean"]
        out["s_max_rel"] = hi / out["s_mean"]
    has, edges, counts = _histogram_rows(steps, run.histograms.get(f"{WEIGHTS}/{layer.name}"))
    shape = histogram_shape(edges, np.where(has[:, None], counts, 0.0))
    out.update(shape)
    return out


def _slot_mean(arrays: list[np.ndarray], n: int) -> np.ndarray:
    if not arrays:
        return np.full(n, np.nan)
    stack = np.vstack(arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, as intended
        return np.nanmean(stack, axis=0)


def run_features(run: Run) -> FeatureTable:
    """Features of ``run`` at every step its weights were logged (see the module doc)."""
    steps = record_steps(run)
    n = steps.size
    layers = _layers_of(run)
    per_layer = [layer_stats(run, layer, steps) for layer in layers]
    base = np.full((n, len(_BASE)), np.nan)
    col = 0
    for slot, members in assign_slots(layers).items():
        for stat in STATS:
            if slot == ALL and stat.startswith("w_") and stat != "w_nonfinite":
                series = run.scalars.get(f"{WEIGHTS}/{ALL}/{stat[2:]}")
                if series is not None:
                    base[:, col] = _aligned(steps, np.asarray(series.steps, dtype=np.int64),
                                            np.asarray(series.values, dtype=np.float64))
                    col += 1
                    continue
            base[:, col] = _slot_mean([per_layer[i][stat] for i in members], n)
            col += 1
    base[~np.isfinite(base)] = np.nan
    delta = np.full_like(base, np.nan)
    start = np.full_like(base, np.nan)
    if n > 1:
        delta[1:] = base[1:] - base[:-1]
        start[1:] = base[1:] - base[0]
    values = np.hstack([base, delta, start, np.tile(arch_features(layers), (n, 1))])
    return FeatureTable(steps=steps, values=values)


def arch_features(layers: Sequence[LayerInfo]) -> np.ndarray:
    """(3,): depth, log10 of the parameter count, mean log2 width (see the module doc)."""
    if not layers:
        return np.full(len(ARCH), np.nan)
    slots = assign_slots(layers)
    nodes = [i for i, layer in enumerate(layers) if layer.kind in NODE_KINDS]
    params = sum(layer.size + (layer.nodes if layer.has_bias else 0) for layer in layers)
    width_of = slots["hidden"] or slots["first"]
    widths = [math.log2(layers[i].nodes) for i in width_of if layers[i].nodes > 0]
    return np.array([
        float(len(nodes)),
        math.log10(params) if params > 0 else np.nan,
        float(np.mean(widths)) if widths else np.nan,
    ])


def feature_index(name: str) -> int:
    """Column of ``name`` in a FeatureTable's values.

    >>> FEATURE_NAMES[feature_index("output/w_std:delta")]
    'output/w_std:delta'
    """
    try:
        return FEATURE_NAMES.index(name)
    except ValueError:
        raise KeyError(f"unknown feature {name!r}; see weightwatch.analysis.classification.features.FEATURE_NAMES") from None
