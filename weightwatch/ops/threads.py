"""How many threads the CPU kernels use, and how the work is cut into blocks.

A watcher runs inside a training process that already keeps every core busy.
A parallel region ends when its slowest thread does, so a thread that loses
its core stalls the whole log call. Two rules keep the worst case bounded
(measured in benchmarks/RESULTS.md, "Under contention"):

- small kernels run on the calling thread alone: waking other threads costs
  more than it saves;
- large kernels are cut into many blocks of about :data:`BLOCK` entries that
  threads take one at a time, so a descheduled thread holds back one block,
  not a fixed share of the kernel.

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


def thread_count(size: int) -> int:
    """Threads for a kernel of ``size`` entries; also sets numba's count for the next call."""
    import numba

    n = 1
    if size >= PARALLEL_FROM:
        n = numba.config.NUMBA_NUM_THREADS
        torch = sys.modules.get("torch")
        if torch is not None and hasattr(torch, "get_num_threads"):
            n = min(n, torch.get_num_threads())
        if max_threads is not None:
            n = min(n, max_threads)
        n = max(1, n)
    numba.set_num_threads(n)
    return n


def blocks_for(size: int, threads: int, limit: int | None = None) -> int:
    """Blocks for a pass over ``size`` entries: one per thread alone, else about
    ``size / BLOCK`` (at least two per thread), at most ``limit`` (rows) and MAX_BLOCKS."""
    if threads <= 1:
        return 1
    n = max(2 * threads, size // BLOCK)
    return max(1, min(n, MAX_BLOCKS, limit if limit is not None else n))
