"""A run's parsed records as flat columns, and their assembly into Series.

:class:`Columns` is what the loader parses out of one event file and what the
cache stores: every scalar point and histogram in file order, tags as indices
into a small tag table. Merging files, appending newly written records and
building the :class:`~weightwatch.analysis.loading.run.Run` data model are array
operations on these columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .lazy import LazyHistograms, LazySeries

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
    """Row order sorted by (tag, step), keeping the last-written row of each (tag, step).

    >>> _latest_per_key(np.array([1, 0, 1, 0, 1]), np.array([0, 0, 1, 1, 1])).tolist()
    [1, 3, 0, 4]
    """
    # Usually each tag's rows come in increasing steps: a stable sort by tag alone
    # (radix for small tag ids) is then the answer.
    order = np.argsort(tag.astype(np.uint16) if tag.size and tag.max() < 1 << 16 else tag, kind="stable")
    t, s = tag[order], step[order]
    same = t[1:] == t[:-1]
    if (s[1:][same] > s[:-1][same]).all():
        return order
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


def _tag_bounds(tag: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by tag: (the tag of each group, group bounds (groups + 1,))."""
    if n_rows == 0:
        return tag[:0], np.zeros(1, np.int64)
    cuts = np.flatnonzero(tag[1:] != tag[:-1]) + 1
    bounds = np.concatenate([[0], cuts, [n_rows]]).astype(np.int64)
    return tag[bounds[:-1]], bounds


def to_series(cols: Columns) -> tuple[LazySeries, LazyHistograms]:
    """The run's scalars and histograms as tag -> Series / HistogramSeries maps.

    Steps increase within a tag; when a step was written twice the last write
    wins. The maps build each series on first access from shared sorted arrays.
    """
    rows = _latest_per_key(cols.s_tag, cols.s_step)
    tags, bounds = _tag_bounds(cols.s_tag[rows], rows.size)
    scalars = LazySeries([cols.tags[t] for t in tags.tolist()], bounds, steps=cols.s_step[rows],
                         values=cols.s_value[rows])
    rows = _latest_per_key(cols.h_tag, cols.h_step)
    tags, bounds = _tag_bounds(cols.h_tag[rows], rows.size)
    edges_at, counts_at = _histogram_offsets(cols.h_bins)
    histograms = LazyHistograms([cols.tags[t] for t in tags.tolist()], bounds, steps=cols.h_step[rows],
                                bins=cols.h_bins[rows], edges_at=edges_at[rows], counts_at=counts_at[rows],
                                edges=cols.h_edges, counts=cols.h_counts)
    return scalars, histograms


def pack_histograms(bins: np.ndarray, edges: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """A compact, exact form of concatenated histograms, for the cache and between processes.

    Equal-width edges (what weightwatch writes: ``lo + (hi - lo) * (i / k)``, the
    last one ``hi``) are kept as their two ends; integral counts as int32.
    :func:`unpack_histograms` restores the same bits.

    >>> e = np.array([0.0, 0.5, 1.0, 0.0, 0.1, 3.0]); c = np.array([1.0, 2.0, 4.0, 5.0])
    >>> p = pack_histograms(np.array([2, 2]), e, c)
    >>> p["uniform"].tolist(), p["other_edges"].tolist(), p["counts"].dtype.name
    ([True, False], [0.0, 0.1, 3.0], 'int32')
    >>> [a.tolist() for a in unpack_histograms(np.array([2, 2]), p)] == [e.tolist(), c.tolist()]
    True
    """
    bins = np.asarray(bins, dtype=np.int64)
    edges_at, _ = _histogram_offsets(bins)
    lo, hi = edges[edges_at[:-1]], edges[edges_at[1:] - 1]
    uniform = np.zeros(bins.size, dtype=bool)
    if bins.size:
        expected = _uniform_edges(bins, lo, hi)
        same = expected == edges
        uniform = np.logical_and.reduceat(same, edges_at[:-1]) if same.size else uniform
    keep = np.repeat(~uniform, bins + 1)
    integral = counts.size == 0 or (np.all(counts == np.floor(counts)) and counts.min() >= 0
                                    and counts.max() < 2 ** 31)
    return {"lo": lo, "hi": hi, "uniform": uniform, "other_edges": edges[keep],
            "counts": counts.astype(np.int32) if integral else counts}


def unpack_histograms(bins: np.ndarray, packed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(edges, counts) concatenated, from :func:`pack_histograms`' output."""
    bins = np.asarray(bins, dtype=np.int64)
    edges = _uniform_edges(bins, packed["lo"], packed["hi"]) if bins.size else np.zeros(0)
    edges[np.repeat(~packed["uniform"].astype(bool), bins + 1)] = packed["other_edges"]
    return edges, packed["counts"].astype(np.float64)


def _uniform_edges(bins: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenated equal-width edges, computed as weightwatch.ops.raw.bin_edges does."""
    if bins.size and (bins == bins[0]).all() and bins[0] > 0:  # the usual case: one bin count, broadcast
        k = int(bins[0])
        out = lo[:, None] + (hi - lo)[:, None] * (np.arange(k + 1, dtype=np.float64) / k)[None, :]
        out[:, -1] = hi
        return out.reshape(-1)
    i = _ranges(np.zeros(bins.size, np.int64), bins + 1).astype(np.float64)
    k = np.repeat(bins, bins + 1).astype(np.float64)
    lo_r, hi_r = np.repeat(lo, bins + 1), np.repeat(hi, bins + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = lo_r + (hi_r - lo_r) * np.where(k > 0, i / k, 0.0)
    edges_at, _ = _histogram_offsets(bins)
    out[edges_at[1:] - 1] = hi
    return out
