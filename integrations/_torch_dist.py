"""torch.distributed for the PyTorch integrations: wrappers, ranks, shards and the collectives.

- DDP, DataParallel and ``torch.compile`` wrap the user's model: :func:`unwrap`
  finds it, and :func:`clean_name` drops the wrappers' path segments
  (``module.``, ``_orig_mod.``, ``_fsdp_wrapped_module.``), so the layer names
  are the user's.
- DDP: every rank holds the whole model, only rank 0 writes and no
  collective is ever called (ranks may log at different moments).
- FSDP (``fully_shard``, whose parameters are DTensors sharded by rows, and
  FullyShardedDataParallel, whose units hold each rank's contiguous range of a
  flattened parameter): :class:`Shards` reads each rank's own part of a
  parameter as a :class:`~weightwatch.distributed.ShardPiece` (its flat
  positions in the whole parameter), and :func:`sharded_reducer` combines the
  ranks with :func:`weightwatch.distributed.reduce_sharded` after a barrier
  that names a rank that did not call ``log()`` in time. No rank gathers a
  parameter.
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

__all__ = ["Shards", "clean_name", "is_sharded", "process", "sharded_piece", "sharded_reducer", "unwrap"]

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


class Shards:
    """How the ranks hold a sharded model's parameters, read per ``(module, attribute)``.

    - ``fully_shard`` (FSDP2): a parameter is a DTensor sharded by rows (Shard(0)) over a 1-D
      mesh, or over the shard dimension of a 2-D (HSDP) mesh whose other dimension replicates
      it; only the ranks at coordinate 0 of the replicating dimensions contribute their rows.
    - FullyShardedDataParallel (FSDP1): the parameters of each FSDP unit are flattened into one
      FlatParameter, and each rank holds one contiguous range of it (padded to equal lengths), so
      a rank holds a contiguous flat range of each original parameter (possibly none, possibly a
      row split in two). The piece is read from the unit's local shard (its full-precision
      values, whichever state the unit is in); under NO_SHARD (every rank the whole parameter)
      and HYBRID_SHARD (shards replicated across groups) only the shard group of rank 0
      contributes.
    - a plain tensor (a module left unsharded): every rank holds all of it; rank 0 contributes it.

    Args:
        root: the module FSDP1 wrapped (the outermost FullyShardedDataParallel, or a module
            holding them); None when the model has no FSDP1 unit.
        rank: this process's global rank.
    """

    def __init__(self, root: nn.Module | None, rank: int) -> None:
        self.rank = rank
        self._at: dict[tuple[int, str], tuple[Any, int]] = {}  # (id(module), attribute) -> (handle, index)
        self.held: set[int] = set()  # ids of the units' FlatParameters and original parameters
        for m in root.modules() if root is not None else ():
            handle = getattr(m, "_handle", None) if _is_fsdp1(m) else None
            if handle is None:
                continue
            flat = handle.flat_param
            self.held.update(id(p) for p in [flat, *(flat._params or []), *(flat._shared_params or [])])
            index = {(id(info.module), info.param_name): i for i, info in enumerate(flat._param_infos)}
            self._at.update({key: (handle, i) for key, i in index.items()})
            for shared in flat._shared_param_infos:  # tied parameters: the primary's values
                self._at[(id(shared.module), shared.param_name)] = (
                    handle, index[(id(shared.prim_module), shared.prim_param_name)])

    def shape(self, module: nn.Module, name: str) -> tuple[int, ...]:
        """The whole shape of ``module.<name>``."""
        found = self._at.get((id(module), name))
        if found is not None:
            handle, i = found
            return tuple(handle.flat_param._shapes[i])
        return tuple(getattr(module, name).shape)

    def piece(self, module: nn.Module, name: str, value: torch.Tensor, rows: slice | None) -> ShardPiece:
        """This rank's contribution to ``module.<name>`` (``value``: the attribute as the
        module computes it), or to its rows ``rows``."""
        found = self._at.get((id(module), name))
        if found is None:
            return sharded_piece(value, rows, self.rank)
        handle, i = found
        flat = handle.flat_param
        if not flat._contiguities[i]:
            raise ValueError(f"{name} is not contiguous in memory (channels_last?): FSDP flattens it in memory "
                             "order, not in the order of its elements; make it contiguous before wrapping")
        whole = tuple(flat._shapes[i])
        local = getattr(flat, "_local_shard", None)  # set at FSDP's lazy init (the first forward)
        if local is None:
            local = flat.data  # before the lazy init the flat parameter is this rank's shard
        info = flat._shard_param_infos[i]
        if not (info.in_shard and _contributes(handle, self.rank)):
            return _rows(ShardPiece(local[:0].detach(), 0, math.prod(whole)), whole, rows)
        values = local[info.offset_in_shard:info.offset_in_shard + info.numel_in_shard].detach()
        return _rows(ShardPiece(values, int(info.intra_param_start_idx), math.prod(whole)), whole, rows)


def _is_fsdp1(module: nn.Module) -> bool:
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # pragma: no cover - torch without FSDP
        return False
    return isinstance(module, FullyShardedDataParallel)


def _contributes(handle: Any, rank: int) -> bool:
    """Whether this rank's shard of an FSDP1 unit is counted: its shard group is rank 0's (the
    whole world under FULL_SHARD / SHARD_GRAD_OP; one replica of the shards under
    HYBRID_SHARD); under NO_SHARD, rank 0 alone."""
    if not handle.uses_sharded_strategy:
        return rank == 0
    return 0 in dist.get_process_group_ranks(handle.process_group)


def process(model: nn.Module, wrapper: nn.Module | None = None) -> tuple[int, Shards | None]:
    """``(rank, shards)``: this process's rank (0 outside torch.distributed), and how the ranks
    hold the model's parameters when it is sharded (``fully_shard`` DTensors, or FSDP1 units in
    ``model`` or in ``wrapper``, the module a framework wrapped it in); None when every rank
    holds the whole model."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, None
    from torch.distributed.tensor import DTensor

    rank = dist.get_rank()
    root = next((m for m in (wrapper, model) if m is not None and any(_is_fsdp1(x) for x in m.modules())), None)
    shards = Shards(root, rank) if root is not None else None
    lost = [name for name, p in model.named_parameters()
            if getattr(p, "_fsdp_flattened", False) and (shards is None or id(p) not in shards.held)]
    if lost:
        raise TypeError(
            f"{clean_name(lost[0])} of {type(model).__name__} is held by a FullyShardedDataParallel unit that "
            "cannot be reached from the module given (FSDP wrapped it from outside): give the watcher the "
            "FSDP-wrapped model, or shard it with fully_shard (FSDP2; Hugging Face / accelerate: "
            "fsdp_version 2), whose parameters say where they are.")
    if shards is not None:
        return rank, shards
    if any(isinstance(p, DTensor) for p in model.parameters()):
        return rank, Shards(None, rank)
    return rank, None


