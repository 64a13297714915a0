"""Label runs by their final metric and group them as the seed paper's Table 2 does.

Groups, per architecture family:

- ``non``: did not converge: the metric stayed at chance (within
  :data:`CHANCE_MARGIN` of 1 / classes, classes read off the output layer),
  the loss did not fall (last >= first, or not finite), or the weights hold
  non-finite values;
- ``low`` / ``mid`` / ``high``: the other runs, split at two thresholds on
  the metric: given (``--thresholds a,b``: low < a <= mid < b <= high) or found
  by clustering the family's values into three (exact 1-D k-means,
  :func:`natural_breaks`).

Runs without the metric are *unlabelled*: listed with the reason, never
dropped silently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..loading.metric import METRIC_NAMES, final_metric, find_metric
from ..loading.run import Run

GROUPS = ("non", "low", "mid", "high")
#: A classifier whose accuracy is at most chance + this did not learn.
CHANCE_MARGIN = 0.05
#: Loss tags tried, in order, for "the loss did not fall" and the convergence figure.
LOSS_NAMES = ("loss", "train_loss", "val_loss")
_KIND_NAMES = (("attention", "Transformer"), ("conv", "CNN"), ("linear", "DNN"))


@dataclass
class Labelled:
    """One run with its final metric and group.

    Attributes:
        value: the metric at the run's last step.
        family: see :func:`family_of`.
        group: one of :data:`GROUPS`.
        reasons: why the run is ``non`` (empty otherwise).
    """

    run: Run
    metric: str
    value: float
    family: str
    group: str = ""
    reasons: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.run.name


@dataclass
class Grouping:
    """Every run of a population, labelled and grouped.

    Attributes:
        labelled: runs with the metric, in run-name order.
        unlabelled: run name -> why it has no label.
        thresholds: family -> the boundaries used: (low|mid, mid|high), or (low|high,) when
            the family's converged runs form two groups only.
        metric: the metric asked for (None: auto-detected per run).
        given: the thresholds asked for (None: clustered).
    """

    labelled: list[Labelled]
    unlabelled: dict[str, str]
    thresholds: dict[str, tuple[float, ...]]
    metric: str | None = None
    given: tuple[float, float] | None = None

    @property
    def families(self) -> list[str]:
        return sorted({lab.family for lab in self.labelled})

    def members(self, family: str | None = None, group: str | None = None) -> list[Labelled]:
        return [lab for lab in self.labelled
                if (family is None or lab.family == family) and (group is None or lab.group == group)]

    def metrics(self) -> list[str]:
        """The metric tags used, most common first."""
        tags = [lab.metric for lab in self.labelled]
        return sorted(set(tags), key=lambda t: (-tags.count(t), t))


def family_of(run: Run) -> str:
    """The run's model family: its layer kinds and role sequence, shapes ignored.

    DNN, CNN or Transformer (the paper's DNN, CNN and ViT) by the richest layer
    kind, then the roles of its layers in order (``fc×2``: two in a row), so
    runs that differ only in width share a family and line up layer by layer.
    ``unknown`` without ``weightwatch.json``.

    >>> from pathlib import Path
    >>> layer = lambda kind, role: {"name": "x", "kind": kind, "role": role, "shape": [4, 4]}
    >>> family_of(Run("r", Path("r"), info={"layers": [layer("conv", "conv"), layer("linear", "output")]}))
    'CNN (conv, output)'
    >>> family_of(Run("r", Path("r"), info={"layers": [layer("linear", "fc")] * 2 + [layer("linear", "output")]}))
    'DNN (fc×2, output)'
    """
    layers = run.info.get("layers") or []
    if not layers:
        return "unknown"
    kinds = {layer.get("kind") for layer in layers}
    name = next((label for kind, label in _KIND_NAMES if kind in kinds), "other")
    runs: list[list] = []
    for layer in layers:
        role = str(layer.get("role"))
        if runs and runs[-1][0] == role:
            runs[-1][1] += 1
        else:
            runs.append([role, 1])
    return f"{name} ({', '.join(role if n == 1 else f'{role}×{n}' for role, n in runs)})"


def chance_level(run: Run) -> float | None:
    """1 / classes, classes being the output layer's units; None when unknown."""
    outputs = [layer for layer in run.info.get("layers") or [] if layer.get("role") == "output"]
    if not outputs or not outputs[-1].get("shape"):
        return None
    classes = int(outputs[-1]["shape"][0])
    return 1.0 / classes if classes > 1 else None


def loss_tag(run: Run) -> str | None:
    for name in LOSS_NAMES:
        tag = find_metric(run, name)
        if tag is not None:
            return tag
    return None


def not_converged(run: Run, value: float) -> list[str]:
    """Why the run did not converge (empty when it did); ``value`` is its final metric."""
    reasons = []
    if not math.isfinite(value):
        reasons.append(f"final metric is {value}")
    chance = chance_level(run)
    if chance is not None and 0.0 <= value <= 1.0 and value <= chance + CHANCE_MARGIN:
        reasons.append(f"metric {value:.3f} at chance ({chance:.3f})")
    tag = loss_tag(run)
    if tag is not None:
        loss = run.scalars[tag].values
        if loss.size and not np.isfinite(loss[-1]):
            reasons.append(f"{tag} is {loss[-1]}")
        elif loss.size >= 2 and loss[-1] >= loss[0]:
            reasons.append(f"{tag} did not fall ({loss[0]:.3g} -> {loss[-1]:.3g})")
    bad = run.scalars.get("weights/all/nonfinite")
    if bad is not None and bad.values.size and bad.values[-1] > 0:
        reasons.append(f"{int(bad.values[-1])} non-finite weights")
    return reasons


def natural_breaks(values: Sequence[float], k: int = 3) -> list[float]:
    """Boundaries splitting ``values`` into ``k`` groups with the least within-group
    squared deviation (exact 1-D k-means by dynamic programming, O(k n^2)).

    Returns the k - 1 boundaries: the lowest value of each group but the first,
    so group g holds the values in [b[g-1], b[g]). Fewer distinct values than
    k give fewer boundaries.

    >>> natural_breaks([0.1, 0.12, 0.5, 0.52, 0.9, 0.95])
    [0.5, 0.9]
    >>> natural_breaks([0.3, 0.3, 0.8])
    [0.8]
    """
    v = np.sort(np.asarray(values, dtype=np.float64))
    k = min(k, np.unique(v).size)
    n = v.size
    if k <= 1:
        return []
    s1 = np.concatenate([[0.0], np.cumsum(v)])
    s2 = np.concatenate([[0.0], np.cumsum(v * v)])

    def cost(i: np.ndarray, j: int) -> np.ndarray:
        """Squared deviation of v[i:j] for each start i (j exclusive)."""
        m = j - i
        return s2[j] - s2[i] - (s1[j] - s1[i]) ** 2 / m

    best = np.full((k + 1, n + 1), np.inf)
    cut = np.zeros((k + 1, n + 1), dtype=np.int64)
    best[0, 0] = 0.0
    for g in range(1, k + 1):
        for j in range(g, n + 1):
            i = np.arange(g - 1, j)
            total = best[g - 1, i] + cost(i, j)
            arg = int(np.argmin(total))
            best[g, j], cut[g, j] = total[arg], i[arg]
    bounds = []
    j = n
    for g in range(k, 1, -1):
        j = int(cut[g, j])
        bounds.append(float(v[j]))
    return sorted(bounds)


def _group(value: float, bounds: Sequence[float]) -> str:
    """low / mid / high by boundaries (a value on a boundary goes up); with fewer
    boundaries, the groups at the top: one group is all "high", two are "low" and "high"."""
    names = (["high"], ["low", "high"], ["low", "mid", "high"])[len(bounds)]
    return names[int(np.searchsorted(np.asarray(bounds), value, side="right"))]


def group_runs(runs: Sequence[Run], metric: str | None = None,
               thresholds: tuple[float, float] | None = None) -> Grouping:
    """Label and group ``runs`` (see the module doc).

    Args:
        metric: the metric tag; None tries val_accuracy, eval_accuracy, accuracy, test_accuracy, acc.
        thresholds: (a, b) with a <= b, the same for every family; None clusters each family.
    """
    if thresholds is not None and not (len(thresholds) == 2 and all(map(math.isfinite, thresholds))
                                       and thresholds[0] <= thresholds[1]):
        raise ValueError(f"thresholds must be two finite, increasing numbers, got {thresholds}")
    labelled: list[Labelled] = []
    unlabelled: dict[str, str] = {}
    for run in sorted(runs, key=lambda r: r.name):
        found = final_metric(run, metric)
        if found is None:
            wanted = metric or " / ".join(METRIC_NAMES)
            users = sorted(t for t in run.scalars if not t.startswith(("weights/", "bias/", "node_strength/")))
            unlabelled[run.name] = f"no {wanted} scalar (its scalars: {', '.join(users[:8]) or 'none'})"
            continue
        tag, value = found
        lab = Labelled(run, tag, value, family_of(run))
        lab.reasons = not_converged(run, value)
        if lab.reasons:
            lab.group = "non"
        labelled.append(lab)
    bounds: dict[str, tuple[float, ...]] = {}
    for family in sorted({lab.family for lab in labelled}):
        rest = [lab for lab in labelled if lab.family == family and not lab.reasons]
        cuts = list(thresholds) if thresholds is not None else natural_breaks([lab.value for lab in rest], 3)
        for lab in rest:
            lab.group = _group(lab.value, cuts)
        if cuts:
            bounds[family] = tuple(float(x) for x in cuts)
    return Grouping(labelled, unlabelled, bounds, metric, thresholds)


@dataclass
class TableRow:
    """One row of the Table 2 equivalent."""

    family: str
    group: str
    runs: int
    min: float
    median: float
    max: float

    def as_dict(self) -> dict[str, object]:
        return {"family": self.family, "group": self.group, "runs": self.runs, "min": self.min,
                "median": self.median, "max": self.max}


def table(grouping: Grouping) -> list[TableRow]:
    """Min / median / max of the metric per family and group (the paper's Table 2)."""
    rows = []
    for family in grouping.families:
        for group in GROUPS:
            values = np.array([lab.value for lab in grouping.members(family, group)])
            if values.size:
                rows.append(TableRow(family, group, int(values.size), float(np.nanmin(values)),
                                     float(np.nanmedian(values)), float(np.nanmax(values))))
    return rows
