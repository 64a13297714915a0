"""Keras arrays in the core's layout: the Keras import (with an error naming the backend) and
the per-layer-type views of a kernel (see the table in :mod:`weightwatch.integrations.keras`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from weightwatch._optional import require
from weightwatch.layers import LayerTensors

def _import_keras() -> Any:
    """``keras``; an ImportError naming the extra when it is missing, or KERAS_BACKEND when
    Keras is installed but its backend is not (Keras defaults to tensorflow)."""
    try:
        return require("keras", "keras", "weightwatch.integrations.keras")
    except ImportError as exc:
        cause = exc.__cause__
        if isinstance(cause, ModuleNotFoundError) and cause.name and cause.name.split(".")[0] != "keras":
            backend = os.environ.get("KERAS_BACKEND", "tensorflow")
            raise ImportError(
                f"weightwatch.integrations.keras: Keras is installed but cannot load its backend {backend!r} "
                f"({cause}). Set KERAS_BACKEND to an installed backend: torch, jax or tensorflow."
            ) from cause
        raise


keras = _import_keras()

Layout = Callable[[Any], Any]


def backend_array(x: Any) -> Any:
    """The backend's own array behind a Keras variable or tensor, where it lives: a detached
    ``torch.Tensor`` (a view) on torch, a ``jax.Array`` on jax, a ``tf.Tensor`` on tensorflow."""
    value = x.value if isinstance(x, keras.Variable) else x
    if type(value).__module__.split(".")[0] == "torch":
        return value.detach()
    return keras.ops.convert_to_tensor(value)


def permute(x: Any, axes: Sequence[int]) -> Any:
    """``x`` with its axes reordered: a view of a torch tensor, the backend's transpose otherwise."""
    return x.permute(*axes) if hasattr(x, "permute") else keras.ops.transpose(x, axes)


def reshape(x: Any, shape: Sequence[int]) -> Any:
    return x.reshape(*shape) if hasattr(x, "permute") else keras.ops.reshape(x, shape)


def same_layout(x: Any) -> Any:
    return x


def dense_layout(x: Any) -> Any:
    """(in, out) -> (out, in)."""
    return permute(x, (1, 0))


def conv_layout(x: Any) -> Any:
    """(*k, in, out) -> (out, in, *k), for 1, 2 and 3 spatial axes."""
    n = len(x.shape)
    return permute(x, (n - 1, n - 2, *range(n - 2)))


def after_channels_last(channels: int) -> Layout:
    """(H*W*C, out), inputs in (H, W, C) order -> (out, C*H*W), inputs in (C, H, W) order.

    The only conversion that copies: the reordered input axis is no view of the kernel.
    """
    def layout(x: Any) -> Any:
        out = x.shape[1]
        return reshape(permute(reshape(x, (-1, channels, out)), (2, 1, 0)), (out, -1))
    layout.reorders_inputs = True  # type: ignore[attr-defined]  # the data flow reorders its columns alike
    return layout


def qkv_layout(x: Any) -> Any:
    """(E, heads, head_dim) -> (heads * head_dim, E): node h * head_dim + d is head h's unit d."""
    return dense_layout(reshape(x, (x.shape[0], -1)))


def attention_out(x: Any) -> Any:
    """(heads, head_dim, E_out) -> (E_out, heads * head_dim)."""
    return dense_layout(reshape(x, (-1, x.shape[-1])))


@dataclass(frozen=True)
class KerasSource:
    """Where a watched layer's values live: attributes of a Keras layer, and how to lay them out.

    The attributes are read at every call (a LoRA-enabled Dense computes its kernel).
    """

    layer: Any
    kernel: str
    layout: Layout = same_layout
    bias: str | None = "bias"
    owner: Any = None  # the MultiHeadAttention a projection belongs to

    def tensors(self) -> LayerTensors:
        kernel = self.layout(backend_array(getattr(self.layer, self.kernel)))
        bias = getattr(self.layer, self.bias, None) if self.bias else None
        return LayerTensors(kernel=kernel, bias=reshape(backend_array(bias), (-1,)) if bias is not None else None)

