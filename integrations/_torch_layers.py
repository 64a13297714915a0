"""Which parameters of a torch model are layers, and how each is read: ``find_layers``.

A layer is a module with a learnable weight of at least two dimensions
(linear, convolution, embedding, attention projections split per q / k / v,
normalisation scales), named by its path in the model (wrappers' prefixes
removed), with its role, heads and the tensors to read at each log.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from weightwatch.integrations._torch_dist import clean_name
from weightwatch.layers import LayerInfo, LayerTensors, finish_discovery

__all__ = ["discover_layers", "find_layers"]

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
