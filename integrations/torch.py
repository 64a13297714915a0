"""PyTorch integration: ``WeightWatch`` for plain training loops.

>>> ww = WeightWatch(model, log_dir="runs/exp1", hparams={"lr": 1e-3})  # doctest: +SKIP
>>> for epoch in range(epochs):                                        # doctest: +SKIP
...     train_one_epoch(model)
...     ww.log(epoch, loss=loss, accuracy=acc)
>>> ww.close()                                                          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weightwatch._optional import require

torch = require("torch", "torch", "weightwatch.integrations.torch")
nn = torch.nn

import fnmatch  # noqa: E402
import warnings  # noqa: E402

from weightwatch.flow import Flow  # noqa: E402
from weightwatch.integrations._callback import WatchSession  # noqa: E402
from weightwatch.integrations._torch_dist import (  # noqa: E402
    Shards, clean_name, process, sharded_reducer, unwrap)
from weightwatch.integrations._torch_trace import FlowTracer  # noqa: E402
from weightwatch.integrations.options import Schedule, WatchOptions, as_schedule, check_every  # noqa: E402
from weightwatch.layers import LayerInfo, LayerTensors, finish_discovery  # noqa: E402

__all__ = ["WatchOptions", "WeightWatch", "discover_layers", "every_n", "find_layers"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.RMSNorm)


@dataclass(frozen=True)
class _Source:
    """Where a layer's tensors live: attributes of a module, read at every log (so parameters
    replaced after the callback was made, and parametrized weights, are read as they are now),
    with row slices into packed ones (an attention module's q/k/v weights and biases are stored
    stacked)."""

    owner: nn.Module
    weight: str
    bias: str | None = None
    weight_rows: slice | None = None
    bias_rows: slice | None = None

    def key(self) -> tuple[int, int | None]:
        """Identifies the parameter behind the kernel, so a tied one is watched once."""
        plist = getattr(getattr(self.owner, "parametrizations", None), self.weight, None)
        attr = getattr(self.owner, self.weight, None)
        held = plist if plist is not None else attr if isinstance(attr, nn.Parameter) else self.owner
        return id(held), self.weight_rows.start if self.weight_rows is not None else None

    def raw(self) -> tuple[Any, Any | None]:
        """The kernel and bias tensors as the module computes them now (whole, not sliced)."""
        w = _effective(self.owner, self.weight)
        b = _effective(self.owner, self.bias) if self.bias is not None else None
        return w, b

    def tensors(self) -> LayerTensors:
        w, b = self.raw()
        w = w if self.weight_rows is None else w[self.weight_rows]
        b = b if b is None or self.bias_rows is None else b[self.bias_rows]
        return LayerTensors(kernel=w.detach(), bias=b.detach() if b is not None else None)


def _effective(module: nn.Module, name: str) -> Any:
    """``module.<name>`` as the forward pass uses it: a parametrization (``parametrize``,
    ``nn.utils.parametrizations.weight_norm``) computes it on access; the older
    ``nn.utils.weight_norm`` / ``spectral_norm`` hooks only compute it before each forward, so
    it is computed here from their parameters, to log the weight the next step will use."""
    for hook in module._forward_pre_hooks.values():
        if getattr(hook, "name", None) == name and hasattr(hook, "compute_weight"):
            if "do_power_iteration" in hook.compute_weight.__code__.co_varnames:
                return hook.compute_weight(module, do_power_iteration=False)
            return hook.compute_weight(module)
    return getattr(module, name)


def _bias(module: nn.Module) -> str | None:
    return "bias" if getattr(module, "bias", None) is not None else None


def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "Attention" in type(module).__name__


def _block_prefixes(model: nn.Module) -> set[str]:
    """Module paths of 'blocks': modules holding exactly one top-level attention
    module (a transformer layer). Linear layers inside them are the block's MLP."""
    attention = [name for name, m in model.named_modules() if name and _is_attention(m)]
    top = [a for a in attention if not any(a.startswith(b + ".") for b in attention if b != a)]
    blocks = set()
    for name, _ in model.named_modules():
        if name and sum(1 for a in top if a.startswith(name + ".")) == 1:
            blocks.add(name)
    return blocks


def _linear_role(name: str, blocks: set[str]) -> str:
    parts = name.lower().split(".")
    if any("attn" in p or "attention" in p for p in parts):
        return "attn"
    if any(name.startswith(b + ".") for b in blocks):
        return "mlp"
    return "fc"


#: last name components of the separate query / key / value projections (Hugging Face, BERT, ViT, ...)
_QKV = {"query", "key", "value", "q_proj", "k_proj", "v_proj", "q", "k", "v", "to_q", "to_k", "to_v",
        "q_lin", "k_lin", "v_lin", "wq", "wk", "wv"}
