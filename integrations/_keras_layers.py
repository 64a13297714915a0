"""Finding the layers of a Keras model weightwatch watches, with their names, roles and sources.

See :mod:`weightwatch.integrations.keras` for the names and the layout rules.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from weightwatch.layers import LayerInfo, finish_discovery

from ._keras_layout import (KerasSource, Layout, after_channels_last, attention_out, conv_layout, dense_layout, keras,
                            qkv_layout, same_layout)

__all__ = ["discover_layers"]

_L = keras.layers
_CONV = (_L.Conv1D, _L.Conv2D, _L.Conv3D)
#: normalisation layers and the attributes of their scale and shift vectors
_NORM = tuple((cls, scale, shift) for cls, scale, shift in (
    (getattr(_L, "LayerNormalization", None), "gamma", "beta"),
    (getattr(_L, "BatchNormalization", None), "gamma", "beta"),
    (getattr(_L, "GroupNormalization", None), "gamma", "beta"),
    (getattr(_L, "RMSNormalization", None), "scale", None),
) if cls is not None)


def _children(layer: Any) -> list[Any]:
    """Direct sub-layers, in the order Keras tracks them (the order of ``layer.weights``)."""
    return list(layer._flatten_layers(include_self=False, recursive=False))


def _walk(model: Any) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    """Every sub-layer once, depth first, with its ancestors (the model excluded).

    A MultiHeadAttention's own sub-layers are not visited: they are read through it.
    """
    seen: set[int] = set()

    def visit(layer: Any, ancestors: tuple[Any, ...]) -> Iterator[tuple[Any, tuple[Any, ...]]]:
        for child in _children(layer):
            if id(child) in seen:
                continue
            seen.add(id(child))
            yield child, ancestors
            if not isinstance(child, _L.MultiHeadAttention):
                yield from visit(child, ancestors + (child,))

    yield from visit(model, ())


def _is_attention(layer: Any) -> bool:
    return isinstance(layer, _L.MultiHeadAttention) or "Attention" in type(layer).__name__


def _blocks(walked: Sequence[tuple[Any, tuple[Any, ...]]]) -> set[int]:
    """ids of the 'blocks': layers holding exactly one top-level attention layer (a transformer
    layer); a Dense inside one is the block's MLP, as in the PyTorch integration."""
    top = [ancestors for layer, ancestors in walked
           if _is_attention(layer) and not any(_is_attention(a) for a in ancestors)]
    holders = [id(a) for ancestors in top for a in ancestors]
    return {i for i in holders if holders.count(i) == 1}


def _variable(layer: Any, attr: str) -> Any:
    """The variable behind ``layer.<attr>`` (the property computes a tensor on a LoRA-enabled layer)."""
    private = getattr(layer, "_" + attr, None)
    return private if isinstance(private, keras.Variable) else getattr(layer, attr)


def _path(variable: Any, root: str, drop: int = 1) -> str:
    """The layer path of a variable, without the model's name ``root``:
    ``block/attn/query/kernel`` -> ``block.attn`` for drop=2."""
    parts = variable.path.split("/")[:-drop]
    return ".".join(parts[1:] if len(parts) > 1 and parts[0] == root else parts)


def _dense_role(name: str, ancestors: tuple[Any, ...], blocks: set[int]) -> str:
    if any("attn" in part or "attention" in part for part in name.lower().split(".")):
        return "attn"
    if any(id(a) in blocks for a in ancestors):
        return "mlp"
    return "fc"


def _sub(layer: Any, name: str) -> Any:
    """A MultiHeadAttention's projection layer (public property in recent Keras, private before)."""
    return getattr(layer, name, None) or getattr(layer, "_" + name)


def _attention_entries(layer: Any, root: str) -> list[tuple[str, str, int, KerasSource]]:
    """(name, kind, heads, source) for each projection of a MultiHeadAttention."""
    heads = layer.num_heads
    projections = [("q_proj", "query_dense", qkv_layout, heads), ("k_proj", "key_dense", qkv_layout, heads),
                   ("v_proj", "value_dense", qkv_layout, heads),
                   ("out_proj", "output_dense", attention_out, 1)]
    base = _path(_variable(_sub(layer, "query_dense"), "kernel"), root, drop=2)
    return [(f"{base}.{proj}", "attention", heads, KerasSource(_sub(layer, attr), "kernel", layout, owner=layer))
            for proj, attr, layout, heads in projections]


Entry = tuple[str, str, str, int, KerasSource]  # (name, kind, role, heads, source)


