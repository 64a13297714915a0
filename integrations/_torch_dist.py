"""torch.distributed for the PyTorch integrations: wrappers, ranks, shards and the collectives.

- DDP, DataParallel and ``torch.compile`` wrap the user's model: :func:`unwrap`
  finds it, and :func:`clean_name` drops the wrappers' path segments
  (``module.``, ``_orig_mod.``, ``_fsdp_wrapped_module.``), so the layer names
  are the user's.
- DDP: every rank holds the whole model, only rank 0 writes and no
  collective is ever called (ranks may log at different moments).
- FSDP (``fully_shard``, whose parameters are DTensors sharded by rows):
  each rank reads only its own block of rows as a
  :class:`~weightwatch.distributed.ShardPiece`, and :func:`sharded_reducer`
  combines the ranks with :func:`weightwatch.distributed.reduce_sharded`
  after a barrier that names a rank that did not call ``log()`` in time.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from weightwatch.distributed import ShardPiece, reduce_sharded

__all__ = ["clean_name", "process", "sharded_piece", "sharded_reducer", "unwrap"]

_WRAPPER_SEGMENTS = {"_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module"}


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside DDP / DataParallel / ``torch.compile`` wrappers (any nesting)."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


def clean_name(name: str) -> str:
    """A module path without the wrappers' segments: ``_orig_mod.0._fsdp_wrapped_module.fc`` -> ``0.fc``."""
    return ".".join(part for part in name.split(".") if part not in _WRAPPER_SEGMENTS)


def process(model: nn.Module) -> tuple[int, bool]:
    """``(rank, sharded)``: this process's rank (0 outside torch.distributed), and whether the
    model's parameters are ``fully_shard`` DTensors. FullyShardedDataParallel (FSDP1) is refused
    with an error saying what to use instead."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, False
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # pragma: no cover - torch without FSDP
        FullyShardedDataParallel = ()  # noqa: N806
    if any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
        raise TypeError(
            "weightwatch does not watch FullyShardedDataParallel (FSDP1) models: their layers hold flat pieces "
            "of a flattened parameter. Shard the model with torch.distributed.fsdp.fully_shard (FSDP2) instead; "
            "its statistics are computed from the shards.")
    from torch.distributed.tensor import DTensor

    return dist.get_rank(), any(isinstance(p, DTensor) for p in model.parameters())


def sharded_piece(t: torch.Tensor, rows: slice | None = None) -> ShardPiece:
    """This rank's piece of the ``fully_shard`` parameter ``t`` (a DTensor sharded by rows,
    Shard(0)), or of its rows ``rows`` when given; a plain tensor is one whole piece."""
    from torch.distributed.tensor import DTensor

    whole = tuple(t.shape)
    if isinstance(t, DTensor):
        from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

        _, offset = compute_local_shape_and_global_offset(t.shape, t.device_mesh, t.placements)
        start = int(offset[0]) * math.prod(whole[1:]) if whole else 0
        values = t.to_local().detach().reshape(-1)
    else:
        start, values = 0, t.detach().reshape(-1)
    if rows is None:
        return ShardPiece(values, start, math.prod(whole))
    per_row = math.prod(whole[1:])
    lo, hi = rows.start * per_row, rows.stop * per_row  # the rows' flat span in the whole parameter
    a, b = max(lo, start), min(hi, start + values.numel())
    if a >= b:
        return ShardPiece(values[:0], 0, hi - lo)
    return ShardPiece(values[a - start:b - start], a - lo, hi - lo)


def sharded_reducer(timeout_s: float) -> Any:
    """``reduce(jobs, bins, on_device=None)`` over every rank, after a barrier that fails within
    ``timeout_s`` naming the ranks that did not call ``log()``.

    Makes weightwatch's own gloo group (a collective call: every rank makes the WeightWatch), so
    its few CPU all-reduces never interleave with the training's collectives.
    """
    group = dist.new_group(backend="gloo")
    ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN}

    def all_reduce(vector: np.ndarray, op: str) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float64))
        dist.all_reduce(t, op=ops[op], group=group)
        return t.numpy()

    def reduce(jobs: Any, bins: int, on_device: bool | None = None) -> Any:
        try:
            dist.monitored_barrier(group=group, timeout=timedelta(seconds=timeout_s), wait_all_ranks=True)
        except RuntimeError as exc:
            raise TimeoutError(
                f"under FSDP every rank must call log() at the same steps; waited {timeout_s:g} s ({exc}). "
                "Call ww.log(...) on every rank (only rank 0 writes); weightwatch stops logging this run") from exc
        return reduce_sharded(jobs, bins, all_reduce)

    return reduce
