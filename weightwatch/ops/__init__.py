"""Per-layer reductions, dispatched by where the weights live.

- arrays in host memory (numpy, torch CPU tensors, jax CPU arrays, Keras
  variables on those backends) go to the fused numba kernels in :mod:`.cpu`,
  viewed without copying, spread over threads as :mod:`.threads` says;
- torch tensors and jax arrays on an accelerator, and tensorflow tensors
  wherever they live, go to :mod:`.torch_device`, :mod:`.jax_device` and
  :mod:`.tf_device`: computed there with the framework's own ops, with one
  small transfer to the host per call. (A tensorflow CPU tensor has no
  zero-copy numpy view, and TensorFlow's own CPU ops beat copying it out.)

No framework is imported here: arrays are recognised by their type's module,
and a framework's device module (which imports it) is loaded only when a
tensor of that framework is handed over.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .raw import KernelJob, RawLayer
from .threads import layer_threads

__all__ = ["KernelJob", "RawLayer", "framework_of", "reduce_jobs", "to_numpy"]

#: top-level module of an array's type -> the framework it belongs to
_FRAMEWORKS = {"torch": "torch", "jax": "jax", "jaxlib": "jax", "tensorflow": "tensorflow"}
#: framework -> the module holding its ``reduce_on_device``
_DEVICE_MODULES = {"torch": ".torch_device", "jax": ".jax_device", "tensorflow": ".tf_device"}


def framework_of(x: Any) -> str | None:
    """``"torch"``, ``"jax"`` or ``"tensorflow"`` for an array of that framework, else None (numpy, lists)."""
    return _FRAMEWORKS.get(type(x).__module__.split(".")[0])


def _framework_ops_by_default(x: Any, framework: str | None) -> bool:
    """Whether ``x`` is reduced with its framework's ops when the caller does not say: torch
    tensors and jax arrays off the CPU (on the CPU they are free numpy views for the numba
    kernels, measured faster there), every tensorflow tensor (no free view)."""
    if framework == "torch":
        return x.device.type != "cpu"
    if framework == "jax":
        return any(d.platform != "cpu" for d in x.devices())
    return framework == "tensorflow"


def to_numpy(x: Any) -> np.ndarray:
    """A host numpy view of ``x`` (no copy for float32/float64 host tensors)."""
    if isinstance(x, np.ndarray):
        return x
    if framework_of(x) == "torch":
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if not t.is_floating_point() or t.dtype.itemsize < 4:  # float16 / bfloat16 have no numpy view
            t = t.float()
        return t.numpy()
    return np.asarray(x)  # jax / tensorflow: their __array__; bfloat16 comes as ml_dtypes' type


def reduce_jobs(jobs: Sequence[KernelJob], bins: int, *, on_device: bool | None = None) -> list[RawLayer]:
    """Reduce every job; results in the order of ``jobs``.

    Args:
        on_device: None picks per job (torch / jax accelerator arrays and every
            tensorflow tensor with their framework's ops where they live; numpy,
            torch and jax CPU arrays on the CPU kernels); True forces the framework-op
            path for every torch / jax / tensorflow tensor, False the CPU kernels
            (tests use both to check the paths agree).
    """
    by_framework: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        framework = framework_of(job.kernel)
        if framework and (on_device or (on_device is None and _framework_ops_by_default(job.kernel, framework))):
            by_framework.setdefault(framework, []).append(i)
    results: list[RawLayer | None] = [None] * len(jobs)
    for framework, indices in by_framework.items():  # a framework's module is imported for its tensors only
        device = importlib.import_module(_DEVICE_MODULES[framework], __name__)
        for i, raw in zip(indices, device.reduce_on_device([jobs[i] for i in indices], bins)):
            results[i] = raw
    host = [i for i in range(len(jobs)) if results[i] is None]
    kernels = {i: to_numpy(jobs[i].kernel) for i in host}
    threads = layer_threads(sum(k.size for k in kernels.values()), len(host))
    if threads > 1:  # whole layers to a pool, the largest first
        # each worker takes the next layer from one shared iterator (next() on it holds the GIL): a
        # thread that loses its core delays one layer, and a thousand small layers cost a few futures,
        # not a thousand of them handed over one by one
        order = iter(sorted(host, key=lambda i: -kernels[i].size))

        def work() -> None:
            for i in order:
                results[i] = _reduce_host(jobs[i], kernels[i], bins, 1)

        pool = _layer_pool(threads)
        for future in [pool.submit(work) for _ in range(threads)]:
            future.result()  # raises the first error of that worker
    else:
        for i in host:
            results[i] = _reduce_host(jobs[i], kernels[i], bins, None)
    return results  # type: ignore[return-value]


def _reduce_host(job: KernelJob, kernel: np.ndarray, bins: int, threads: int | None) -> RawLayer:
    from .cpu import reduce_kernel

    raw = reduce_kernel(kernel, job.nodes, bins, job.input_units, col_groups=job.col_groups, threads=threads)
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