def _norm_entries(layer: Any, root: str) -> list[Entry]:
    for cls, scale, shift in _NORM:
        if isinstance(layer, cls):
            weight = getattr(layer, scale, None)
            if not isinstance(weight, keras.Variable):
                return []  # scale=False: nothing learnable to watch, as in PyTorch
            if shift is None or not isinstance(getattr(layer, shift, None), keras.Variable):
                shift = None  # center=False, or a norm without a shift
            return [(_path(weight, root), "norm", "norm", 1, KerasSource(layer, scale, same_layout, shift))]
    return []


def _dense_kernel_layout(inputs: int, after_conv: int | None) -> Layout:
    """A plain transpose, or the channel-major reorder when the Dense reads a channels-last
    conv's flattened output (its inputs a multiple of the conv's channels)."""
    if after_conv and inputs > after_conv and inputs % after_conv == 0:
        return after_channels_last(after_conv)
    return dense_layout


def _entries(layer: Any, ancestors: tuple[Any, ...], blocks: set[int], after_conv: int | None,
             root: str) -> list[Entry]:
    """The watched layers one Keras layer gives; [] when weightwatch does not watch it.

    ``root`` is the model's name, left out of the layer names."""
    if isinstance(layer, _L.MultiHeadAttention):
        return [(n, kind, "attn", h, s) for n, kind, h, s in _attention_entries(layer, root)]
    if isinstance(layer, _L.Dense):
        kernel = _variable(layer, "kernel")
        name = _path(kernel, root)
        return [(name, "linear", _dense_role(name, ancestors, blocks), 1,
                 KerasSource(layer, "kernel", _dense_kernel_layout(kernel.shape[0], after_conv)))]
    if isinstance(layer, _CONV):
        return [(_path(_variable(layer, "kernel"), root), "conv", "conv", 1, KerasSource(layer, "kernel", conv_layout))]
    if isinstance(layer, _L.Embedding):
        return [(_path(_variable(layer, "embeddings"), root), "embed", "embed", 1,
                 KerasSource(layer, "embeddings", same_layout, None))]
    return _norm_entries(layer, root)


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``, ... when another layer already has it."""
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{name}_{n}"
    taken.add(out)
    return out


def discover_layers(model: Any, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None,
                    roles: Mapping[str, str] | None = None) -> list[tuple[LayerInfo, KerasSource]]:
    """:func:`find_layers`, then ``include`` / ``exclude`` (globs on the names) and ``roles`` overrides."""
    return finish_discovery(find_layers(model), include, exclude, roles)


def find_layers(model: Any) -> list[tuple[LayerInfo, KerasSource]]:
    """Find the layers weightwatch understands in a built Keras model, in the order of ``model.weights``.

    Dense, Conv1D/2D/3D, MultiHeadAttention (one layer per projection), Layer-,
    Batch-, Group- and RMSNormalization, Embedding; layers nested in other
    layers or models too. Roles follow the PyTorch integration: the last
    ``fc`` Dense is the ``output``, a Dense in a layer holding one attention
    layer is ``mlp``, one whose path names attention is ``attn``.
    Before include / exclude (see :func:`discover_layers`).
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"discover_layers needs a Keras model or layer, got {type(model).__name__}")
    walked = list(_walk(model))
    blocks = _blocks(walked)
    found: list[tuple[LayerInfo, KerasSource]] = []
    taken: set[str] = set()
    after_conv: int | None = None  # channels of the channels-last conv a Dense may read flattened
    for layer, ancestors in walked:
        # a Sequential builds its layers inside its own name scope: its name starts their paths
        for name, kind, role, heads, source in _entries(layer, ancestors, blocks, after_conv, model.name):
            tensors = source.tensors()
            found.append((LayerInfo(_unique(name, taken), kind, role, tuple(tensors.kernel.shape), heads,
                                    tensors.bias is not None), source))
        if isinstance(layer, _CONV):
            after_conv = layer.filters if getattr(layer, "data_format", "") == "channels_last" else None
        elif isinstance(layer, (_L.Dense, _L.MultiHeadAttention)):
            after_conv = None
    if not found:
        kinds = sorted({type(layer).__name__ for layer, _ in walked} | {type(model).__name__})
        raise ValueError(
            f"weightwatch found no layer it can watch in {type(model).__name__}: it has {kinds}"
            + ("" if model.built else " (the model is not built yet: call it once, or build it, first)")
            + ". Supported: Dense, Conv1D/2D/3D, MultiHeadAttention, Layer/Batch/Group/RMSNormalization, "
            "Embedding."
        )
    return found

