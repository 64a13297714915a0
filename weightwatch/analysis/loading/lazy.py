"""The loaded run's series maps: tag -> series, each built on first access from shared sorted arrays."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import numpy as np

from .run import HistogramSeries, Series


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
    concatenated ``edges`` / ``counts`` (see :class:`~weightwatch.analysis.loading.columns.Columns`)."""

    def _build(self, i: int) -> HistogramSeries:
        a, b = self._bounds[i], self._bounds[i + 1]
        steps, bins = self._arrays["steps"], self._arrays["bins"]
        return stack_histograms(steps[a:b], bins[a:b], self._arrays["edges_at"][a:b],
                                self._arrays["counts_at"][a:b], self._arrays["edges"], self._arrays["counts"])


def stack_histograms(steps: np.ndarray, bins: np.ndarray, edges_at: np.ndarray, counts_at: np.ndarray,
                     edges: np.ndarray, counts: np.ndarray) -> HistogramSeries:
    """One tag's histograms as a HistogramSeries: rows at offsets ``edges_at`` /
    ``counts_at`` of the flat ``edges`` / ``counts``, ``bins`` bins each.

    Histograms with fewer bins than the tag's most (other writers drop empty
    buckets) are padded on the right with empty zero-width bins at their
    maximum, which changes no count and no edge.
    """
    k = int(bins.max()) if bins.size else 0
    if (bins == k).all():
        return HistogramSeries(steps, edges[edges_at[:, None] + np.arange(k + 1)],
                               counts[counts_at[:, None] + np.arange(k)])
    out_edges = np.empty((steps.size, k + 1))
    out_counts = np.zeros((steps.size, k))
    for i, (e0, c0, n) in enumerate(zip(edges_at.tolist(), counts_at.tolist(), bins.tolist())):
        out_edges[i, :n + 1] = edges[e0:e0 + n + 1]
        out_edges[i, n + 1:] = edges[e0 + n]
        out_counts[i, :n] = counts[c0:c0 + n]
    return HistogramSeries(steps, out_edges, out_counts)
