"""Per-layer reductions, dispatched by where the weights live.

- arrays in host memory (numpy, torch CPU tensors, jax CPU arrays, Keras
  variables on those backends) go to the fused numba kernels in :mod:`.cpu`,
  viewed without copying;
- torch tensors on an accelerator go to :mod:`.torch_device`, computed there,
  with one small transfer to the host per call.

No framework is imported here: arrays are recognised by their type's module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .raw import RawLayer
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
    from .cpu import reduce_kernel

    device_idx = [i for i, job in enumerate(jobs)
                  if _is_torch(job.kernel) and (on_device or (on_device is None and _on_accelerator(job.kernel)))]
    results: list[RawLayer | None] = [None] * len(jobs)
    if device_idx:  # reduce_on_device imports torch: never for host arrays alone
        for i, raw in zip(device_idx, reduce_on_device([jobs[i] for i in device_idx], bins)):
            results[i] = raw
    for i, job in enumerate(jobs):
        if results[i] is not None:
            continue
        kernel = to_numpy(job.kernel)
        raw = reduce_kernel(kernel, job.nodes, bins, job.input_units)
        if job.sample is not None:
            raw.sample = kernel.reshape(-1)[job.sample].astype(np.float32)
        if job.bias is not None:
            raw.bias = to_numpy(job.bias).astype(np.float64).reshape(-1)
        results[i] = raw
    return results  # type: ignore[return-value]
