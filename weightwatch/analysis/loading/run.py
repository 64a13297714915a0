"""One logged run, as the analysis sees it (the loader's output)."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from weightwatch.layers import LayerInfo


@dataclass
class Series:
    """A scalar over time. steps: (n,) int64, increasing; values: (n,) float64.

    When a step was written twice (a resumed run), the last value wins.
    """

    steps: np.ndarray
    values: np.ndarray

    @property
    def last(self) -> float:
        return float(self.values[-1])


@dataclass
class HistogramSeries:
    """A histogram over time: steps (n,), edges (n, k + 1), counts (n, k)."""

    steps: np.ndarray
    edges: np.ndarray
    counts: np.ndarray


@dataclass
class Run:
    """Everything the analysis needs from one run directory.

    Attributes:
        name: the run directory relative to the root given to the loader.
        path: the run directory.
        info: the contents of ``weightwatch.json`` ({} when absent).
        scalars: tag -> Series (weights/..., node_strength/..., the user's metrics).
        histograms: tag -> HistogramSeries (``weights/<layer>``, ``node_strength/<layer>``).
            The loader fills both with dict-like maps that build each series on
            first access (see :mod:`.lazy`).
        problems: what went wrong reading it (truncated file, bad record, ...).
    """

    name: str
    path: Path
    info: dict[str, Any] = field(default_factory=dict)
    scalars: MutableMapping[str, Series] = field(default_factory=dict)
    histograms: MutableMapping[str, HistogramSeries] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def layers(self) -> list[LayerInfo]:
        return [LayerInfo.from_json(d) for d in self.info.get("layers", [])]

    @property
    def architecture(self) -> str | None:
        return self.info.get("architecture")

    @property
    def hparams(self) -> dict[str, Any]:
        return dict(self.info.get("hparams", {}))