def is_sharded(model: nn.Module, wrapper: nn.Module | None = None) -> bool:
    """Whether every rank takes part in the logs of ``model``: it is sharded (or held by FSDP in
    a way :func:`process` refuses, so that every rank says so and none waits for another)."""
    if not (dist.is_available() and dist.is_initialized()):
        return False
    from torch.distributed.tensor import DTensor

    return any(_is_fsdp1(m) for top in (wrapper, model) if top is not None for m in top.modules()) or \
        any(isinstance(p, DTensor) or getattr(p, "_fsdp_flattened", False) for p in model.parameters())


def _rows(piece: ShardPiece, whole: tuple[int, ...], rows: slice | None) -> ShardPiece:
    """The part of ``piece`` (of a tensor of shape ``whole``) in the rows ``rows``, positions
    counted from the first of those rows; ``piece`` itself when ``rows`` is None."""
    if rows is None:
        return piece
    per_row = math.prod(whole[1:])
    lo, hi = rows.start * per_row, rows.stop * per_row  # the rows' flat span in the whole parameter
    values, start = piece.values, piece.start
    a, b = max(lo, start), min(hi, start + values.numel())
    if a >= b:
        return ShardPiece(values[:0], 0, hi - lo)
    return ShardPiece(values[a - start:b - start], a - lo, hi - lo)


def sharded_piece(t: torch.Tensor, rows: slice | None = None, rank: int = 0) -> ShardPiece:
    """This rank's contribution to the ``fully_shard`` parameter ``t`` (a DTensor sharded by rows),
    or to its rows ``rows`` when given: its block of rows, nothing on a replica that is not the
    first. A plain tensor (on every rank whole) is contributed by rank 0."""
    from torch.distributed.tensor import DTensor, Replicate, Shard

    whole = tuple(t.shape)
    if isinstance(t, DTensor):
        from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

        placements = t.placements
        if any(not isinstance(p, Replicate) and p != Shard(0) for p in placements) or \
                sum(isinstance(p, Shard) for p in placements) > 1:
            raise ValueError(f"a parameter placed as {placements} is not supported: weightwatch reads fully_shard "
                             "parameters sharded by rows (Shard(0)), possibly replicated (HSDP)")
        coordinate = t.device_mesh.get_coordinate() or []
        first = all(c == 0 for c, p in zip(coordinate, placements) if isinstance(p, Replicate))
        _, offset = compute_local_shape_and_global_offset(t.shape, t.device_mesh, placements)
        start = int(offset[0]) * math.prod(whole[1:]) if whole else 0
        values = t.to_local().detach().reshape(-1)
    else:
        start, values, first = 0, t.detach().reshape(-1), rank == 0
    if not first:
        values = values[:0]
    return _rows(ShardPiece(values, start if first else 0, math.prod(whole)), whole, rows)


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
