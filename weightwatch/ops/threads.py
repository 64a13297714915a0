"""How many threads the CPU kernels use, and how the work is cut into blocks.

A watcher runs inside a training process that already keeps every core busy.
A parallel region ends when its slowest thread does, so a thread that loses
its core stalls the whole log call. :data:`strategy` picks one of three
(measured side by side in benchmarks/RESULTS.md, "Under contention"):

- ``"layers"`` (the default): a pool of threads takes whole layers one at a
  time, each reduced with plain loops; no barrier, so a thread that loses its
  core delays one layer while the others go on;
- ``"within"``: numba's parallel regions inside each large kernel, cut into
  many blocks of about :data:`BLOCK` entries handed out one at a time;
- ``"serial"``: everything on the calling thread.

Small kernels (and small models) always run on the calling thread: waking
other threads costs more than it saves.

The thread count follows torch's intra-op count when torch is in use (it
honours OMP_NUM_THREADS, ``torch.set_num_threads`` and launchers that split
the cores between processes), else numba's default; :data:`max_threads`
caps it (None: no cap).
"""

from __future__ import annotations

import sys

#: Kernels smaller than this (entries) run on the calling thread alone.
PARALLEL_FROM = 1 << 16
#: Entries per block handed to a thread.
BLOCK = 1 << 15
#: Upper bound on the blocks of one pass (each owns a small partial result).
MAX_BLOCKS = 1024
#: Cap on the threads (None: as many as torch / numba allow).
max_threads: int | None = None
#: "layers", "within" or "serial" (see the module docstring).
strategy: str = "layers"
STRATEGIES = ("layers", "within", "serial")


def allowed_threads() -> int:
    """The threads the watcher may use: torch's intra-op count when torch is in
    use, else numba's, capped by :data:`max_threads`."""
    import numba

    n = numba.config.NUMBA_NUM_THREADS
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        n = min(n, torch.get_num_threads())
    if max_threads is not None:
        n = min(n, max_threads)
    return max(1, n)


def _check_strategy() -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"weightwatch.ops.threads.strategy must be one of {STRATEGIES}, got {strategy!r}")


def layer_threads(total_size: int, layers: int) -> int:
    """Threads that take whole layers (1: the calling thread does everything)."""
    _check_strategy()
    if strategy != "layers" or total_size < PARALLEL_FROM or layers < 2:
        return 1
    return min(allowed_threads(), layers)


def thread_count(size: int) -> int:
    """Threads inside one kernel of ``size`` entries; also sets numba's count for the next call."""
    import numba

    _check_strategy()
    n = allowed_threads() if strategy == "within" and size >= PARALLEL_FROM else 1
    numba.set_num_threads(n)
    return n


def blocks_for(size: int, threads: int, limit: int | None = None) -> int:
    """Blocks for a pass over ``size`` entries: one per thread alone, else about
    ``size / BLOCK`` (at least two per thread), at most ``limit`` (rows) and MAX_BLOCKS."""
    if threads <= 1:
        return 1
    n = max(2 * threads, size // BLOCK)
    return max(1, min(n, MAX_BLOCKS, limit if limit is not None else n))