_HEAD_ATTRS = ("num_attention_heads", "num_heads", "n_heads", "n_head", "num_head")


def _attribute_heads(module: nn.Module, kv: bool) -> int | None:
    """The head count an attention module (or its ``config``) declares; key/value heads for k and v."""
    for holder in (module, getattr(module, "config", None)):
        for attr in (("num_key_value_heads",) if kv else ()) + _HEAD_ATTRS:
            value = getattr(holder, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def _linear_heads(name: str, modules: Mapping[str, nn.Module], heads: Mapping[str, int] | None) -> int:
    """Heads of a Linear: the user's ``heads={"glob": n}`` first, then, for a q/k/v projection, the
    nearest enclosing module's ``num_attention_heads`` / ``num_heads`` (or its config's); else 1."""
    for pattern, n in (heads or {}).items():
        if fnmatch.fnmatchcase(name, pattern):
            return n
    last = name.split(".")[-1].lower()
    if last not in _QKV:
        return 1
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        found = _attribute_heads(modules.get(".".join(parts[:i]), nn.Module()), kv=last[0] in "kv")
        if found:
            return found
    return 1


def _check_heads(heads: Mapping[str, int] | None) -> None:
    for pattern, n in (heads or {}).items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"heads: {pattern!r} -> {n!r} must be a positive integer number of heads")


ShapeOf = Callable[[nn.Module, str], tuple[int, ...]]


def _own_shape(module: nn.Module, name: str) -> tuple[int, ...]:
    return tuple(getattr(module, name).shape)


def _mha_sources(name: str, m: nn.MultiheadAttention, shape: ShapeOf) -> list[tuple[LayerInfo, _Source]]:
    e, heads = m.embed_dim, m.num_heads
    out = []
    if m._qkv_same_embed_dim:
        b = m.in_proj_bias
        for i, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            rows = slice(i * e, (i + 1) * e)
            info = LayerInfo(f"{name}.{proj}", "attention", "attn", (e, shape(m, "in_proj_weight")[1]), heads,
                             b is not None)
            out.append((info, _Source(m, "in_proj_weight", "in_proj_bias" if b is not None else None, rows, rows)))
    else:
        b = m.in_proj_bias
        for i, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            rows = slice(i * e, (i + 1) * e)
            info = LayerInfo(f"{name}.{proj}", "attention", "attn", shape(m, f"{proj}_weight"), heads, b is not None)
            out.append((info, _Source(m, f"{proj}_weight", "in_proj_bias" if b is not None else None, None, rows)))
    o = m.out_proj
    out.append((LayerInfo(f"{name}.out_proj", "attention", "attn", shape(o, "weight"), 1, o.bias is not None),
                _Source(o, "weight", "bias" if o.bias is not None else None)))
    return out


def find_layers(model: nn.Module, heads: Mapping[str, int] | None = None,
                shape: ShapeOf | None = None) -> list[tuple[LayerInfo, _Source]]:
    """Every layer weightwatch understands, in registration order, before include / exclude.

    Linear, Conv1d/2d/3d, MultiheadAttention (one layer per projection),
    LayerNorm / GroupNorm / BatchNorm / RMSNorm and Embedding. A parameter
    shared by several modules is watched once, under its first name; frozen
    parameters are watched like the others. ``heads`` (``{"glob": n}``) sets
    the head count of matching Linear layers; a q/k/v projection otherwise
    takes its attention module's ``num_attention_heads`` / ``num_heads``. ``shape(module, name)``
    gives the whole shape of a parameter (under FSDP1 a parameter is this rank's flat piece).
    """
    _check_heads(heads)
    shape = shape or _own_shape
    blocks = _block_prefixes(model)
    modules = {clean_name(name) or type(m).__name__.lower(): m for name, m in model.named_modules()}
    found: list[tuple[LayerInfo, _Source]] = []
    inside_mha: list[str] = []
    seen: set[tuple[int, int | None]] = set()
    for name, m in model.named_modules():
        if any(name.startswith(p + ".") for p in inside_mha):
            continue  # an MHA's out_proj is handled with the MHA
        label = clean_name(name) or type(m).__name__.lower()
        entries: list[tuple[LayerInfo, _Source]] = []
        if isinstance(m, nn.MultiheadAttention):
            inside_mha.append(name)
            entries = _mha_sources(label, m, shape)
        elif isinstance(m, nn.Linear):
            n_heads = _linear_heads(label, modules, heads)
            if shape(m, "weight")[0] % n_heads:
                raise ValueError(f"heads: {label} has {shape(m, 'weight')[0]} output units, not divisible into "
                                 f"{n_heads} heads; fix the heads= override")
            entries = [(LayerInfo(label, "linear", _linear_role(label, blocks), shape(m, "weight"), n_heads,
                                  m.bias is not None), _Source(m, "weight", _bias(m)))]
        elif isinstance(m, _CONV):
            entries = [(LayerInfo(label, "conv", "conv", shape(m, "weight"), 1, m.bias is not None),
                        _Source(m, "weight", _bias(m)))]
        elif isinstance(m, _NORM) and getattr(m, "weight", None) is not None:
            entries = [(LayerInfo(label, "norm", "norm", shape(m, "weight"), 1,
                                  getattr(m, "bias", None) is not None), _Source(m, "weight", _bias(m)))]
        elif isinstance(m, nn.Embedding):
            entries = [(LayerInfo(label, "embed", "embed", shape(m, "weight")), _Source(m, "weight"))]
        for info, source in entries:
            key = source.key()
            if key in seen:
                continue
            seen.add(key)
            found.append((info, source))
    if not found:
        kinds = sorted({type(m).__name__ for m in model.modules()})
        raise ValueError(
            f"weightwatch found no layer it can watch in {type(model).__name__}: it has {kinds}. "
            "Supported: Linear, Conv1d/2d/3d, MultiheadAttention, LayerNorm, GroupNorm, BatchNorm, "
            "RMSNorm, Embedding."
        )
    return found


