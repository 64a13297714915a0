"""What the loader already parsed, kept so the next load reads only new bytes.

The cache lives in the user's cache directory (``platformdirs``: e.g.
``~/.cache/weightwatch/runs`` on Linux), or in ``$WEIGHTWATCH_CACHE_DIR`` when
set, never in the runs' folders: one file per run,
``<cache dir>/<run>-<hash>.wwc``, the hash of the run directory's resolved
path (a remote run's: its URL). Inside, each event file is keyed by its name, size and mtime
(and on object storage its ETag). The
directory is kept under :data:`MAX_CACHE_BYTES` (``$WEIGHTWATCH_CACHE_MAX_BYTES``)
by deleting the least recently used files (:func:`evict`). Each file has an open,
flat layout (no pickle; any language can read it): a sequence of segments,
each::

    8 bytes   b"WWCACHE1"
    uint64    n, the length of the JSON header (little endian)
    n bytes   JSON header (UTF-8, padded with spaces to a multiple of 8)
    ...       the arrays' raw little-endian bytes, each at an offset aligned to 8

The header holds the cache format and version, the run directory's resolved path (``run``), ``bytes`` (the
length of the array data that follows) and one entry per event file: name,
size, mtime_ns, ``start`` and ``end`` (the byte range of the event file this
segment's arrays were parsed from: ``start`` 0 replaces what earlier segments
held for the file, otherwise it extends them), ``tail`` (hex of the 16 bytes
before ``end``, to recognise the same file grown), what was decoded
(``scalars``, ``histograms``), problems, tag plugins, its tag table (``tags``)
and ``arrays``: for each :class:`~weightwatch.analysis.loading.columns.Columns` array,
[dtype, length, offset from the start of the segment's array data]; the
histograms' edges and counts are stored packed (``h_pack_*``, see
:func:`~weightwatch.analysis.loading.columns.pack_histograms`: equal-width edges as
their two ends, integral counts as int32).

A load that finds new bytes appends one segment with just them; a file with
more than :data:`MAX_SEGMENTS` segments is rewritten whole.

Event files only grow, so a cached file whose size and mtime are unchanged is
reused as is, and a grown one whose bytes before ``end`` still match is parsed
from ``end`` on. Anything else (a rewritten or shrunk file, another cache
version, an unreadable or damaged cache) is parsed again from the start.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .columns import HISTOGRAM_MODES, Columns, concat, keep_last_histograms, pack_histograms, \
    unpack_histograms

MAGIC = b"WWCACHE1"
#: Set to a directory to keep the cache there (the tests do).
CACHE_ENV = "WEIGHTWATCH_CACHE_DIR"
#: The cache directory is kept under this many bytes; ``$WEIGHTWATCH_CACHE_MAX_BYTES`` overrides it.
MAX_CACHE_BYTES = 2 << 30
CACHE_MAX_ENV = "WEIGHTWATCH_CACHE_MAX_BYTES"
SUFFIX = ".wwc"
CACHE_FORMAT = "weightwatch-load-cache"
CACHE_VERSION = 2
TAIL_BYTES = 16
MAX_SEGMENTS = 16


@dataclass
class FileState:
    """One event file as far as it was parsed.

    Attributes:
        name: the event file's name in the run directory.
        size / mtime_ns: the file's size and modification time when parsed.
        end: byte offset parsed up to (the start of an incomplete last record, if any).
        tail: hex of the bytes just before ``end``.
        scalars / histograms: what was decoded ("all", "last" or "none" histograms).
        records: records decoded so far.
        skipped: problems that stay (records skipped for a bad checksum).
        stop: why reading stopped before the end of the file, if it did.
        plugins: tag -> TensorBoard plugin name, for tensor summaries.
        columns: the parsed points.
    """

    name: str
    size: int
    mtime_ns: int
    end: int
    tail: str
    scalars: bool
    histograms: str
    records: int = 0
    skipped: list[str] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)
    plugins: dict[str, str] = field(default_factory=dict)
    columns: Columns = field(default_factory=Columns.empty)
    version: str = ""

    def covers(self, scalars: bool, histograms: str) -> bool:
        """Whether this parse decoded at least what is asked for."""
        return (self.scalars or not scalars) and (
            HISTOGRAM_MODES.index(self.histograms) >= HISTOGRAM_MODES.index(histograms))

    def meta(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("name", "size", "mtime_ns", "end", "tail", "scalars", "histograms",
                                               "records", "skipped", "stop", "plugins", "version")}


def default_cache_dir() -> Path:
    """``$WEIGHTWATCH_CACHE_DIR``, else the user cache directory's ``weightwatch/runs``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("weightwatch", appauthor=False)) / "runs"


