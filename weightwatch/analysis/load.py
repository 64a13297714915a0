"""Load many runs at once: find them, parse their event files in parallel, cache the result.

>>> result = load_runs("runs/")                     # doctest: +SKIP
>>> [(run.name, final_metric(run)) for run in result.runs]  # doctest: +SKIP
[('sweep/seed0', ('val_accuracy', 0.93)), ...]

A run is any directory below the root (at any depth, the root included) that
holds TensorBoard event files (``*tfevents*``), whatever wrote them. Hidden
directories and compare's own output (a directory holding
:data:`POPULATION_MARKER`) are not runs. Each run's event files are read in
name order (their creation time), parsed with :mod:`.parse` and cached with
:mod:`.cache`; runs are spread over worker processes.
"""

from __future__ import annotations

import copyreg
import io
import json
import os
import pickle
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cache import CACHE_DIR, MAX_SEGMENTS, Cached, FileState, append_cache, cache_file, load_cache, \
    read_tail, save_cache
from .columns import HISTOGRAM_MODES, Columns, concat, drop_histograms, histogram_mode, keep_last_histograms, \
    to_series
from .parse import parse_bytes
from .run import Run

#: A directory holding this file is compare's output (figures for TensorBoard), not a run.
POPULATION_MARKER = "weightwatch-population.json"
#: Run info written by the integrations (see :mod:`weightwatch.recorder`).
RUN_INFO_FILE = "weightwatch.json"
#: The metric tags tried, in this order, when none is named.
METRIC_NAMES = ("val_accuracy", "eval_accuracy", "accuracy", "test_accuracy", "acc")  # eval_: Hugging Face
#: Bytes read from an event file at a time.
CHUNK_BYTES = 16 << 20
#: Below this many bytes of event files in all, loading stays in this process.
PARALLEL_MIN_BYTES = 16 << 20

__all__ = ["LoadResult", "LoadStats", "METRIC_NAMES", "final_metric", "find_metric", "find_runs", "load_runs"]


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


@dataclass
class LoadResult:
    """The loaded runs (sorted by name) and the runs that could not be read at all.

    Attributes:
        runs: every run with at least one readable event file; problems reading
            part of it are in ``run.problems``.
        problems: run name -> messages, for runs that could not be read at all.
        notes: remarks about the load as a whole (cache not writable, ...).
        stats: counters, see :class:`LoadStats`.
    """

    runs: list[Run]
    problems: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    stats: LoadStats = field(default_factory=LoadStats)


def _is_event_file(name: str) -> bool:
    return "tfevents" in name and not name.endswith((".tmp", ".lock"))