def discover_layers(model: nn.Module, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
                    roles: Mapping[str, str] | None = None,
                    heads: Mapping[str, int] | None = None) -> list[tuple[LayerInfo, _Source]]:
    """:func:`find_layers`, then ``include`` / ``exclude`` (glob patterns on the layer names) and
    ``roles`` (``{"glob": role}`` overrides)."""
    return finish_discovery(find_layers(model, heads), include, exclude, roles)


@dataclass(frozen=True)
class _ShardedSource:
    """A layer of a sharded (FSDP) model: this rank's pieces of its kernel and bias."""

    source: _Source
    shards: Shards

    def tensors(self) -> LayerTensors:
        s = self.source
        w, b = s.raw()
        bias = self.shards.piece(s.owner, s.bias, b, s.bias_rows) if b is not None else None
        return LayerTensors(kernel=self.shards.piece(s.owner, s.weight, w, s.weight_rows), bias=bias)


@dataclass
class Watched:
    """What a watcher of a torch model on this rank reads (:func:`watched`).

    Attributes:
        rank: this process's rank (0 outside torch.distributed).
        found: ``(LayerInfo, source)`` per watched layer.
        everything: every layer found before include / exclude, to trace the data flow on;
            empty for a sharded model (its strengths have no outgoing term).
        reduce: the collective reduction of a sharded model, None when every rank holds it whole.
    """

    rank: int
    found: list[tuple[LayerInfo, Any]]
    everything: list[tuple[LayerInfo, Any]]
    reduce: Any = None

    @property
    def sharded(self) -> bool:
        return self.reduce is not None

    @property
    def writes(self) -> bool:
        return self.rank == 0


def watched(model: nn.Module, options: WatchOptions, sync_timeout: float,
            wrapper: nn.Module | None = None) -> Watched:
    """The layers of ``model`` (the user's module, wrappers looked through by the caller) and how
    they are read on this rank: whole (one process, DDP) or, when sharded (``fully_shard``, or
    FullyShardedDataParallel units in ``model`` or in ``wrapper``, the module a framework wrapped
    it in), this rank's pieces reduced over every rank. Under FSDP it is a collective call (it
    makes weightwatch's own process group): every rank calls it."""
    rank, shards = process(model, wrapper)
    everything = find_layers(model, options.heads, shards.shape if shards is not None else None)
    found = finish_discovery(everything, options.include, options.exclude, options.roles)
    if shards is None:
        return Watched(rank, found, everything)
    found = [(info, _ShardedSource(source, shards)) for info, source in found]
    return Watched(rank, found, [], sharded_reducer(sync_timeout))


def _count_parameters(model: nn.Module) -> int:
    """How many parameter tensors the model has (a cheap check that layers were added)."""
    return sum(1 for _ in model.parameters())


def every_n(n: int) -> Schedule:
    """A schedule that records at steps 0, n, 2n, ...

    >>> [s for s in range(7) if every_n(3)(s)]
    [0, 3, 6]
    """
    if n is None:
        raise ValueError("every_n needs a positive integer, got None")
    return as_schedule(check_every(n, "every_n"))


