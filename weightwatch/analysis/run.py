"""One logged run, as the analysis sees it (the loader's output)."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
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


class _LazyMap(MutableMapping):
    """tag -> series, each built on first access from a few shared sorted arrays.

    The loader's runs hold hundreds of series each; building them all, and
    pickling them one by one between processes, would cost more than parsing.
    Behaves as a dict (assignments and deletions included); pickles as its
    arrays plus what was assigned.

    Args:
        tags: the tags, in order; ``bounds`` (len(tags) + 1,): tag i owns rows
            bounds[i]:bounds[i + 1] of the arrays.
    """

    def __init__(self, tags: list[str], bounds: np.ndarray, **arrays: np.ndarray) -> None:
        self._tags = tags
        self._bounds = bounds
        self._arrays = arrays
        self._index: dict[str, int] | None = None
        self._built: dict[str, Any] = {}
        self._deleted: set[str] = set()

    def _build(self, i: int) -> Any:
        raise NotImplementedError

    def _where(self) -> dict[str, int]:
        if self._index is None:
            self._index = {tag: i for i, tag in enumerate(self._tags)}
        return self._index

    def __getitem__(self, tag: str) -> Any:
        if tag in self._built:
            return self._built[tag]
        i = self._where().get(tag)
        if i is None or tag in self._deleted:
            raise KeyError(tag)
        self._built[tag] = out = self._build(i)
        return out

    def __setitem__(self, tag: str, value: Any) -> None:
        self._built[tag] = value
        self._deleted.discard(tag)

    def __delitem__(self, tag: str) -> None:
        if tag not in self:
            raise KeyError(tag)
        self._built.pop(tag, None)
        self._deleted.add(tag)

    def __contains__(self, tag: object) -> bool:
        return tag in self._built or (tag in self._where() and tag not in self._deleted)

    def __iter__(self) -> Iterator[str]:
        for tag in self._tags:
            if tag not in self._deleted:
                yield tag
        extra = set(self._built) - set(self._where())
        yield from (tag for tag in self._built if tag in extra)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} tags)"

    def __getstate__(self) -> dict[str, Any]:
        return {"_tags": self._tags, "_bounds": self._bounds, "_arrays": self._arrays,
                "_built": {k: v for k, v in self._built.items() if k not in self._where()},
                "_deleted": self._deleted, "_index": None}


class LazySeries(_LazyMap):
    """tag -> :class:`Series` over sorted columns ``steps`` and ``values``.

    >>> m = LazySeries(["a", "b"], np.array([0, 2, 3]), steps=np.array([0, 1, 5]), values=np.array([1., 2., 3.]))
    >>> list(m), m["a"].values.tolist(), m["b"].last
    (['a', 'b'], [1.0, 2.0], 3.0)
    """

    def _build(self, i: int) -> Series:
        a, b = self._bounds[i], self._bounds[i + 1]
        return Series(self._arrays["steps"][a:b], self._arrays["values"][a:b])


class LazyHistograms(_LazyMap):
    """tag -> :class:`HistogramSeries` over sorted columns: ``steps`` and ``bins`` (one
    row per histogram), their offsets ``edges_at`` / ``counts_at`` into the
    concatenated ``edges`` / ``counts`` (see :class:`weightwatch.analysis.columns.Columns`)."""

    def _build(self, i: int) -> HistogramSeries:
        from .columns import stack_histograms

        a, b = self._bounds[i], self._bounds[i + 1]
        steps, bins = self._arrays["steps"], self._arrays["bins"]
        return stack_histograms(steps[a:b], bins[a:b], self._arrays["edges_at"][a:b],
                                self._arrays["counts_at"][a:b], self._arrays["edges"], self._arrays["counts"])


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
            first access (:class:`LazySeries`, :class:`LazyHistograms`).
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
