"""Load one run directory: its event files (only the bytes new since the cache), its info, its Run.

Each event file is read in name order (their creation time) a chunk at a time
(a ranged read on remote storage, see :mod:`.files`), parsed with
:mod:`.parse` and cached with :mod:`.cache`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from weightwatch.storage import RemoteDir

from .cache import MAX_SEGMENTS, TAIL_BYTES, Cached, FileState, append_cache, cache_file, load_cache, save_cache, \
    touch
from .columns import HISTOGRAM_MODES, Columns, concat, drop_histograms, keep_last_histograms, to_series
from .files import Entry, RunFiles, run_files
from .info import read_info
from .parse import parse_bytes
from .run import Run

#: Bytes read from an event file at a time.
CHUNK_BYTES = 16 << 20


@dataclass
class LoadStats:
    """What a load did. ``bytes_read`` / ``records`` count event file bytes parsed and
    records decoded (a fully cached run adds 0 to both)."""

    runs: int = 0
    event_files: int = 0
    bytes_read: int = 0
    records: int = 0
    runs_from_cache: int = 0
    workers: int = 1
    seconds: float = 0.0

    def add(self, other: LoadStats) -> None:
        self.event_files += other.event_files
        self.bytes_read += other.bytes_read
        self.records += other.records
        self.runs_from_cache += other.runs_from_cache



def _parse_file(files: RunFiles, name: str, base: int, scalars: bool, histograms: str, plugins: dict[str, str],
                stats: LoadStats) -> tuple[list[Columns], int, int, list[str], list[str]]:
    """Parse the event file ``name`` from byte ``base`` to its end, a chunk at a time.

    Returns (columns, end, records, skipped problems, stop problems).
    """
    parts: list[Columns] = []
    skipped: list[str] = []
    stop: list[str] = []
    records = 0
    chunk = CHUNK_BYTES
    while True:
        data = files.read(name, base, chunk)
        if not data:
            break
        stats.bytes_read += len(data)
        parsed = parse_bytes(data, base, scalars=scalars, histograms=histograms, plugins=plugins)
        parts.append(parsed.columns)
        records += parsed.records
        skipped += parsed.skipped
        stop = parsed.tail
        if len(data) < chunk or (parsed.tail and not parsed.truncated):
            base = parsed.end
            break  # the end of the file, or a corrupt record nothing after can be trusted past
        if parsed.end == base:
            chunk *= 2  # one record longer than the chunk
        base = parsed.end
    stats.records += records
    return parts, base, records, skipped, stop


def _tail(files: RunFiles, name: str, end: int) -> str:
    """Hex of the :data:`~.cache.TAIL_BYTES` bytes before ``end`` (what recognises the same file grown)."""
    start = max(0, end - TAIL_BYTES)
    return files.read(name, start, end - start).hex()


def _update_file(files: RunFiles, name: str, prev: FileState | None, scalars: bool, histograms: str,
                 stats: LoadStats) -> tuple[FileState, Columns | None, int]:
    """The file's state after reading whatever is new in it.

    Returns (state, the columns just parsed or None when nothing was, the byte
    offset they were parsed from: 0 for a parse from the start).
    """
    st: Entry = files.stat(name)
    if prev is not None and prev.covers(scalars, histograms):
        if (st.size, st.mtime_ns, st.version) == (prev.size, prev.mtime_ns, prev.version):
            return prev, None, prev.end
        if st.size >= prev.end and _tail(files, name, prev.end) == prev.tail:
            plugins = dict(prev.plugins)
            parts, end, records, skipped, stop = _parse_file(files, name, prev.end, prev.scalars, prev.histograms,
                                                             plugins, stats)
            new = _reduce(concat(parts), prev.histograms)
            cols = _reduce(concat([prev.columns, new]), prev.histograms)
            return FileState(name, st.size, st.mtime_ns, end, _tail(files, name, end), prev.scalars,
                             prev.histograms, prev.records + records, prev.skipped + skipped, stop, plugins,
                             cols, st.version), new, prev.end
    if prev is not None:  # parse again, decoding at least what was decoded before
        scalars = scalars or prev.scalars
        histograms = HISTOGRAM_MODES[max(HISTOGRAM_MODES.index(histograms), HISTOGRAM_MODES.index(prev.histograms))]
    plugins: dict[str, str] = {}
    parts, end, records, skipped, stop = _parse_file(files, name, 0, scalars, histograms, plugins, stats)
    cols = _reduce(concat(parts), histograms)
    return FileState(name, st.size, st.mtime_ns, end, _tail(files, name, end), scalars, histograms, records,
                     skipped, stop, plugins, cols, st.version), cols, 0


def _reduce(cols: Columns, histograms: str) -> Columns:
    return keep_last_histograms(cols) if histograms == "last" else cols


def load_run(name: str, run_dir: Path | RemoteDir, *, scalars: bool = True, histograms: str = "all",
             cache_dir: Path | None = None,
             listing: dict[str, Entry] | None = None) -> tuple[Run | None, list[str], LoadStats, bool]:
    """Load the run ``name`` in ``run_dir``, with its cache in ``cache_dir`` (None: no cache).

    ``listing``: a remote run's files as its discovery listed them (None: list them now).
    Returns (run or None, problems when it could not be read at all, stats, cache written).
    """
    stats = LoadStats(runs=1)
    files = run_files(run_dir, listing)
    key = files.key
    cache_path = cache_file(cache_dir, key) if cache_dir is not None else None
    cached = load_cache(cache_path, key) if cache_path is not None else Cached()
    info, problems = read_info(files)
    states: list[FileState] = []
    news: list[tuple[FileState, Columns, int]] = []
    fatal: list[str] = []
    try:
        names = files.event_files()
    except OSError as exc:
        return None, [f"cannot list the directory ({exc.strerror or exc})"], stats, True
    for fname in names:
        stats.event_files += 1
        try:
            state, new, start = _update_file(files, fname, cached.states.get(fname), scalars, histograms, stats)
        except OSError as exc:
            fatal.append(f"{fname}: cannot read it ({exc.strerror or exc})")
            continue
        states.append(state)
        if new is not None or state.meta() != getattr(cached.states.get(fname), "meta", dict)():
            news.append((state, new if new is not None else Columns.empty(), start))
        problems += [f"{fname}: {p}" for p in state.skipped + state.stop]
    gone = set(cached.states) - {s.name for s in states}
    if not news and not gone and states:
        stats.runs_from_cache = 1
        if cache_path is not None and cached.sound:
            touch(cache_path)
    if not states or not any(s.records for s in states):
        why = fatal or [f"{s.name}: no readable record" + (f" ({'; '.join(s.stop)})" if s.stop else "")
                        for s in states] or ["no event file could be read"]
        said = {f"{s.name}: {m}" for s in states for m in s.stop}  # already in ``why``
        return None, why + [p for p in problems if p not in said], stats, True  # nothing to cache
    saved = True
    if cache_path is not None and (news or gone or not cached.sound):
        rewritten = any(start == 0 and state.name in cached.states for state, _, start in news)
        if gone or rewritten or not cached.sound or not cached.states or cached.segments >= MAX_SEGMENTS:
            saved = save_cache(cache_path, key, states)
        else:
            saved = append_cache(cache_path, key, news)
    cols = concat([s.columns for s in states])
    if histograms == "none":
        cols = drop_histograms(cols)
    elif histograms == "last":
        cols = keep_last_histograms(cols)
    if not scalars:
        cols = _drop_scalars(cols)
    series, hists = to_series(cols)
    return Run(name, run_dir, info, series, hists, fatal + problems), [], stats, saved


def _drop_scalars(cols: Columns) -> Columns:
    empty = Columns.empty()
    return Columns(cols.tags, empty.s_tag, empty.s_step, empty.s_value, cols.h_tag, cols.h_step, cols.h_bins,
                   cols.h_edges, cols.h_counts)