def cache_limit() -> int:
    """:data:`MAX_CACHE_BYTES`, or ``$WEIGHTWATCH_CACHE_MAX_BYTES`` when it is a number."""
    try:
        return max(0, int(os.environ.get(CACHE_MAX_ENV, MAX_CACHE_BYTES)))
    except ValueError:
        return MAX_CACHE_BYTES


def cache_key(run_dir: Path) -> str:
    """What a run's cache is keyed by: its directory's resolved path (links followed)."""
    return str(Path(run_dir).resolve())


def cache_file(cache_dir: Path, key: str) -> Path:
    """Where a run's cache lives: a readable tail of its key plus a hash of it.

    >>> cache_file(Path("c"), "/data/sweep/lr=0.1/seed 3").name
    'data_sweep_lr_0.1_seed_3-285d8bd3c5.wwc'
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[-60:].strip("_") or "run"
    digest = hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return cache_dir / f"{safe}-{digest}{SUFFIX}"


def touch(path: Path) -> None:
    """Mark a cache file as just used (eviction deletes the least recently used first)."""
    try:
        os.utime(path)
    except OSError:
        pass


def evict(cache_dir: Path, max_bytes: int | None = None) -> int:
    """Delete the least recently used cache files until the directory holds at most
    ``max_bytes`` (default :func:`cache_limit`), and temporary files left by a crash; returns
    how many files were deleted."""
    limit = cache_limit() if max_bytes is None else max_bytes
    try:
        entries = [(e.stat().st_mtime_ns, e.stat().st_size, Path(e.path)) for e in os.scandir(cache_dir)
                   if e.is_file() and (e.name.endswith(SUFFIX) or e.name.endswith(".tmp"))]
    except OSError:
        return 0
    removed = 0
    stale = time.time_ns() - 3600 * 10**9
    total = sum(size for _, size, p in entries if p.name.endswith(SUFFIX))
    for mtime, size, path in sorted(entries):
        is_tmp = path.name.endswith(".tmp")
        if not (is_tmp and mtime < stale) and (is_tmp or total <= limit):
            continue
        try:
            path.unlink()
        except OSError:
            continue
        removed += 1
        total -= 0 if is_tmp else size
    return removed


@dataclass
class Cached:
    """A run's cache as read: the file states, how many segments held them, and
    whether the file is sound (False: rewrite it whole next time)."""

    states: dict[str, FileState] = field(default_factory=dict)
    segments: int = 0
    sound: bool = True


def load_cache(path: Path, key: str) -> Cached:
    """The cached file states of a run, by event file name (none when there is no usable cache).

    Segments apply in order: an entry starting at byte 0 replaces the file's
    state, one starting where the state ends extends it; anything else (a
    partial last segment, segments from two writers at once) is ignored and
    the cache marked for a rewrite. A damaged cache is never an error: what cannot be
    used is parsed again.
    """
    out = Cached()
    try:
        with open(path, "rb") as fh:
            data = bytearray(fh.read())  # writable, so the arrays viewing it are too
    except OSError:
        return out
    try:
        _read_segments(data, key, out)
    except Exception:  # noqa: BLE001 - any damage (wrong types, bad dtypes, ...) means: parse again
        return Cached(sound=False)
    return out


def _read_segments(data: bytearray, key: str, out: Cached) -> None:
    pos = 0
    while pos < len(data):
        try:
            if data[pos:pos + 8] != MAGIC:
                raise ValueError("no segment here")
            (n,) = struct.unpack_from("<Q", data, pos + 8)
            meta = json.loads(data[pos + 16:pos + 16 + n].decode())
            if (meta.get("format"), meta.get("version"), meta.get("run")) != (CACHE_FORMAT, CACHE_VERSION, key):
                raise ValueError("another cache's file")
            base = pos + 16 + n
            if base + int(meta["bytes"]) > len(data):
                raise ValueError("partial segment")
            for entry in meta["files"]:
                arrays = {name: np.frombuffer(data, dtype=_number_dtype(dt), count=count, offset=base + offset)
                          for name, (dt, count, offset) in entry.pop("arrays").items()}
                packed = {k[len("h_pack_"):]: arrays.pop(k) for k in list(arrays) if k.startswith("h_pack_")}
                arrays["h_edges"], arrays["h_counts"] = unpack_histograms(arrays["h_bins"], packed)
                cols = Columns(entry.pop("tags"), **{name: arrays[name] for name in Columns.ARRAYS})
                start = entry.pop("start")
                prev = out.states.get(entry["name"])
                if start == 0:
                    out.states[entry["name"]] = FileState(**entry, columns=cols)
                elif prev is not None and prev.end == start and (prev.scalars, prev.histograms) == (
                        entry["scalars"], entry["histograms"]):
                    joined = concat([prev.columns, cols])
                    out.states[entry["name"]] = FileState(
                        **entry, columns=keep_last_histograms(joined) if prev.histograms == "last" else joined)
                else:
                    out.sound = False
            out.segments += 1
            pos = base + int(meta["bytes"])
        except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError):
            out.sound = False
            break


def _number_dtype(text: str) -> np.dtype:
    dtype = np.dtype(text)
    if dtype.kind not in "biuf":
        raise ValueError(f"cache array of dtype {dtype}")
    return dtype


def _segment(key: str, entries: list[tuple[FileState, Columns, int]]) -> bytes:
    """One segment: for each (state, columns, start), the state's metadata and the
    columns read from byte ``start`` of the event file on."""
    blobs: list[bytes] = []
    offset = 0
    files = []
    for state, cols, start in entries:
        layout = {}
        arrays = {k: v for k, v in cols.arrays().items() if k not in ("h_edges", "h_counts")}
        arrays.update({f"h_pack_{k}": v for k, v in pack_histograms(cols.h_bins, cols.h_edges, cols.h_counts).items()})
        for name, arr in arrays.items():
            dtype = arr.dtype.newbyteorder("<")
            raw = np.ascontiguousarray(arr, dtype=dtype).tobytes()
            layout[name] = [dtype.str, int(arr.size), offset]
            pad = -len(raw) % 8
            blobs.append(raw + b"\0" * pad)
            offset += len(raw) + pad
        files.append({**state.meta(), "start": start, "tags": cols.tags, "arrays": layout})
    header = json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "run": key, "bytes": offset,
                         "files": files}).encode()
    header += b" " * (-len(header) % 8)  # the arrays start 8-aligned
    return b"".join([MAGIC, struct.pack("<Q", len(header)), header, *blobs])


def save_cache(path: Path, key: str, states: list[FileState]) -> bool:
    """Write a run's cache whole, atomically; False (nothing written) when the directory is not writable."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(_segment(key, [(s, s.columns, 0) for s in states]))
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    except BaseException:  # interrupted: leave no partial file behind
        tmp.unlink(missing_ok=True)
        raise
    return True


def append_cache(path: Path, key: str, entries: list[tuple[FileState, Columns, int]]) -> bool:
    """Append a segment with what is new: (new state, columns read from ``start`` on, start)."""
    try:
        with open(path, "ab") as fh:
            fh.write(_segment(key, entries))
    except OSError:
        return False
    return True
