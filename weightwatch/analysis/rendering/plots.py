"""What every figure shares: matplotlib (Agg backend), the colours, grids, scatter and colour bar."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from weightwatch.layers import LayerInfo

from ..comparison.groups import Labelled

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

GROUP_COLOURS = {"non": "#7f7f7f", "low": "#d62728", "mid": "#ff7f0e", "high": "#2ca02c"}
CMAP = "viridis"


def slug(text: str) -> str:
    """A file-name-safe version of ``text``.

    >>> slug("DNN (fc×2, output)")
    'dnn-fc2-output'
    """
    return re.sub(r"[^a-z0-9]+", "-", text.lower().replace("×", "")).strip("-") or "all"


def plt_agg():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def subplot_grid(n: int, width: float = 3.4, height: float = 3.0, ncols: int = 4):
    plt = plt_agg()
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols + 1.2, height * nrows + 0.6), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def colourbar(fig: MplFigure, axes: Sequence, norm, label: str) -> None:
    import matplotlib.cm as cm

    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=CMAP), ax=list(axes), shrink=0.85, label=label)


def norm_of(members: Sequence[Labelled]):
    from matplotlib.colors import Normalize

    values = np.array([lab.value for lab in members], dtype=np.float64)
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return Normalize(lo, hi if hi > lo else lo + 1e-9)


def family_layers(members: Sequence[Labelled]) -> list[LayerInfo]:
    """The family's layers, as the first run with layer info has them (positions line up across the family)."""
    for lab in members:
        if lab.run.layers:
            return lab.run.layers
    return []


def scatter(ax, x: np.ndarray, y: np.ndarray, c: np.ndarray, norm) -> None:
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(c)
    order = np.argsort(c[ok])  # the best runs on top
    ax.scatter(x[ok][order], y[ok][order], c=c[ok][order], cmap=CMAP, norm=norm, s=14, alpha=0.85,
               edgecolors="none")
