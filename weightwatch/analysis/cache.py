"""What the loader already parsed, kept next to the runs so the next load reads only new bytes.

One file per run in ``<root>/.weightwatch-cache/<run>-<hash>.wwc``, an open,
flat layout (no pickle; any language can read it)::

    8 bytes   b"WWCACHE1"
    uint64    n, the length of the JSON header (little endian)
    n bytes   JSON header (UTF-8)
    ...       the arrays' raw little-endian bytes, each at an offset aligned to 8

The header holds the cache format and version, the run's name and one entry
per event file: name, size, mtime_ns, ``end`` (the byte offset parsed up to),
``tail`` (hex of the 16 bytes before ``end``, to recognise the same file
grown), what was decoded (``scalars``, ``histograms``), problems, tag plugins,
its tag table (``tags``) and ``arrays``: for each
:class:`~weightwatch.analysis.columns.Columns` array, [dtype, length, offset],
the offset counted from the first byte after the header (which is padded with
spaces to a multiple of 8 bytes).

Event files only grow, so a cached file whose size and mtime are unchanged is
reused as is, and a grown one whose bytes before ``end`` still match is parsed
from ``end`` on. Anything else (a rewritten or shrunk file, another cache
version, an unreadable cache) is parsed again from the start.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .columns import HISTOGRAM_MODES, Columns

MAGIC = b"WWCACHE1"
CACHE_DIR = ".weightwatch-cache"
CACHE_FORMAT = "weightwatch-load-cache"
CACHE_VERSION = 1
TAIL_BYTES = 16


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

    def covers(self, scalars: bool, histograms: str) -> bool:
        """Whether this parse decoded at least what is asked for."""
        return (self.scalars or not scalars) and (
            HISTOGRAM_MODES.index(self.histograms) >= HISTOGRAM_MODES.index(histograms))

    def meta(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("name", "size", "mtime_ns", "end", "tail", "scalars", "histograms",
                                               "records", "skipped", "stop", "plugins")}


def cache_file(cache_dir: Path, run_name: str) -> Path:
    """Where a run's cache lives: a readable prefix of its name plus a hash of it.

    >>> cache_file(Path("c"), "sweep/lr=0.1/seed 3").name
    'sweep_lr_0.1_seed_3-fb6c1fecd3.wwc'
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_name)[-80:].strip("_") or "run"
    digest = hashlib.sha1(run_name.encode()).hexdigest()[:10]
    return cache_dir / f"{safe}-{digest}.wwc"


def read_tail(path: Path, end: int) -> str:
    """Hex of the :data:`TAIL_BYTES` bytes before ``end`` in the file at ``path``."""
    start = max(0, end - TAIL_BYTES)
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read(end - start).hex()


def load_cache(path: Path, run_name: str) -> dict[str, FileState]:
    """The cached file states of a run, by event file name ({} when there is no usable cache)."""
    try:
        with open(path, "rb") as fh:
            data = bytearray(fh.read())  # writable, so the arrays viewing it are too
        if data[:8] != MAGIC:
            return {}
        (n,) = struct.unpack_from("<Q", data, 8)
        meta = json.loads(data[16:16 + n].decode())
        if (meta.get("format"), meta.get("version"), meta.get("run")) != (CACHE_FORMAT, CACHE_VERSION, run_name):
            return {}
        states = {}
        for entry in meta["files"]:
            arrays = {name: np.frombuffer(data, dtype=np.dtype(dt), count=count, offset=16 + n + offset)
                      for name, (dt, count, offset) in entry.pop("arrays").items()}
            cols = Columns(entry.pop("tags"), **{name: arrays[name] for name in Columns.ARRAYS})
            states[entry["name"]] = FileState(**entry, columns=cols)
        return states
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return {}  # missing, partial or foreign: parse again


def save_cache(path: Path, run_name: str, states: list[FileState]) -> bool:
    """Write a run's cache atomically; False (and nothing written) when the directory is not writable."""
    blobs: list[bytes] = []
    offset = 0
    files = []
    for state in states:
        layout = {}
        for name, arr in state.columns.arrays().items():
            raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            layout[name] = [arr.dtype.newbyteorder("<").str, int(arr.size), offset]
            pad = -len(raw) % 8
            blobs.append(raw + b"\0" * pad)
            offset += len(raw) + pad
        files.append({**state.meta(), "tags": state.columns.tags, "arrays": layout})
    header = json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "run": run_name,
                         "files": files}).encode()
    header += b" " * (-len(header) % 8)  # the arrays start 8-aligned
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(b"".join([MAGIC, struct.pack("<Q", len(header)), header, *blobs]))
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True
