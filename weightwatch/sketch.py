"""A fixed-size sketch of each layer's latest weights, for projecting runs (t-SNE).

Every run of one architecture samples the *same* positions of each kernel
(chosen from the kernel's shape alone), so sketches of different runs are
comparable vectors. Stored next to the event file as ``weightwatch_sketch.npz``
(numpy's open format; read with ``np.load(path, allow_pickle=False)``):

==================  ===================  ========================================
array               shape / dtype        meaning
==================  ===================  ========================================
``format``          () str               ``"weightwatch-sketch"``
``version``         () int64             1
``step``            () int64             the log step the values come from
``layers``          (L,) str             layer names, in the run's layer order
``indices_<i>``     (k_i,) int64         flat positions sampled in layer i's kernel
                                         (PyTorch layout, C order)
``values_<i>``      (k_i,) float32       the kernel's values at those positions
==================  ===================  ========================================

``k_i = min(size of the kernel, SKETCH_SIZE)``. Rewritten atomically at every
log call that records weights, so a crash leaves the last complete sketch.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SKETCH_FILE = "weightwatch_sketch.npz"
SKETCH_FORMAT = "weightwatch-sketch"
SKETCH_VERSION = 1
SKETCH_SIZE = 256


def sketch_indices(shape: Sequence[int], size: int = SKETCH_SIZE) -> np.ndarray:
    """Sorted flat positions to sample from a kernel of ``shape``; depends on the shape only.

    >>> sketch_indices((4, 3), size=5).tolist() == sketch_indices((4, 3), size=5).tolist()
    True
    """
    n = int(np.prod(shape))
    if n <= size:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(zlib.crc32(repr(tuple(int(d) for d in shape)).encode()))
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


def write_sketch(run_dir: str | Path, step: int, names: Sequence[str], indices: Sequence[np.ndarray],
                 values: Sequence[np.ndarray]) -> Path:
    path = Path(run_dir) / SKETCH_FILE
    arrays: dict[str, np.ndarray] = {
        "format": np.array(SKETCH_FORMAT), "version": np.array(SKETCH_VERSION, dtype=np.int64),
        "step": np.array(step, dtype=np.int64), "layers": np.array(list(names), dtype=str),
    }
    for i, (idx, val) in enumerate(zip(indices, values)):
        arrays[f"indices_{i}"] = np.asarray(idx, dtype=np.int64)
        arrays[f"values_{i}"] = np.asarray(val, dtype=np.float32)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    tmp.replace(path)
    return path


def read_sketch(run_dir: str | Path) -> tuple[int, dict[str, np.ndarray]]:
    """(step, {layer name: sampled values}) from a run directory's sketch file.

    Raises FileNotFoundError when the run has none, ValueError for a file of
    another format or version.
    """
    path = Path(run_dir) / SKETCH_FILE
    with np.load(path, allow_pickle=False) as data:
        if str(data.get("format", "")) != SKETCH_FORMAT or int(data["version"]) != SKETCH_VERSION:
            raise ValueError(f"{path} is not a weightwatch sketch of version {SKETCH_VERSION}")
        names = [str(n) for n in data["layers"]]
        return int(data["step"]), {name: data[f"values_{i}"].copy() for i, name in enumerate(names)}
