"""Load many runs at once: find them (:mod:`.find`), load each (:mod:`.one_run`) in worker processes.

>>> result = load_runs("runs/")                     # doctest: +SKIP
>>> [(run.name, run.scalars["val_accuracy"].last) for run in result.runs]  # doctest: +SKIP
[('sweep/seed0', 0.93), ...]

Runs are spread over worker processes once the event files together are
large enough to pay for them (:data:`PARALLEL_MIN_BYTES`); runs on remote
storage over threads (the reads wait on the network, and the decoder releases
the GIL); or over a Ray or Dask cluster (:mod:`.engines`).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from weightwatch.storage import RemoteDir

from .cache import default_cache_dir, evict
from .columns import histogram_mode
from .engines import REMOTE_THREADS, check_engine, map_batches
from .find import PathLike, Where, discover, total_bytes
from .one_run import LoadStats, load_run
from .run import Run
from .wire import warm_up

#: Below this many bytes of event files in all, loading stays in this process.
PARALLEL_MIN_BYTES = 16 << 20

__all__ = ["LoadResult", "LoadStats", "load_runs"]


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


# -- many runs -------------------------------------------------------------------------------------------

Item = tuple[str, Where, dict | None]  # (name, run directory, a remote run's listing)


def _load_batch(items: list[Item], scalars: bool, histograms: str,
                cache: Path | bool) -> list[tuple[str, Run | None, list[str], LoadStats, bool]]:
    """Load ``items`` (on whichever worker runs this); ``cache`` True: this machine's default cache."""
    cache_dir = default_cache_dir() if cache is True else cache or None
    out = []
    for name, run_dir, listing in items:
        try:
            run, fatal, stats, saved = load_run(name, run_dir, scalars=scalars, histograms=histograms,
                                                cache_dir=cache_dir, listing=listing)
        except Exception as exc:  # noqa: BLE001 - one bad run must not sink the others; it is reported
            run, fatal, stats, saved = None, [f"could not be loaded: {type(exc).__name__}: {exc}"], LoadStats(1), True
        out.append((name, run, fatal, stats, saved))
    return out


def _batches(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="loading runs", unit="run", disable=None if enabled else True, leave=False,
                file=sys.stderr)


def load_runs(root: PathLike | list[PathLike] | tuple[PathLike, ...], *, scalars: bool = True,
              histograms: bool | str = True, workers: int | None = None, cache: bool | PathLike = True,
              progress: bool = True, engine: str = "local") -> LoadResult:
    """Load every run below ``root``.

    Args:
        root: a directory, or several (paths, fsspec URLs such as ``s3://bucket/runs``,
            or glob patterns of either); every directory below one holding event
            files is a run (symbolic links followed, each real directory once).
            Below one root, runs are named relative to it; with several, each name
            starts with its root as written.
        scalars: load scalar tags (weight statistics and the user's metrics).
        histograms: True for every histogram, "last" for only each tag's latest
            (what the comparison needs), False for none; records holding
            histograms that are not wanted are skipped without decoding them.
        workers: processes to parse in (threads, for runs on remote storage); None
            for one per CPU, 1 to stay in this process. Small local loads stay in
            this process anyway. With a cluster engine that this call starts: its
            number of workers.
        cache: reuse and update the cache (True: the user cache directory, or
            ``$WEIGHTWATCH_CACHE_DIR``, of the machine that loads the run; a path:
            that directory; False: none), so a later load only parses bytes
            appended since. Nothing is written into the runs' folders.
        progress: show a progress bar (on a terminal).
        engine: ``local`` (this machine), ``ray`` or ``dask``: load on that cluster's
            workers, near the data, and bring back only the parsed columns (see
            :mod:`.engines`). The result is the same whichever engine loads.

    Raises FileNotFoundError when a root is not a directory (or a pattern matches
    none). Everything else
    (unreadable, truncated or corrupt files) is reported, not raised: in
    ``run.problems`` when part of a run was read, in ``problems`` when nothing was.

    With ``runs_dir`` a directory of 24 runs logged by weightwatch:

    >>> result = load_runs(runs_dir, histograms="last", progress=False)
    >>> len(result.runs), result.problems
    (24, {})
    >>> run = result.runs[0]
    >>> run.scalars["val_accuracy"].steps.tolist(), run.histograms[f"weights/{run.layers[0].name}"].counts.shape[0]
    ([0, 1, 2, 3], 1)
    """
    t0 = time.perf_counter()
    check_engine(engine)
    mode = histogram_mode(histograms)
    found = discover(root)
    run_dirs = found.runs
    result = LoadResult(runs=[], notes=list(found.problems), stats=LoadStats(runs=len(run_dirs)))
    if not run_dirs:
        return result
    cache_dir = None if cache is False else default_cache_dir() if cache is True else Path(cache)
    items = [(name, where, found.listings.get(str(where)) if isinstance(where, RemoteDir) else None)
             for name, where in run_dirs]
    remote = any(isinstance(where, RemoteDir) for _, where in run_dirs)
    if engine == "local":
        cap = workers or (REMOTE_THREADS if remote else os.cpu_count() or 1)
        workers = max(1, min(cap, len(run_dirs)))
        if workers > 1 and not remote and total_bytes((w for _, w in run_dirs), found.listings) < PARALLEL_MIN_BYTES:
            workers = 1
        if workers > 1 and not remote:
            warm_up()  # compile (or load) the decoder once, before forking
    result.stats.workers = workers or 0
    # cluster workers use their own machine's cache unless a directory was named
    worker_cache = cache_dir if engine == "local" or not isinstance(cache, bool) else bool(cache)
    size = 1 if engine == "local" and workers == 1 else max(1, min(16, len(items) // (max(workers or 1, 1) * 8)))
    outcomes: list[tuple[str, Run | None, list[str], LoadStats, bool]] = []
    with _progress(len(run_dirs), progress) as bar:
        # the runs' arrays come back pickled: a /dev/shm handover measured under 1.5x faster
        # (benchmarks/RESULTS.md), not worth its code
        for done in map_batches(_load_batch, [(batch, scalars, mode, worker_cache) for batch in _batches(items, size)],
                                engine=engine, workers=workers, threads=remote):
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
    if cache_dir is not None:
        if unsaved:
            result.notes.append(f"could not write the cache in {str(cache_dir)!r} for {unsaved} runs (not "
                                f"writable? set WEIGHTWATCH_CACHE_DIR or pass --no-cache): the next load parses "
                                "them again")
        evict(cache_dir)
    result.stats.seconds = time.perf_counter() - t0
    return result
