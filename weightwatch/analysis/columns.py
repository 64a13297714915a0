"""A run's parsed records as flat columns, and their assembly into Series.

:class:`Columns` is what the loader parses out of one event file and what the
cache stores: every scalar point and histogram in file order, tags as indices
into a small tag table. Merging files, appending newly written records and
building the :class:`~weightwatch.analysis.run.Run` data model are array
operations on these columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .run import HistogramSeries, Series

#: How many histograms to keep per tag: every step, only the latest, or none.
HISTOGRAM_MODES = ("none", "last", "all")


def histogram_mode(histograms: bool | str) -> str:
    """The loader's ``histograms`` argument as one of :data:`HISTOGRAM_MODES`.

    >>> histogram_mode(True), histogram_mode(False), histogram_mode("last")
    ('all', 'none', 'last')
    """
    if histograms is True:
        return "all"
    if histograms is False or histograms is None:
        return "none"
    if histograms in HISTOGRAM_MODES:
        return str(histograms)
    raise ValueError(f"histograms must be True, False or one of {HISTOGRAM_MODES}, got {histograms!r}")


@dataclass
class Columns:
    """Scalar points and histograms in the order they were written.

    Attributes:
        tags: the tag table; ``s_tag`` / ``h_tag`` index into it.
        s_tag, s_step, s_value: (n,) int32, int64, float64, one row per scalar point.
        h_tag, h_step, h_bins: (m,) int32, int64, int32, one row per histogram.
        h_edges: (sum(h_bins + 1),) float64, the histograms' edges, concatenated.
        h_counts: (sum(h_bins),) float64, their counts, concatenated.
    """

    tags: list[str]
    s_tag: np.ndarray
    s_step: np.ndarray
    s_value: np.ndarray
    h_tag: np.ndarray
    h_step: np.ndarray
    h_bins: np.ndarray
    h_edges: np.ndarray
    h_counts: np.ndarray

    ARRAYS = ("s_tag", "s_step", "s_value", "h_tag", "h_step", "h_bins", "h_edges", "h_counts")

    @classmethod
    def empty(cls) -> Columns:
        return cls([], *_empty_arrays())

    @property
    def points(self) -> int:
        return int(self.s_tag.size + self.h_tag.size)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.ARRAYS}


_DTYPES = {"s_tag": np.int32, "s_step": np.int64, "s_value": np.float64, "h_tag": np.int32,
           "h_step": np.int64, "h_bins": np.int32, "h_edges": np.float64, "h_counts": np.float64}


def _empty_arrays() -> list[np.ndarray]:
    return [np.zeros(0, _DTYPES[name]) for name in Columns.ARRAYS]


def concat(parts: Sequence[Columns]) -> Columns:
    """One Columns holding ``parts`` one after the other, tag tables merged."""
    parts = [p for p in parts if p.points or p.tags]
    if not parts:
        return Columns.empty()
    if len(parts) == 1:
        return parts[0]
    table: dict[str, int] = {}
    remapped = []
    for part in parts:
        ids = np.array([table.setdefault(tag, len(table)) for tag in part.tags], dtype=np.int32)
        remapped.append((ids[part.s_tag] if part.s_tag.size else part.s_tag,
                         ids[part.h_tag] if part.h_tag.size else part.h_tag))
    return Columns(
        list(table),
        np.concatenate([s for s, _ in remapped]).astype(np.int32),
        np.concatenate([p.s_step for p in parts]),
        np.concatenate([p.s_value for p in parts]),
        np.concatenate([h for _, h in remapped]).astype(np.int32),
        np.concatenate([p.h_step for p in parts]),
        np.concatenate([p.h_bins for p in parts]),
        np.concatenate([p.h_edges for p in parts]),
        np.concatenate([p.h_counts for p in parts]),
    )


def _latest_per_key(tag: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Row order sorted by (tag, step), keeping the last-written row of each (tag, step)."""
    order = np.lexsort((np.arange(tag.size), step, tag))
    t, s = tag[order], step[order]
    last = np.ones(order.size, dtype=bool)
    last[:-1] = (t[1:] != t[:-1]) | (s[1:] != s[:-1])
    return order[last]


