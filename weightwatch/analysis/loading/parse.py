"""Event file bytes -> :class:`~weightwatch.analysis.loading.columns.Columns`.

Framing and checksums (:mod:`.records`), then the compiled decoder
(:mod:`.wire`) for the bulk, the protobuf classes for the few records it leaves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .columns import Columns, concat, drop_histograms, keep_last_histograms
from .records import frame
from .wire import decode, decode_fallback, gather_f64, histogram_edges, same_tags


@dataclass
class Parsed:
    """What one read of an event file (from some offset to its end) produced.

    Attributes:
        columns: the points read.
        end: offset to resume from next time (absolute in the file).
        records: records decoded.
        skipped: problems that stay true however the file grows (a record
            that failed its checksum and was skipped, one that is not an Event).
        tail: problems at the point where reading stopped (an incomplete or
            corrupt record); the next read starts there and finds them again.
        truncated: the bytes end inside a record (more may come).
    """

    columns: Columns
    end: int
    records: int
    skipped: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    truncated: bool = False


def parse_bytes(data: bytes, base: int, *, scalars: bool, histograms: str, plugins: dict[str, str]) -> Parsed:
    """Parse event file bytes that start at file offset ``base`` (a record boundary).

    Args:
        scalars: decode scalar points.
        histograms: "all", "last" or "none" (see :func:`.columns.histogram_mode`).
        plugins: tag -> plugin name for the file (see :func:`.wire.decode_fallback`), updated.
    """
    framing = frame(data, base)
    buf = np.frombuffer(data, dtype=np.uint8)
    dec = decode(buf, framing.starts, framing.lengths, scalars=scalars, histograms=histograms != "none")
    skipped = list(framing.skipped)
    ok = dec.h_lims[:, 1] == dec.h_bkts[:, 1]
    if not ok.all():
        skipped.append(f"{int((~ok).sum())} histograms whose bucket limits and buckets differ in number: skipped")
    ns = dec.s_rec.size
    hashes = np.concatenate([dec.s_hash, dec.h_hash[ok]])
    spans = np.concatenate([dec.s_tag, dec.h_tag[ok]])
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if not same_tags(buf, spans, spans[first][inverse]).all():
        first, inverse = _by_bytes(data, spans)  # two tags share a hash: the bytes decide
    tags = [_tag(data, a, n) for a, n in spans[first].tolist()]
    lims, bkts = dec.h_lims[ok], dec.h_bkts[ok]
    bins = lims[:, 1].astype(np.int32)
    edges = _edges(dec.h_min[ok], dec.h_max[ok], gather_f64(buf, lims[:, 0], lims[:, 1]), bins)
    counts = gather_f64(buf, bkts[:, 0], bkts[:, 1])
    cols = Columns(tags, inverse[:ns].astype(np.int32), dec.s_step, dec.s_value,
                   inverse[ns:].astype(np.int32), dec.h_step[ok], bins, edges, counts)
    extra = _fallback(data, framing.starts, framing.lengths, dec.flags, base, plugins, skipped,
                      scalars=scalars, histograms=histograms != "none")
    if extra is not None:
        cols = concat([cols, extra])
    if histograms == "last":
        cols = keep_last_histograms(cols)
    elif histograms == "none":
        cols = drop_histograms(cols)
    return Parsed(cols, base + framing.end, int(framing.starts.size), skipped,
                  [framing.stop] if framing.stop else [], framing.truncated)


def _tag(data: bytes, start: int, length: int) -> str:
    return data[start:start + length].decode("utf-8", "replace") if start >= 0 else ""


def _by_bytes(data: bytes, spans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each distinct tag, each row's tag index) from the tags' bytes themselves."""
    table: dict[bytes, int] = {}
    first: list[int] = []
    inverse = np.empty(len(spans), dtype=np.int64)
    for row, (a, n) in enumerate(spans.tolist()):
        key = data[a:a + n] if a >= 0 else b""
        i = table.setdefault(key, len(table))
        if i == len(first):
            first.append(row)
        inverse[row] = i
    return np.array(first, dtype=np.int64), inverse


def _edges(lo: np.ndarray, hi: np.ndarray, limits: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Concatenated edges per histogram, as :func:`.wire.histogram_edges` makes them."""
    if bins.size == 0:
        return np.zeros(0)
    out = np.empty(int(bins.sum()) + bins.size)
    at = np.concatenate([[0], np.cumsum(bins + 1)[:-1]])
    first_limit = limits[np.minimum(at - np.arange(bins.size), max(limits.size - 1, 0))] if limits.size else lo
    out[at] = np.where(bins > 0, np.minimum(lo, first_limit), lo)
    mask = np.ones(out.size, dtype=bool)
    mask[at] = False
    out[mask] = np.minimum(limits, np.repeat(hi, bins))
    return out


def _fallback(data: bytes, starts: np.ndarray, lengths: np.ndarray, flags: np.ndarray, base: int,
              plugins: dict[str, str], problems: list[str], *, scalars: bool, histograms: bool) -> Columns | None:
    todo = np.flatnonzero(flags != 0)
    if todo.size == 0:
        return None
    table: dict[str, int] = {}
    s_rows: list[tuple[int, int, float]] = []
    h_rows: list[tuple[int, int, np.ndarray, np.ndarray]] = []
    for r in todo.tolist():
        a = int(starts[r])
        try:
            step, sc, hi = decode_fallback(data[a:a + int(lengths[r])], plugins)
        except ValueError as exc:
            problems.append(f"record at byte {base + a - 12}: {exc}; skipped it")
            continue
        if scalars:
            s_rows += [(table.setdefault(tag, len(table)), step, v) for tag, v in sc]
        if histograms:
            h_rows += [(table.setdefault(tag, len(table)), step, e, c) for tag, e, c in hi]
    if not s_rows and not h_rows:
        return None
    return Columns(
        list(table),
        np.array([t for t, _, _ in s_rows], np.int32), np.array([s for _, s, _ in s_rows], np.int64),
        np.array([v for _, _, v in s_rows], np.float64),
        np.array([t for t, _, _, _ in h_rows], np.int32), np.array([s for _, s, _, _ in h_rows], np.int64),
        np.array([c.size for _, _, _, c in h_rows], np.int32),
        np.concatenate([e for _, _, e, _ in h_rows]) if h_rows else np.zeros(0),
        np.concatenate([c for _, _, _, c in h_rows]) if h_rows else np.zeros(0),
    )


__all__ = ["Parsed", "histogram_edges", "parse_bytes"]
