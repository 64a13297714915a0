"""The data flow of a ``torch.nn.Module``, traced on one example batch (see :mod:`weightwatch.flow`).

Every tensor that carries the output of a watched layer gets a twin *index
tensor* of the same shape: the producer unit each element holds (``c * P + p``
for a convolution, the neuron for a linear layer). Shape operations (view,
reshape, flatten, permute, transpose, indexing, cat, stack, split, ...) are
applied to the index tensor as they are to the data, so at a consumer the
index tells, for every input column or (channel, position), which unit it
reads, through activations, norms, residual adds and concatenations. Matrix
products keep the right operand's units when their feature axis survives
(``softmax(q k^T) v`` keeps v's, contracts q's and k's). Pooling mixes
positions: the units become channels (``pooled``).

Two drivers run the same rules: :func:`torch.fx.symbolic_trace` with the
watched layers as leaves, interpreted node by node; and, for models fx cannot
trace, forward hooks on the watched layers plus a ``TorchFunctionMode`` that
sees every other operation. The example batch is cut to its first sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from weightwatch.flow import ConvGeometry, Edge, Flow

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.RMSNorm)
#: operations applied to the index tensor exactly as to the data
_STRUCTURAL = {"view", "reshape", "flatten", "unflatten", "permute", "transpose", "t", "contiguous", "getitem",
               "select", "narrow", "unsqueeze", "squeeze", "expand", "expand_as", "repeat", "movedim",
               "moveaxis", "swapaxes", "cat", "concat", "concatenate", "stack", "split", "chunk", "unbind",
               "clone", "flip", "roll", "tensor_split", "hsplit", "vsplit", "view_as", "reshape_as"}
_MATMUL = {"matmul", "bmm", "mm"}
#: operations that mix features through weights weightwatch does not watch: the units end there
_MIXING = {"linear", "bilinear", "einsum", "embedding", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
           "conv_transpose2d", "conv_transpose3d", "interpolate", "upsample", "grid_sample"}
_SINKS = {"cross_entropy", "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div", "argmax", "argmin"}
_REDUCE = {"mean", "sum", "amax", "amin", "max", "min", "logsumexp", "nanmean", "nansum"}

Piece = tuple[str, torch.Tensor, bool, tuple[tuple[str, torch.Tensor], ...]]  # producer, index, pooled, norms


def _op_name(func: Any) -> str:
    name = getattr(func, "__name__", str(func))
    name = name.strip("_")
    return name[1:] if name.startswith("i") and name[1:] in ("add", "sub", "mul", "truediv") else (
        name[1:] if name.startswith("r") and name[1:] in ("add", "sub", "mul", "truediv", "matmul") else name)


def _tensors(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for item in x for t in _tensors(item)]
    if isinstance(x, dict):
        return [t for item in x.values() for t in _tensors(item)]
    return []


def _substitute(x: Any, target: torch.Tensor, index: torch.Tensor) -> Any:
    """``x`` with ``target`` replaced by ``index`` and every other tensor by a -1 twin."""
    if isinstance(x, torch.Tensor):
        return index if x is target else torch.full(x.shape, -1, dtype=torch.long)
    if isinstance(x, (list, tuple)):
        return type(x)(_substitute(item, target, index) for item in x)
    if isinstance(x, dict):
        return {k: _substitute(v, target, index) for k, v in x.items()}
    return x


def _units(shape: Sequence[int], feature_dims: Sequence[int]) -> torch.Tensor:
    """An index tensor of ``shape`` numbering the elements of ``feature_dims`` (major to minor)."""
    sizes = [shape[d] for d in feature_dims]
    idx = torch.arange(int(np.prod(sizes)) if sizes else 1).reshape(sizes)
    view = [1] * len(shape)
    for d, s in zip(feature_dims, sizes):
        view[d] = s
    return idx.reshape(view).expand(*shape).contiguous()


class Tracker:
    """Follows the watched layers' units through one forward pass and collects the :class:`Edge` s."""

    def __init__(self, modules: Mapping[nn.Module, str]) -> None:
        self.modules = dict(modules)  # watched module -> its layer name (an MHA: its prefix)
        self.pieces: dict[int, tuple[torch.Tensor, list[Piece]]] = {}
        self.flow = Flow()
        self.lost: set[str] = set()

    # -- bookkeeping -------------------------------------------------------------------------
    def get(self, t: Any) -> list[Piece]:
        entry = self.pieces.get(id(t)) if isinstance(t, torch.Tensor) else None
        return entry[1] if entry is not None and entry[0] is t else []

    def put(self, t: Any, pieces: list[Piece]) -> None:
        if isinstance(t, torch.Tensor) and pieces:
            unique: list[Piece] = []
            for p in pieces:
                if not any(q[0] == p[0] and q[2] == p[2] and torch.equal(q[1], p[1]) for q in unique):
                    unique.append(p)
            self.pieces[id(t)] = (t, unique)

    # -- operations ----------------------------------------------------------------------------
    def op(self, func: Any, args: tuple, kwargs: Mapping[str, Any], out: Any) -> None:
        """Propagate the units of ``func(*args, **kwargs) -> out``."""
        inputs = [t for t in _tensors(args) + _tensors(kwargs) if self.get(t)]
        if not inputs or not _tensors(out):  # x.dim(), x.size(): metadata, nothing flows
            return
        name = _op_name(func)
        if "loss" in name or name in _SINKS:
            return  # a loss reads the output; no weight follows
        if name in _MIXING:
            self.lost.add(name)
        elif name in _STRUCTURAL:
            self._structural(func, args, kwargs, out, inputs)
        elif name in _MATMUL:
            self._matmul(args, out)
        elif name == "scaled_dot_product_attention":
            v = args[2] if len(args) > 2 else kwargs.get("value")
            self.put(out, [self._keep_rows(p, out) for p in self.get(v)])
        elif name in _REDUCE and isinstance(out, torch.Tensor) and out.shape != inputs[0].shape:
            self._reduce(inputs[0], out)
        elif "pool" in name and isinstance(out, (torch.Tensor, tuple)):
            self._pool(inputs[0], out[0] if isinstance(out, tuple) else out)
        elif isinstance(out, torch.Tensor):  # elementwise: activations, adds, dtype casts, ...
            kept = []
            for t in inputs:
                for producer, index, pooled, norms in self.get(t):
                    try:
                        kept.append((producer, index.expand(out.shape), pooled,
                                     tuple((n, g.expand(out.shape)) for n, g in norms)))
                    except RuntimeError:
                        self.lost.add(name)
            self.put(out, kept)
        else:
            self.lost.add(name)

    def _structural(self, func: Any, args: tuple, kwargs: Mapping[str, Any], out: Any,
                    inputs: list[torch.Tensor]) -> None:
        outs = _tensors(out)
        gathered: list[list[Piece]] = [[] for _ in outs]
        for t in inputs:
            for producer, index, pooled, norms in self.get(t):
                def run(idx: torch.Tensor) -> list[torch.Tensor]:
                    return _tensors(func(*_substitute(args, t, idx), **_substitute(dict(kwargs), t, idx)))
                try:
                    moved = run(index)
                    moved_norms = [(n, run(g)) for n, g in norms]
                except (RuntimeError, TypeError, IndexError):
                    self.lost.add(_op_name(func))
                    continue
                for k, idx in enumerate(moved[:len(outs)]):
                    gathered[k].append((producer, idx, pooled, tuple((n, g[k]) for n, g in moved_norms)))
        for o, pieces in zip(outs, gathered):
            self.put(o, pieces)

    def _keep_rows(self, piece: Piece, out: torch.Tensor) -> Piece:
        producer, index, pooled, norms = piece
        return (producer, index[..., :1, :].expand(out.shape), pooled,
                tuple((n, g[..., :1, :].expand(out.shape)) for n, g in norms))

    def _matmul(self, args: tuple, out: torch.Tensor) -> None:
        a, b = args[0], args[1]
        kept = []
        for producer, index, pooled, norms in self.get(a):  # survives when its last (contracted) axis is no feature axis
            if index.dim() >= 2 and bool((index == index[..., :1]).all()):
                kept.append((producer, index[..., :1].expand(out.shape), pooled,
                             tuple((n, g[..., :1].expand(out.shape)) for n, g in norms)))
        for piece in self.get(b):  # survives when its contracted axis (-2) is no feature axis
            index = piece[1]
            if index.dim() >= 2 and bool((index == index[..., :1, :]).all()):
                kept.append(self._keep_rows(piece, out))
        self.put(out, kept)  # q k^T keeps nothing: both are contracted, and no weight follows

    def _channels(self, producer: str, index: torch.Tensor, pooled: bool) -> torch.Tensor:
        return index if pooled else torch.div(index, self.flow.positions.get(producer, 1), rounding_mode="floor")

    def _reduce(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """mean / sum over some axes: units kept where constant over them, else their channels (pooled)."""
        kept = []
        for producer, index, pooled, norms in self.get(x):
            for idx, as_pooled in ((index, pooled), (self._channels(producer, index, pooled), True)):
                reduced = self._reduced(idx, out.shape)
                if reduced is not None:
                    # a norm's scale entry is per feature / channel: it survives the reduction alike
                    kept_norms = tuple((n, r) for n, r in ((n, self._reduced(g, out.shape)) for n, g in norms)
                                       if r is not None)
                    kept.append((producer, reduced, as_pooled, kept_norms))
                    break
            else:
                self.lost.add("reduce")
        self.put(out, kept)

    @staticmethod
    def _reduced(idx: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
        """``idx`` collapsed to ``shape`` when every collapsed element agrees, else None."""
        dims = [d for d in range(idx.dim()) if d >= len(shape) or idx.shape[d] != shape[d]]
        if idx.dim() == len(shape):  # keepdim
            lo, hi = idx.amin(dims, keepdim=True), idx.amax(dims, keepdim=True)
            return hi.expand(shape) if torch.equal(lo, hi) else None
        # dims dropped: find which by matching sizes left to right
        keep, j = [], 0
        for d in range(idx.dim()):
            if j < len(shape) and idx.shape[d] == shape[j]:
                keep.append(d)
                j += 1
        if j != len(shape):
            return None
        drop = [d for d in range(idx.dim()) if d not in keep]
        lo, hi = idx.amin(drop), idx.amax(drop)
        return hi if torch.equal(lo, hi) else None

    def _pool(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """A pooling keeps (batch, channel) and mixes positions: each unit becomes its channel."""
        kept = []
        def per_channel(idx: torch.Tensor) -> torch.Tensor | None:
            flat = idx.reshape(*idx.shape[:2], -1)
            if out.dim() < 2 or tuple(out.shape[:2]) != tuple(idx.shape[:2]) or not bool((flat == flat[..., :1]).all()):
                return None
            return flat[..., :1].reshape(*idx.shape[:2], *([1] * (out.dim() - 2))).expand(out.shape)

        for producer, index, pooled, norms in self.get(x):
            view = per_channel(self._channels(producer, index, pooled))
            if view is not None:
                kept_norms = tuple((n, r) for n, r in ((n, per_channel(g)) for n, g in norms) if r is not None)
                kept.append((producer, view, True, kept_norms))
            else:
                self.lost.add("pool")
        self.put(out, kept)

    # -- layers --------------------------------------------------------------------------------
    def consume(self, consumer: str, x: Any, per_column: bool) -> None:
        """``consumer`` reads ``x``: a linear layer per last-axis column, a conv per (channel, position)."""
        for producer, index, pooled, norms in self.get(x):
            if per_column:
                # one row per token; when tokens read different units (a conv map as a sequence),
                # every row is kept and column f's weight counts once per row
                rows = index.reshape(-1, index.shape[-1])
                every = not bool((rows == rows[0]).all())
                units = rows if every else rows[0]
                gammas = tuple((n, (g.reshape(-1, g.shape[-1]) if every else g.reshape(-1, g.shape[-1])[0]).numpy())
                               for n, g in norms)
            else:
                units = index[0]
                gammas = tuple((n, g[0].numpy()) for n, g in norms)
            self.flow.edges.append(Edge(producer, consumer, units.numpy().copy(), pooled, gammas))

    def produce(self, name: str, out: torch.Tensor, conv: bool) -> None:
        if conv:
            self.flow.positions[name] = int(np.prod(out.shape[2:]))
            self.put(out, [(name, _units(out.shape, range(1, out.dim())), False, ())])
        else:
            self.put(out, [(name, _units(out.shape, [out.dim() - 1]), False, ())])

    def norm(self, name: str, module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> None:
        """A normalisation layer passes the units on, noting which scale entry each element meets."""
        if isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
            dims = list(range(x.dim() - len(module.normalized_shape), x.dim()))
        else:
            dims = [1]
        gamma = _units(out.shape, dims)
        self.put(out, [(p, i.expand(out.shape), pooled, norms + ((name, gamma),))
                       for p, i, pooled, norms in self.get(x)])

    def layer(self, module: nn.Module, args: tuple, kwargs: Mapping[str, Any], out: Any) -> None:
        """A watched module ran: record what it consumed, label what it produced."""
        name = self.modules[module]
        x = args[0] if args else next(iter(kwargs.values()), None)
        if isinstance(module, nn.MultiheadAttention):
            names = ("query", "key", "value")
            given = {n: (args[i] if i < len(args) else kwargs.get(n)) for i, n in enumerate(names)}
            for n, proj in zip(names, ("q_proj", "k_proj", "v_proj")):
                self.consume(f"{name}.{proj}", given[n], per_column=True)
            e = module.embed_dim
            self.flow.edges.append(Edge(f"{name}.v_proj", f"{name}.out_proj", np.arange(e)))
            self.produce(f"{name}.out_proj", out[0] if isinstance(out, tuple) else out, conv=False)
        elif isinstance(module, _CONV):
            self.consume(name, x, per_column=False)
            self.flow.geometry[name] = _geometry(module, x.shape[2:], out.shape[2:])
            self.produce(name, out, conv=True)
        elif isinstance(module, nn.Linear):
            self.consume(name, x, per_column=True)
            self.produce(name, out, conv=False)
        else:
            self.norm(name, module, x, out)


def _geometry(conv: nn.Module, spatial: Sequence[int], out_spatial: Sequence[int]) -> ConvGeometry:
    k, d = conv.kernel_size, conv.dilation
    if isinstance(conv.padding, str):
        before = tuple(0 if conv.padding == "valid" else dd * (kk - 1) // 2 for kk, dd in zip(k, d))
    else:
        before = tuple(conv.padding)
    return ConvGeometry(stride=tuple(conv.stride), dilation=tuple(d), pad_before=before, groups=conv.groups,
                        input_spatial=tuple(int(s) for s in spatial), output_spatial=tuple(int(s) for s in out_spatial))