def find_runs(root: str | os.PathLike[str]) -> list[Path]:
    """Directories below ``root`` (root included) holding event files, sorted.

    Skips hidden directories (the loader's cache among them) and compare's output.
    Below a weightwatch run (a directory holding ``weightwatch.json``) only
    directories that are weightwatch runs themselves count: the ``train/`` and
    ``validation/`` of a keras.callbacks.TensorBoard sharing its log_dir do not.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if RUN_INFO_FILE in filenames:
            dirnames[:] = [d for d in dirnames if os.path.exists(os.path.join(dirpath, d, RUN_INFO_FILE))]
        if POPULATION_MARKER in filenames:
            dirnames[:] = []
            continue
        if any(_is_event_file(f) for f in filenames):
            found.append(Path(dirpath))
    return sorted(found)


def run_name(root: Path, run_dir: Path) -> str:
    """The run's directory relative to ``root`` (the root's own name when it is the run)."""
    rel = run_dir.relative_to(root).as_posix()
    return rel if rel != "." else (root.resolve().name or str(root))


def find_metric(run: Run, metric: str | None = None) -> str | None:
    """The scalar tag holding the run's performance metric, or None.

    ``metric`` (or each of :data:`METRIC_NAMES` in turn) is matched against the
    tag itself, then against the last path component of the run's tags
    (``eval/accuracy`` for ``accuracy``; the shortest such tag wins).

    >>> from weightwatch.analysis.run import Series
    >>> import numpy as np
    >>> s = Series(np.array([0]), np.array([0.5]))
    >>> find_metric(Run("r", Path("r"), scalars={"loss": s, "eval/accuracy": s}))
    'eval/accuracy'
    """
    for name in [metric] if metric else METRIC_NAMES:
        if name in run.scalars:
            return name
        suffixed = sorted((t for t in run.scalars if t.endswith("/" + name)), key=lambda t: (len(t), t))
        if suffixed:
            return suffixed[0]
    return None


def final_metric(run: Run, metric: str | None = None) -> tuple[str, float] | None:
    """(tag, value at the last step) of the run's metric, or None when it has none.

    The metric is ``metric`` when given, else the first found of
    val_accuracy, eval_accuracy, accuracy, test_accuracy, acc (see :func:`find_metric`).
    """
    tag = find_metric(run, metric)
    if tag is None or run.scalars[tag].values.size == 0:
        return None
    return tag, run.scalars[tag].last


# -- one run ---------------------------------------------------------------------------------------------

def _parse_file(path: Path, base: int, scalars: bool, histograms: str, plugins: dict[str, str],
                stats: LoadStats) -> tuple[list[Columns], int, int, list[str], list[str]]:
    """Parse ``path`` from byte ``base`` to its end, a chunk at a time.

    Returns (columns, end, records, skipped problems, stop problems).
    """
    parts: list[Columns] = []
    skipped: list[str] = []
    stop: list[str] = []
    records = 0
    chunk = CHUNK_BYTES
    with open(path, "rb") as fh:
        while True:
            fh.seek(base)
            data = fh.read(chunk)
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


def _update_file(run_dir: Path, name: str, prev: FileState | None, scalars: bool, histograms: str,
                 stats: LoadStats) -> tuple[FileState, Columns | None, int]:
    """The file's state after reading whatever is new in it.

    Returns (state, the columns just parsed or None when nothing was, the byte
    offset they were parsed from: 0 for a parse from the start).
    """
    path = run_dir / name
    st = path.stat()
    if prev is not None and prev.covers(scalars, histograms):
        if (st.st_size, st.st_mtime_ns) == (prev.size, prev.mtime_ns):
            return prev, None, prev.end
        if st.st_size >= prev.end and read_tail(path, prev.end) == prev.tail:
            plugins = dict(prev.plugins)
            parts, end, records, skipped, stop = _parse_file(path, prev.end, prev.scalars, prev.histograms,
                                                             plugins, stats)
            new = _reduce(concat(parts), prev.histograms)
            cols = _reduce(concat([prev.columns, new]), prev.histograms)
            return FileState(name, st.st_size, st.st_mtime_ns, end, read_tail(path, end), prev.scalars,
                             prev.histograms, prev.records + records, prev.skipped + skipped, stop, plugins,
                             cols), new, prev.end
    if prev is not None:  # parse again, decoding at least what was decoded before
        scalars = scalars or prev.scalars
        histograms = HISTOGRAM_MODES[max(HISTOGRAM_MODES.index(histograms), HISTOGRAM_MODES.index(prev.histograms))]
    plugins: dict[str, str] = {}
    parts, end, records, skipped, stop = _parse_file(path, 0, scalars, histograms, plugins, stats)
    cols = _reduce(concat(parts), histograms)
    return FileState(name, st.st_size, st.st_mtime_ns, end, read_tail(path, end), scalars, histograms, records,
                     skipped, stop, plugins, cols), cols, 0


def _reduce(cols: Columns, histograms: str) -> Columns:
    return keep_last_histograms(cols) if histograms == "last" else cols


def _read_info(run_dir: Path) -> tuple[dict, list[str]]:
    path = run_dir / RUN_INFO_FILE
    if not path.exists():
        return {}, []
    try:
        info = json.loads(path.read_text())
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
        return info, []
    except (OSError, ValueError) as exc:
        return {}, [f"{RUN_INFO_FILE} is unreadable ({exc}); architecture and layers unknown"]


def load_run(root: Path, run_dir: Path, *, scalars: bool = True, histograms: str = "all", cache: bool = True,
             ) -> tuple[Run | None, list[str], LoadStats, bool]:
    """Load one run: (run or None, problems when it could not be read at all, stats, cache written)."""
    stats = LoadStats(runs=1)
    name = run_name(root, run_dir)
    cache_path = cache_file(root / CACHE_DIR, name)
    cached = load_cache(cache_path, name) if cache else Cached()
    info, problems = _read_info(run_dir)
    states: list[FileState] = []
    news: list[tuple[FileState, Columns, int]] = []
    fatal: list[str] = []
    files = sorted(f for f in os.listdir(run_dir) if _is_event_file(f) and (run_dir / f).is_file())
    for fname in files:
        stats.event_files += 1
        try:
            state, new, start = _update_file(run_dir, fname, cached.states.get(fname), scalars, histograms, stats)
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
    if not states or not any(s.records for s in states):
        why = fatal or [f"{s.name}: no readable record" + (f" ({'; '.join(s.stop)})" if s.stop else "")
                        for s in states] or ["no event file could be read"]
        return None, why + problems, stats, False
    saved = True
    if cache and (news or gone or not cached.sound):
        rewritten = any(start == 0 and state.name in cached.states for state, _, start in news)
        if gone or rewritten or not cached.sound or not cached.states or cached.segments >= MAX_SEGMENTS:
            saved = save_cache(cache_path, name, states)
        else:
            saved = append_cache(cache_path, name, news)
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


# -- many runs -------------------------------------------------------------------------------------------

def _load_batch(root: Path, run_dirs: list[Path], scalars: bool, histograms: str,
                cache: bool) -> list[tuple[str, Run | None, list[str], LoadStats, bool]]:
    out = []
    for run_dir in run_dirs:
        name = run_name(root, run_dir)
        try:
            run, fatal, stats, saved = load_run(root, run_dir, scalars=scalars, histograms=histograms, cache=cache)
        except Exception as exc:  # noqa: BLE001 - one bad run must not sink the others; it is reported
            run, fatal, stats, saved = None, [f"could not be loaded: {type(exc).__name__}: {exc}"], LoadStats(1), True
        out.append((name, run, fatal, stats, saved))
    return out


def _shared_dir() -> str:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


_mapped = threading.local()  # the file being unpickled, for _shared_array


def _shared_array(at: int, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    count = int(np.prod(shape, dtype=np.int64))
    return np.frombuffer(_mapped.buffer, dtype=np.dtype(dtype), count=count, offset=at).reshape(shape)


def _load_batch_shared(root: Path, run_dirs: list[Path], scalars: bool, histograms: str,
                       cache: bool) -> tuple[bytes, str | None]:
    """:func:`_load_batch` in a worker process, its arrays handed over through a shared file.

    Pickling hundreds of megabytes through the pool's pipe costs more than
    parsing them. Instead the arrays go, back to back, into one file in
    /dev/shm (memory) and the pickle refers to them by offset; the parent maps
    the file (:func:`_from_shared`), so its arrays are views, not copies.
    """
    blobs: list[memoryview] = []
    size = 0

    def reduce_array(a: np.ndarray) -> tuple:
        nonlocal size
        a = np.ascontiguousarray(a)
        if a.dtype.hasobject:
            return a.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
        at = size
        blobs.append(memoryview(a).cast("B") if a.nbytes else memoryview(b""))
        pad = -a.nbytes % 64
        if pad:
            blobs.append(memoryview(bytes(pad)))
        size += a.nbytes + pad
        return _shared_array, (at, a.dtype.str, a.shape)

    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {**copyreg.dispatch_table, np.ndarray: reduce_array}
    pickler.dump(_load_batch(root, run_dirs, scalars, histograms, cache))
    if not blobs:
        return buf.getvalue(), None
    fd, path = tempfile.mkstemp(prefix="weightwatch-load-", dir=_shared_dir())
    with os.fdopen(fd, "wb") as fh:
        for b in blobs:
            fh.write(b)
    return buf.getvalue(), path


def _from_shared(payload: bytes, path: str | None) -> list:
    _mapped.buffer = None
    if path is not None:
        try:
            # private copy-on-write pages: the arrays are writable; an empty file cannot be mapped
            _mapped.buffer = np.memmap(path, mode="c") if os.path.getsize(path) else np.zeros(0, np.uint8)
        finally:
            os.unlink(path)  # the mapping outlives the name
    try:
        return pickle.loads(payload)
    finally:
        _mapped.buffer = None


def _batches(items: list[Path], size: int) -> Iterator[list[Path]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _pool_context():
    """fork is cheapest, but unsafe once a framework has started its thread pools."""
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    if "fork" in methods and not any(m in sys.modules for m in ("torch", "tensorflow", "jax")):
        return mp.get_context("fork")
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="loading runs", unit="run", disable=None if enabled else True, leave=False,
                file=sys.stderr)


def load_runs(root: str | os.PathLike[str], *, scalars: bool = True, histograms: bool | str = True,
              workers: int | None = None, cache: bool = True, progress: bool = True) -> LoadResult:
    """Load every run below ``root``.

    Args:
        root: a directory; every directory below it holding event files is a run.
        scalars: load scalar tags (weight statistics and the user's metrics).
        histograms: True for every histogram, "last" for only each tag's latest
            (what the comparison needs), False for none; records holding
            histograms that are not wanted are skipped without decoding them.
        workers: processes to parse in; None for one per CPU, 1 to stay in
            this process. Small loads stay in this process anyway.
        cache: reuse and update ``<root>/.weightwatch-cache/``, so a later
            load only parses bytes appended since.
        progress: show a progress bar (on a terminal).

    Raises FileNotFoundError when ``root`` is not a directory. Everything else
    (unreadable, truncated or corrupt files) is reported, not raised: in
    ``run.problems`` when part of a run was read, in ``problems`` when nothing was.
    """
    t0 = time.perf_counter()
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{str(root)!r} is not a directory")
    mode = histogram_mode(histograms)
    run_dirs = find_runs(root)
    result = LoadResult(runs=[], stats=LoadStats(runs=len(run_dirs)))
    if not run_dirs:
        return result
    workers = max(1, min(workers or os.cpu_count() or 1, len(run_dirs)))
    if workers > 1 and _total_bytes(run_dirs) < PARALLEL_MIN_BYTES:
        workers = 1
    result.stats.workers = workers
    outcomes: list[tuple[str, Run | None, list[str], LoadStats, bool]] = []
    with _progress(len(run_dirs), progress) as bar:
        if workers == 1:
            for batch in _batches(run_dirs, 1):
                outcomes += _load_batch(root, batch, scalars, mode, cache)
                bar.update(len(batch))
        else:
            from .wire import warm_up

            warm_up()  # compile (or load) the decoder once, before forking
            size = max(1, min(16, len(run_dirs) // (workers * 8)))
            with ProcessPoolExecutor(workers, mp_context=_pool_context()) as pool:
                futures = [pool.submit(_load_batch_shared, root, batch, scalars, mode, cache)
                           for batch in _batches(run_dirs, size)]
                for future in as_completed(futures):
                    done = _from_shared(*future.result())
                    outcomes += done
                    bar.update(len(done))
    unsaved = 0
    for name, run, fatal, stats, saved in sorted(outcomes, key=lambda o: o[0]):
        result.stats.add(stats)
        unsaved += not saved
        if run is not None:
            result.runs.append(run)
        else:
            result.problems[name] = fatal
    if cache and unsaved:
        result.notes.append(f"could not write the cache in {str(root / CACHE_DIR)!r} for {unsaved} runs "
                            "(not writable?): the next load parses them again")
    result.stats.seconds = time.perf_counter() - t0
    return result


def _total_bytes(run_dirs: Iterable[Path]) -> int:
    total = 0
    for run_dir in run_dirs:
        with os.scandir(run_dir) as it:
            total += sum(e.stat().st_size for e in it if _is_event_file(e.name) and e.is_file())
    return total
