"""Where the loader's batches run: this machine (processes, or threads for remote storage), Ray or Dask.

``map_batches(fn, batches, engine=...)`` calls ``fn(*batch)`` for every batch
and yields the results as they complete, in any order (the loader sorts them).
The cluster engines are the clusters' own schedulers, nothing home-made:

- ``ray``: ``ray.init()`` connects to the cluster named by ``RAY_ADDRESS``
  (or one this process already joined); with none, it starts a local one
  with ``workers`` CPUs and stops it afterwards. Each batch is one task.
- ``dask``: the ``distributed.Client`` this process already made, else the
  scheduler named by ``DASK_SCHEDULER_ADDRESS`` (dask's config
  ``scheduler-address``), else a ``LocalCluster`` of ``workers`` processes
  with one thread each, closed afterwards. Each batch is one future.

Workers need weightwatch installed (``pip install 'weightwatch[ray]'`` or
``[dask]``) and the run files in reach: a shared file system or the same
bucket URL.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any

from weightwatch._optional import require

ENGINES = ("local", "ray", "dask")
#: Threads fetching from remote storage at once with the local engine (I/O bound: more than the cores).
REMOTE_THREADS = 16


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    return engine


def _pool_context():
    """fork is cheapest, but unsafe once a framework has started its thread pools."""
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    if "fork" in methods and not any(m in sys.modules for m in ("torch", "tensorflow", "jax")):
        return mp.get_context("fork")
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def _ignore_interrupt() -> None:
    """Workers leave Ctrl-C to the parent, which stops them (no traceback from each worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _local_pool(workers: int, threads: bool) -> Executor:
    if threads:
        return ThreadPoolExecutor(workers, thread_name_prefix="weightwatch-load")
    return ProcessPoolExecutor(workers, mp_context=_pool_context(), initializer=_ignore_interrupt)


def _run_local(fn: Callable, batches: Sequence[tuple], workers: int, threads: bool) -> Iterator[Any]:
    if workers == 1:
        for batch in batches:
            yield fn(*batch)
        return
    pool = _local_pool(workers, threads)
    try:
        futures = [pool.submit(fn, *batch) for batch in batches]
        for future in as_completed(futures):
            yield future.result()
    except BaseException:  # Ctrl-C, or the consumer stopped: drop the queued batches, do not wait for them
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


@contextmanager
def _ray(workers: int | None):
    ray = require("ray", "ray", "--engine ray")
    started = False
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS") or None
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _run_ray(fn: Callable, batches: Sequence[tuple], workers: int | None) -> Iterator[Any]:
    with _ray(workers) as ray:
        task = ray.remote(num_cpus=1)(fn)
        pending = [task.remote(*batch) for batch in batches]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


@contextmanager
def _dask_client(workers: int | None):
    distributed = require("distributed", "dask", "--engine dask")
    try:
        client = distributed.get_client()  # the user's own client in this process
    except ValueError:
        client = None
    if client is not None:
        yield client
        return
    import dask

    address = dask.config.get("scheduler-address", None)
    if address:
        with distributed.Client(address) as client:
            yield client
        return
    with distributed.LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield client


def _run_dask(fn: Callable, batches: Sequence[tuple], workers: int | None) -> Iterator[Any]:
    with _dask_client(workers) as client:
        distributed = sys.modules["distributed"]
        futures = [client.submit(fn, *batch, pure=False) for batch in batches]
        try:
            for future in distributed.as_completed(futures):
                yield future.result()
        finally:
            client.cancel([f for f in futures if not f.done()])


def map_batches(fn: Callable, batches: Sequence[tuple], *, engine: str = "local", workers: int | None = None,
                threads: bool = False) -> Iterator[Any]:
    """``fn(*batch)`` for each of ``batches``, yielded as they complete.

    Args:
        engine: ``local``, ``ray`` or ``dask`` (see the module doc).
        workers: local processes (threads with ``threads``), or the CPUs / workers
            of a cluster this call starts; None: one per CPU.
        threads: the local engine uses threads (for I/O-bound work: remote storage).
    """
    check_engine(engine)
    if engine == "ray":
        return _run_ray(fn, batches, workers)
    if engine == "dask":
        return _run_dask(fn, batches, workers)
    return _run_local(fn, batches, max(1, workers or os.cpu_count() or 1), threads)
