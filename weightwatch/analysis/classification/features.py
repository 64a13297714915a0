"""Architecture-agnostic features of a run at any logged step: its weights and its curves so far.

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
  ``s_q10 .. s_q90``, ``s_entropy``: the distribution of node strength over the
  layer's neurons (the bag-of-neurons of Scabini & Bruno 2023), from the same
  histogram: quantiles over s_mean, normalised entropy (:mod:`.histograms`);
- ``h_kurt, h_skew``: kurtosis and skewness of the ``weights/<layer>``
  histogram (bin centres), ``h_peak0``: its density at zero times
  std * sqrt(2 pi) (1 for a Gaussian centred on zero, > 1 for a peak at zero),
  ``h_mode``: (mode - mean) / std.

Each of these also comes as ``<name>:delta`` (change since the previous logged
step) and ``<name>:start`` (change since the first logged step); both are NaN
at the first step. Per slot, how far the layers moved since the previous log
relative to their size: ``u_shift``, ``u_norm``, ``u_strength`` (see
:func:`layer_updates`). Then ``arch/depth`` (layers with nodes),
``arch/log10_params`` and ``arch/log2_width`` (mean log2 nodes of the hidden
layers, else of the first). Last, the learning-curve features ``curve/*`` of
:mod:`.curves` (metric and loss so far, their slope, the train-validation
gap, parametric extrapolations to the final step), from the points logged at
steps <= the step only. :data:`FEATURE_NAMES` lists every name, in the
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

from ..loading.run import Run
from .curves import CURVE_NAMES, curve_features
from .histograms import NEURON_STATS, histogram_rows, histogram_shape, strength_distribution

__all__ = ["ARCH", "CURVE_NAMES", "FEATURE_NAMES", "FEATURE_SET", "FEATURE_VERSION", "FeatureTable", "SLOTS",
           "UPDATE_NAMES", "assign_slots", "feature_index", "histogram_shape", "run_features"]

FEATURE_SET = "weightwatch-features"
FEATURE_VERSION = 2

SLOTS = ("first", "hidden", "output", "conv", "attn", "mlp", "norm", "all")
_TENSOR = ("p0", "p25", "p50", "p75", "p100", "mean", "std")
STATS = (
    *(f"w_{s}" for s in _TENSOR), "w_nonfinite",
    *(f"b_{s}" for s in _TENSOR),
    "s_mean", "s_std", "s_pos", "s_neg", "s_fluct", "s_per_input", "s_cv", "s_min_rel", "s_max_rel",
    *NEURON_STATS,
    "h_kurt", "h_skew", "h_peak0", "h_mode",
)
CHANGES = ("delta", "start")
ARCH = ("arch/depth", "arch/log10_params", "arch/log2_width")
#: How far each layer moved since the previous log, relative to its size (see the module doc).
UPDATES = ("u_shift", "u_norm", "u_strength")
_BASE = tuple(f"{slot}/{stat}" for slot in SLOTS for stat in STATS)
UPDATE_NAMES = tuple(f"{slot}/{u}" for slot in SLOTS for u in UPDATES)
FEATURE_NAMES: tuple[str, ...] = (*_BASE, *(f"{n}:{c}" for c in CHANGES for n in _BASE), *UPDATE_NAMES, *ARCH,
                                  *CURVE_NAMES)
_SHIFT_QUANTILES = ("p0", "p25", "p50", "p75", "p100")

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
        has, edges, counts = histogram_rows(steps, run.histograms.get(f"{STRENGTH}/{layer.name}"))
        lo = np.where(has, edges[:, 0], np.nan)
        hi = np.where(has, edges[:, -1], np.nan)
        out["s_min_rel"] = lo / out["s_mean"]
        out["s_max_rel"] = hi / out["s_mean"]
        out.update(strength_distribution(edges, np.where(has[:, None], counts, 0.0), out["s_mean"]))
    has, edges, counts = histogram_rows(steps, run.histograms.get(f"{WEIGHTS}/{layer.name}"))
    shape = histogram_shape(edges, np.where(has[:, None], counts, 0.0))
    out.update(shape)
    out.update(layer_updates(out, tag(WEIGHTS, "l2")))
    return out


def layer_updates(stats: dict[str, np.ndarray], l2: np.ndarray) -> dict[str, np.ndarray]:
    """One layer's change since its previous log, each (n,) (NaN at the first log), from ``stats``
    (:func:`layer_stats`) and its weights' L2 norm ``l2`` (n,):

    - ``u_shift``: root mean square change of the kernel's percentiles 0/25/50/75/100 over the
      weights' root mean square sqrt(mean^2 + std^2): the distance the weight distribution moved,
      relative to the weights' size (a lower bound on ||W_t - W_t-1|| / ||W_t-1|| for the
      quantile coupling; the tensors themselves are not logged);
    - ``u_norm``: relative change of the kernel's L2 norm; ``u_strength``: of its mean node strength.
    """
    n = l2.size
    out = {u: np.full(n, np.nan) for u in UPDATES}
    if n < 2:
        return out
    q = np.vstack([stats[f"w_{p}"] for p in _SHIFT_QUANTILES])
    rms = np.sqrt(stats["w_mean"] ** 2 + stats["w_std"] ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["u_shift"][1:] = np.sqrt(np.mean(np.diff(q, axis=1) ** 2, axis=0)) / rms[:-1]
        out["u_norm"][1:] = np.diff(l2) / l2[:-1]
        out["u_strength"][1:] = np.diff(stats["s_mean"]) / stats["s_mean"][:-1]
    return out


def _slot_mean(arrays: list[np.ndarray], n: int) -> np.ndarray:
    if not arrays:
        return np.full(n, np.nan)
    stack = np.vstack(arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, as intended
        return np.nanmean(stack, axis=0)


def run_features(run: Run, metric: str | None = None, horizon: int | None = None) -> FeatureTable:
    """Features of ``run`` at every step its weights were logged (see the module doc).

    ``metric`` / ``horizon``: the curve features' metric and the step they extrapolate it to
    (:func:`~.curves.curve_features`); a reference passes its own.
    """
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
    updates = np.full((n, len(UPDATE_NAMES)), np.nan)
    col = 0
    for slot, members in assign_slots(layers).items():
        for u in UPDATES:
            updates[:, col] = _slot_mean([per_layer[i][u] for i in members], n)
            col += 1
    updates[~np.isfinite(updates)] = np.nan
    values = np.hstack([base, delta, start, updates, np.tile(arch_features(layers), (n, 1)),
                        curve_features(run, steps, metric, horizon)])
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