class WeightWatch:
    """Record per-layer weight statistics of a ``torch.nn.Module`` into TensorBoard.

    Args:
        model: the network; its parameters are read in place at each log call.
            A DDP, DataParallel or ``torch.compile`` wrapper is looked through
            (layer names are the wrapped model's).
        log_dir: the run directory (one run per directory).
        example_input: one batch (a tensor, a tuple of positional arguments or a
            dict of keywords) to trace the data flow on at once; without it the
            flow is traced on the first forward pass (see docs/node-strength.md).
        sync_timeout: under FSDP, how long (seconds) ``log()`` waits for every
            rank to call it before it reports the ranks that did not.
        options: a :class:`~weightwatch.integrations.options.WatchOptions`;
            ``**settings`` are its fields as keywords (``hparams``, ``schedule``,
            ``include``, ``exclude``, ``roles``, ``bins``, ``reference``, ``stop``,
            ``heads``, ``fold_norm_scale``, ``strict``), overriding ``options``. Here ``schedule`` is asked about
            each ``step`` given to :meth:`log`.

    Under torch.distributed only rank 0 writes. With DDP (every rank holds the
    whole model) the other ranks do nothing at all, no collective is called,
    and ranks may call :meth:`log` at different moments. Under FSDP
    (``fully_shard``, or FullyShardedDataParallel) every rank must make the
    WeightWatch and call :meth:`log` at the same steps:
    the statistics are reduced from each rank's shard with a few small
    all-reduces; the complex-network strengths of a sharded model have no
    outgoing term (a consumer's kernel is split over the ranks).
    """

    def __init__(self, model: nn.Module, log_dir: str | Path = "runs/weightwatch", *, example_input: Any = None,
                 sync_timeout: float = 300.0, options: WatchOptions | None = None, **settings: Any) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"WeightWatch needs a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.options = WatchOptions.build(options, settings, owner="WeightWatch")
        opts = self.options
        inner = unwrap(model)
        plan = watched(inner, opts, sync_timeout)
        self.rank, found, everything = plan.rank, plan.found, plan.everything
        if plan.sharded:
            self.tracer, flow = None, Flow(method="untraced")
        else:  # traced before include / exclude, so leaving a layer out changes no other layer's numbers
            self.tracer = FlowTracer(inner, everything, example_input, on_traced=self._use_flow)
            flow = self.tracer.flow or Flow(method="untraced")
        self._parameters = _count_parameters(inner)
        self._inner = inner
        self._warned_untraced = False
        # the same engine the Keras / Lightning / HF callbacks drive
        self.run = WatchSession(log_dir, found, opts, framework="torch", writes=plan.writes, reduce=plan.reduce,
                                flow=flow, context=everything)
        self.layers = self.run.layers
        self.recorder = self.run.recorder
        self.log_dir = self.run.log_dir

    def _use_flow(self, flow: Flow) -> None:
        if getattr(self, "run", None) is not None and self.run.recorder is not None:
            self.run.recorder.flow = flow

    @property
    def flow(self) -> Flow | None:
        """The traced data flow (None until traced), see :mod:`weightwatch.flow`."""
        return self.tracer.flow if self.tracer is not None else None

    def tensors(self) -> list[LayerTensors]:
        """The current kernels and biases (views of the parameters, no copies)."""
        return self.run.tensors()

    def log(self, step: int, **metrics: Any) -> bool:
        """Write ``metrics`` at ``step``, and the weights' statistics when the schedule says so
        (once per step: logging a step again writes only its metrics).

        Returns whether the weights were recorded.
        """
        record = bool(self.options.records(step)) and self.run.weights_step != step
        if record and self.run.writes and _count_parameters(self._inner) != self._parameters:
            self.run.guard.warn("added", "the model has parameters it did not have when the WeightWatch was made "
                                "(layers added or removed); only the layers found then are watched. Make the "
                                "WeightWatch after the model is complete.")
        if record and self.tracer is not None and self.tracer.flow is None and not self._warned_untraced and \
                sum(layer.has_nodes for layer in self.tracer.layers) > 1:
            self._warned_untraced = True
            warnings.warn(f"weightwatch: step {step} is recorded before {type(self.model).__name__} ran a forward "
                          "pass, so its data flow is not traced yet: the complex-network strengths of this record "
                          "have no outgoing term. Pass example_input= to trace it at once.",
                          RuntimeWarning, stacklevel=2)
        with torch.no_grad():
            self.run.log(step, metrics, weights=record)
        return record

    @property
    def scorer(self) -> Any:
        """The live scorer (see ``weightwatch.analysis.LiveScorer``), or None without a reference."""
        return self.run.scorer

    @property
    def score(self) -> Any:
        """The reference's latest verdict (a ``Score``), or None (no reference, nothing recorded yet)."""
        return self.run.scorer.score if self.run.scorer is not None else None

    @property
    def should_stop(self) -> bool:
        """Whether the ``stop`` rule says to stop training now."""
        return self.run.should_stop

    def close(self, success: bool = True) -> None:
        if self.tracer is not None:
            self.tracer.detach()
        self.run.close(success)

    def __enter__(self) -> WeightWatch:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(success=exc_type is None)
