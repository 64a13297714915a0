"""What the loader already parsed, kept next to the runs so the next load reads only new bytes.

One file per run in ``<root>/.weightwatch-cache/``, a numpy ``.npz`` (open
format, read with ``allow_pickle=False``):

=====================  ==============================================================
array                  meaning
=====================  ==============================================================
``meta``               () str, JSON: cache version, the run's name and one entry per
                       event file: name, size, mtime_ns, ``end`` (the byte offset
                       parsed up to), ``tail`` (hex of the 16 bytes before ``end``,
                       to recognise the same file grown), what was decoded
                       (``scalars``, ``histograms``), problems, tag plugins
``<i>.tags``           (t,) str, event file i's tag table
``<i>.<column>``       the :class:`~weightwatch.analysis.columns.Columns` arrays of file i
=====================  ==============================================================

Event files only grow, so a cached file whose size is unchanged is reused
as is, and a grown one whose bytes before ``end`` still match is parsed from
``end`` on. Anything else (a rewritten or shrunk file, another cache version,
an unreadable cache) is parsed again from the start.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .columns import HISTOGRAM_MODES, Columns

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
    'sweep_lr_0.1_seed_3-fb6c1fecd3.npz'
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_name)[-80:].strip("_") or "run"
    digest = hashlib.sha1(run_name.encode()).hexdigest()[:10]
    return cache_dir / f"{safe}-{digest}.npz"


def read_tail(path: Path, end: int) -> str:
    """Hex of the :data:`TAIL_BYTES` bytes before ``end`` in the file at ``path``."""
    start = max(0, end - TAIL_BYTES)
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read(end - start).hex()


def load_cache(path: Path, run_name: str) -> dict[str, FileState]:
    """The cached file states of a run, by event file name ({} when there is no usable cache)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if (meta.get("format"), meta.get("version"), meta.get("run")) != (CACHE_FORMAT, CACHE_VERSION, run_name):
                return {}
            states = {}
            for i, entry in enumerate(meta["files"]):
                arrays = {name: data[f"{i}.{name}"] for name in Columns.ARRAYS}
                cols = Columns([str(t) for t in data[f"{i}.tags"]], **arrays)
                states[entry["name"]] = FileState(**entry, columns=cols)
            return states
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return {}  # missing, partial or foreign: parse again


def save_cache(path: Path, run_name: str, states: list[FileState]) -> bool:
    """Write a run's cache atomically; False (and nothing written) when the directory is not writable."""
    arrays: dict[str, np.ndarray] = {
        "meta": np.array(json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "run": run_name,
                                     "files": [s.meta() for s in states]}))
    }
    for i, state in enumerate(states):
        arrays[f"{i}.tags"] = np.array(state.columns.tags, dtype=str)
        arrays.update({f"{i}.{name}": a for name, a in state.columns.arrays().items()})
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True
