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
``offsets``         (L + 1,) int64       layer i owns entries offsets[i]:offsets[i+1]
``indices``         (N,) int64           flat positions sampled in each layer's
                                         kernel (PyTorch layout, C order)
``values``          (N,) float32         the kernel's values at those positions
==================  ===================  ========================================

Layer i has ``min(size of its kernel, SKETCH_SIZE)`` entries. Rewritten
atomically at every log call that records weights, so a crash leaves the last
complete sketch.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .storage import RemoteDir, location, read_whole, write_whole

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


def write_sketch(run_dir: str | Path | RemoteDir, step: int, names: Sequence[str], indices: Sequence[np.ndarray],
                 values: Sequence[np.ndarray]) -> None:
    """Replace the run's sketch, whole (see :func:`weightwatch.storage.write_whole`)."""
    sizes = [len(idx) for idx in indices]
    arrays = {
        "format": np.array(SKETCH_FORMAT), "version": np.array(SKETCH_VERSION, dtype=np.int64),
        "step": np.array(step, dtype=np.int64), "layers": np.array(list(names), dtype=str),
        "offsets": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        "indices": np.concatenate(indices).astype(np.int64) if sizes else np.zeros(0, np.int64),
        "values": np.concatenate(values).astype(np.float32) if sizes else np.zeros(0, np.float32),
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_whole(location(run_dir), SKETCH_FILE, buffer.getvalue())


def read_sketch(run_dir: str | Path | RemoteDir) -> tuple[int, dict[str, np.ndarray]]:
    """(step, {layer name: sampled values}) from a run directory's sketch file.

    Raises FileNotFoundError when the run has none, ValueError for a file of
    another format or version.
    """
    where = location(run_dir)
    path = f"{where}/{SKETCH_FILE}"
    with np.load(io.BytesIO(read_whole(where, SKETCH_FILE)), allow_pickle=False) as data:
        if str(data.get("format", "")) != SKETCH_FORMAT or int(data["version"]) != SKETCH_VERSION:
            raise ValueError(f"{path} is not a weightwatch sketch of version {SKETCH_VERSION}")
        names = [str(n) for n in data["layers"]]
        offsets, values = data["offsets"], data["values"]
        return int(data["step"]), {name: values[offsets[i]:offsets[i + 1]].copy() for i, name in enumerate(names)}
