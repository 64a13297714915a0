"""An independent reference for the complex-network strength: the unrolled network as a networkx graph.

Each test wires its architecture by hand, edge by edge: a node is a
(layer, unit) pair (a neuron of a linear layer, a (channel, y, x) output of a
convolution), an edge carries one weight. Convolutions are unrolled by brute
force (every output position, every kernel offset). The signed strength of a
unit is its in-term by La Malfa et al.'s definition (the sum of its kernel
row, plus the bias; for a convolution the whole kernel, the same at every
position) plus the weighted out-degree of its node in this graph.
"""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np


def np_of(t) -> np.ndarray:
    return t.detach().double().numpy() if hasattr(t, "detach") else np.asarray(t, dtype=np.float64)


class Unrolled:
    def __init__(self) -> None:
        self.g = nx.DiGraph()

    def dense(self, sources: list, consumer: str, weight: np.ndarray, scale: np.ndarray | None = None) -> None:
        """sources[i] (a node or None) feeds column i of the (out, in) ``weight`` of ``consumer``."""
        weight = np_of(weight)
        for i, src in enumerate(sources):
            if src is None:
                continue
            for j in range(weight.shape[0]):
                w = weight[j, i] * (1.0 if scale is None else float(scale[i]))
                self.g.add_edge(src, (consumer, j), weight=w)

    def conv(self, sources: np.ndarray, consumer: str, weight: np.ndarray, stride: int, padding: int,
             dilation: int = 1, out: tuple[int, int] | None = None, groups: int = 1) -> tuple[int, int]:
        """sources: (C_in, H, W) object array of nodes; brute-force 2-D convolution, ``padding`` zero rows
        before (and, unless ``out`` says otherwise, after); ``weight`` (C_out, C_in / groups, kh, kw):
        output channel o reads the input channels of its group, o // (C_out / groups); returns (OH, OW)."""
        weight = np_of(weight)
        c_out, c_in, kh, kw = weight.shape
        _, h, w = sources.shape
        oh, ow = out or ((h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1,
                         (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1)
        for o, y, x, c, i, j in itertools.product(range(c_out), range(oh), range(ow), range(c_in), range(kh),
                                                  range(kw)):
            yy, xx = y * stride - padding + i * dilation, x * stride - padding + j * dilation
            if 0 <= yy < h and 0 <= xx < w:
                source = sources[o // (c_out // groups) * c_in + c, yy, xx]
                self.g.add_edge(source, (consumer, o, y, x), weight=weight[o, c, i, j])
        return oh, ow

    def out_term(self, node) -> float:
        return float(self.g.out_degree(node, weight="weight")) if node in self.g else 0.0

    def consumers(self, layer: str) -> set[str]:
        return {v[0] for u, v in self.g.edges if u[0] == layer}


def grid(layer: str, c: int, h: int, w: int) -> np.ndarray:
    out = np.empty((c, h, w), dtype=object)
    for idx in itertools.product(range(c), range(h), range(w)):
        out[idx] = (layer, *idx)
    return out


def neurons(layer: str, n: int) -> list:
    return [(layer, j) for j in range(n)]


def expected_tags(graph: Unrolled, name: str, weight, bias, units: np.ndarray | None = None,
                  heads: int = 1) -> dict[str, float]:
    """Every node_strength scalar of ``name``: absolute in-strength from the kernel, fluctuation from the graph.

    units: the layer's nodes in the graph: (nodes,) for a linear layer, (C, OH, OW) for a conv.
    """
    w = np_of(weight)
    n = w.shape[0]
    rows = w.reshape(n, -1)
    s = np.abs(rows).sum(axis=1)
    incoming = rows.sum(axis=1) + (np_of(bias) if bias is not None else 0.0)
    if units is None:  # a linear layer: one unit per neuron
        cells = np.empty((n, 1), dtype=object)
        for j in range(n):
            cells[j, 0] = (name, j)
        units = cells
    units = units.reshape(n, -1)
    signed = np.array([[incoming[c] + graph.out_term(u) for u in units[c]] for c in range(n)])
    out = {"mean": s.mean(), "std": s.std(), "pos_mean": np.maximum(rows, 0).sum(axis=1).mean(),
           "neg_mean": np.minimum(rows, 0).sum(axis=1).mean(), "fluctuation": signed.std()}
    if heads > 1:
        out.update({f"head{h}_mean": v for h, v in enumerate(s.reshape(heads, -1).mean(axis=1))})
    return out


def compare(read: dict, expected: dict[str, dict[str, float]], step: int = 0) -> float:
    """Max abs difference between the node_strength scalars read back and the expected ones; every
    expected layer's tags must be there, and no other layer's."""
    from tb_read import at

    got_layers = {tag.split("/")[1] for tag in read if tag.startswith("node_strength/")}
    assert got_layers == set(expected), (got_layers, set(expected))
    worst = 0.0
    for layer, tags in expected.items():
        written = {t.split("/")[-1] for t in read if t.startswith(f"node_strength/{layer}/")}
        assert written == set(tags), (layer, written, set(tags))
        for tag, want in tags.items():
            diff = abs(at(read[f"node_strength/{layer}/{tag}"], step) - want)
            if diff > 1e-5:
                print("  differs:", layer, tag, diff)
            worst = max(worst, diff)
    return worst