def _histogram_offsets(bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts_at = np.concatenate([[0], np.cumsum(bins, dtype=np.int64)])
    edges_at = counts_at + np.arange(bins.size + 1)
    return edges_at, counts_at


def select_histograms(cols: Columns, rows: np.ndarray) -> Columns:
    """``cols`` with only the histogram rows ``rows`` (an index array), in that order."""
    edges_at, counts_at = _histogram_offsets(cols.h_bins)
    bins = cols.h_bins[rows]
    e_idx = _ranges(edges_at[rows], bins + 1)
    c_idx = _ranges(counts_at[rows], bins)
    return Columns(cols.tags, cols.s_tag, cols.s_step, cols.s_value, cols.h_tag[rows], cols.h_step[rows], bins,
                   cols.h_edges[e_idx], cols.h_counts[c_idx])


def keep_last_histograms(cols: Columns) -> Columns:
    """Only each tag's histogram at its highest step (the last written on a tie)."""
    if cols.h_tag.size == 0:
        return cols
    rows = _latest_per_key(cols.h_tag, cols.h_step)
    t = cols.h_tag[rows]
    last_of_tag = np.ones(rows.size, dtype=bool)
    last_of_tag[:-1] = t[1:] != t[:-1]
    return select_histograms(cols, rows[last_of_tag])


def drop_histograms(cols: Columns) -> Columns:
    return select_histograms(cols, np.zeros(0, dtype=np.int64))


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for each (s, n).

    >>> _ranges(np.array([5, 0]), np.array([2, 3])).tolist()
    [5, 6, 0, 1, 2]
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - (np.cumsum(lengths) - lengths), lengths)
    return np.arange(total, dtype=np.int64) + shift


def to_series(cols: Columns) -> tuple[dict[str, Series], dict[str, HistogramSeries]]:
    """Build the run's Series and HistogramSeries: steps increasing, last write wins.

    A tag whose histograms have different bin counts (other writers drop empty
    buckets) is padded on the right with empty zero-width bins at its maximum,
    which changes no count and no edge.
    """
    scalars: dict[str, Series] = {}
    if cols.s_tag.size:
        rows = _latest_per_key(cols.s_tag, cols.s_step)
        tag, step, value = cols.s_tag[rows], cols.s_step[rows], cols.s_value[rows]
        cuts = np.flatnonzero(tag[1:] != tag[:-1]) + 1
        bounds = np.concatenate([[0], cuts, [tag.size]])
        for a, b in zip(bounds[:-1], bounds[1:]):
            scalars[cols.tags[tag[a]]] = Series(step[a:b], value[a:b])
    histograms: dict[str, HistogramSeries] = {}
    if cols.h_tag.size:
        rows = _latest_per_key(cols.h_tag, cols.h_step)
        edges_at, counts_at = _histogram_offsets(cols.h_bins)
        tag = cols.h_tag[rows]
        cuts = np.flatnonzero(tag[1:] != tag[:-1]) + 1
        for group in np.split(rows, cuts):
            bins = cols.h_bins[group]
            k = int(bins.max())
            if (bins == k).all():
                edges = cols.h_edges[edges_at[group][:, None] + np.arange(k + 1)]
                counts = cols.h_counts[counts_at[group][:, None] + np.arange(k)]
            else:
                edges = np.empty((group.size, k + 1))
                counts = np.zeros((group.size, k))
                for i, (r, n) in enumerate(zip(group, bins)):
                    e = cols.h_edges[edges_at[r]:edges_at[r] + n + 1]
                    edges[i, :n + 1] = e
                    edges[i, n + 1:] = e[-1]
                    counts[i, :n] = cols.h_counts[counts_at[r]:counts_at[r] + n]
            histograms[cols.tags[cols.h_tag[group[0]]]] = HistogramSeries(cols.h_step[group], edges, counts)
    return scalars, histograms
