"""A run's weights at its last logged step, per layer and pooled per role.

What the comparison plots and tests: the seed paper's features are the mean
and std of each layer's weights (and of all of them), and the mean node
strength of each layer (see ../shared/reference/metrics.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from weightwatch.layers import LayerInfo
from weightwatch.tags import ALL, STRENGTH, WEIGHTS

from ..loading.run import Run


def last(run: Run, tag: str) -> float:
    """The tag's value at the run's last step (NaN when the run does not have it)."""
    s = run.scalars.get(tag)
    return float(s.values[-1]) if s is not None and s.values.size else math.nan


@dataclass
class Pooled:
    """Statistics of a set of weights (one layer, a role's layers, or all).

    Attributes:
        mean / std: of the weights (population std).
        strength: mean node strength S = sum_i |w_ij| of its nodes (NaN without nodes).
        strength_pos / strength_neg: mean S+ and S- (the paper's + and - parts).
        count: number of finite weights.
    """

    mean: float
    std: float
    strength: float = math.nan
    strength_pos: float = math.nan
    strength_neg: float = math.nan
    count: int = 0


def layer_final(run: Run, layer: LayerInfo) -> Pooled:
    """One layer's final statistics (NaN where the run lacks the tag)."""
    w = f"{WEIGHTS}/{layer.name}"
    s = f"{STRENGTH}/{layer.name}"
    bad = last(run, f"{w}/nonfinite")
    count = layer.size - (int(bad) if math.isfinite(bad) else 0)
    return Pooled(last(run, f"{w}/mean"), last(run, f"{w}/std"), last(run, f"{s}/mean"),
                  last(run, f"{s}/pos_mean"), last(run, f"{s}/neg_mean"), count)


def pool(parts: list[tuple[LayerInfo, Pooled]]) -> Pooled:
    """The statistics of several layers' weights together, from each layer's.

    mean = sum(n_i mu_i) / N; E[w^2] = sum(n_i (sigma_i^2 + mu_i^2)) / N;
    node strengths are averaged over all nodes.

    >>> a = LayerInfo("a", "linear", "fc", (2, 2)); b = LayerInfo("b", "linear", "fc", (1, 4))
    >>> p = pool([(a, Pooled(1.0, 0.0, count=4)), (b, Pooled(-1.0, 0.0, count=4))])
    >>> p.mean, p.std
    (0.0, 1.0)
    """
    parts = [(info, p) for info, p in parts if p.count > 0 and math.isfinite(p.mean) and math.isfinite(p.std)]
    if not parts:
        return Pooled(math.nan, math.nan)
    n = np.array([p.count for _, p in parts], dtype=np.float64)
    mu = np.array([p.mean for _, p in parts])
    sd = np.array([p.std for _, p in parts])
    total = n.sum()
    mean = float((n * mu).sum() / total)
    var = max(float((n * (sd ** 2 + mu ** 2)).sum() / total - mean ** 2), 0.0)
    nodes = [(info.nodes, p) for info, p in parts if info.has_nodes and math.isfinite(p.strength)]
    k = np.array([c for c, _ in nodes], dtype=np.float64)

    def node_mean(attr: str) -> float:
        return float((k * np.array([getattr(p, attr) for _, p in nodes])).sum() / k.sum()) if nodes else math.nan

    return Pooled(mean, math.sqrt(var), node_mean("strength"), node_mean("strength_pos"),
                  node_mean("strength_neg"), int(total))


def role_final(run: Run) -> dict[str, Pooled]:
    """Final statistics per layer role (in first-seen order), and ``all`` (every watched kernel)."""
    by_role: dict[str, list[tuple[LayerInfo, Pooled]]] = {}
    for layer in run.layers:
        by_role.setdefault(layer.role, []).append((layer, layer_final(run, layer)))
    out = {role: pool(parts) for role, parts in by_role.items()}
    out[ALL] = Pooled(last(run, f"{WEIGHTS}/{ALL}/mean"), last(run, f"{WEIGHTS}/{ALL}/std"),
                      count=sum(p.count for parts in by_role.values() for _, p in parts))
    return out
