"""Per-layer reductions, dispatched by where the weights live.

- arrays in host memory (numpy, torch CPU tensors, jax CPU arrays, Keras
  variables on those backends) go to the fused numba kernels in :mod:`.cpu`,
  viewed without copying, spread over threads as :mod:`.threads` says;
- torch tensors on an accelerator go to :mod:`.torch_device`, computed there,
  with one small transfer to the host per call.

No framework is imported here: arrays are recognised by their type's module.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .raw import RawLayer
from .threads import layer_threads
from .torch_device import KernelJob, reduce_on_device

__all__ = ["KernelJob", "RawLayer", "reduce_jobs", "to_numpy"]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _on_accelerator(x: Any) -> bool:
    return _is_torch(x) and x.device.type != "cpu"


def to_numpy(x: Any) -> np.ndarray:
    """A host numpy view of ``x`` (no copy for float32/float64 host tensors)."""
    if isinstance(x, np.ndarray):
        return x
    if _is_torch(x):
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if not t.is_floating_point() or t.dtype.itemsize < 4:  # float16 / bfloat16 have no numpy view
            t = t.float()
        return t.numpy()
    return np.asarray(x)


def reduce_jobs(jobs: Sequence[KernelJob], bins: int, *, on_device: bool | None = None) -> list[RawLayer]:
    """Reduce every job; results in the order of ``jobs``.

    Args:
        on_device: None picks per job (accelerator tensors on the device, the
            rest on the CPU kernels); True forces the torch-op path for torch
            tensors even on the CPU (tests use it to check both paths agree).
    """
    device_idx = [i for i, job in enumerate(jobs)
                  if _is_torch(job.kernel) and (on_device or (on_device is None and _on_accelerator(job.kernel)))]
    results: list[RawLayer | None] = [None] * len(jobs)
    if device_idx:  # reduce_on_device imports torch: never for host arrays alone
        for i, raw in zip(device_idx, reduce_on_device([jobs[i] for i in device_idx], bins)):
            results[i] = raw
    host = [i for i in range(len(jobs)) if results[i] is None]
    kernels = {i: to_numpy(jobs[i].kernel) for i in host}
    threads = layer_threads(sum(k.size for k in kernels.values()), len(host))
    if threads > 1:  # whole layers to a pool, the largest first
        order = sorted(host, key=lambda i: -kernels[i].size)
        pool = _layer_pool(threads)
        for i, raw in zip(order, pool.map(lambda i: _reduce_host(jobs[i], kernels[i], bins, 1), order)):
            results[i] = raw
    else:
        for i in host:
            results[i] = _reduce_host(jobs[i], kernels[i], bins, None)
    return results  # type: ignore[return-value]


def _reduce_host(job: KernelJob, kernel: np.ndarray, bins: int, threads: int | None) -> RawLayer:
    from .cpu import reduce_kernel

    raw = reduce_kernel(kernel, job.nodes, bins, job.input_units, threads=threads)
    if job.sample is not None:
        raw.sample = kernel.reshape(-1)[job.sample].astype(np.float32)
    if job.bias is not None:
        raw.bias = to_numpy(job.bias).astype(np.float64).reshape(-1)
    return raw


_pools: dict[int, ThreadPoolExecutor] = {}


def _layer_pool(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count, kept for the process (threads sleep between log calls)."""
    if threads not in _pools:
        _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="weightwatch-reduce")
    return _pools[threads]
