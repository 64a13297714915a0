"""What a watched layer is, independent of the framework it lives in.

Integrations translate their framework's modules into :class:`LayerInfo` once,
and at each log call hand the core one :class:`LayerTensors` per layer, with
the kernel already in PyTorch's layout:

=============  ==========================  ====================================
kind           kernel shape                a *node* is
=============  ==========================  ====================================
``linear``     (out, in)                   an output neuron (row)
``conv``       (C_out, C_in, *kernel)      an output channel (one kernel)
``attention``  (out, in) per projection    an output unit of the projection
``norm``       (features,)                 -- (no node strength)
``embed``      (num_embeddings, dim)       -- (no node strength)
=============  ==========================  ====================================

Attention modules are split by the integration into one layer per projection
(``<module>.q_proj``, ``.k_proj``, ``.v_proj``, ``.out_proj``), each with the
module's head count, so node strength can also be reported per head; separate
q/k/v ``linear`` layers (the Hugging Face pattern) carry their head count too.
Which layer feeds which is :mod:`weightwatch.flow`'s business.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

#: The roles the analysis groups layers by (the paper's Attn / MLP / Norm, ...).
ROLES = ("fc", "conv", "attn", "mlp", "norm", "embed", "output")
#: Layer kinds whose nodes have a node strength.
NODE_KINDS = ("linear", "conv", "attention")
KINDS = NODE_KINDS + ("norm", "embed")


@dataclass(frozen=True)
class LayerInfo:
    """Static description of one watched layer.

    Attributes:
        name: the tag component, e.g. ``encoder.layers.0.self_attn.q_proj``.
        kind: one of :data:`KINDS`; fixes how the kernel is read (see module doc).
        role: one of :data:`ROLES`; how the analysis groups the layer.
        shape: the kernel's shape in PyTorch layout.
        heads: attention heads (1 for everything else); the output units of a
            q/k/v projection split into ``heads`` equal groups.
        has_bias: whether a bias vector comes with the kernel.
    """

    name: str
    kind: str
    role: str
    shape: tuple[int, ...]
    heads: int = 1
    has_bias: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"layer {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        if self.role not in ROLES:
            raise ValueError(f"layer {self.name!r}: role {self.role!r} is not one of {ROLES}")
        if self.heads < 1:
            raise ValueError(f"layer {self.name!r}: heads must be >= 1, got {self.heads}")

    @property
    def has_nodes(self) -> bool:
        return self.kind in NODE_KINDS

    @property
    def nodes(self) -> int:
        """Number of nodes (output units); 0 for kinds without node strength."""
        return self.shape[0] if self.has_nodes else 0

    @property
    def inputs(self) -> int:
        """Number of input units (columns / input channels); 0 without nodes."""
        return self.shape[1] if self.has_nodes else 0

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "role": self.role, "shape": list(self.shape),
                "heads": self.heads, "has_bias": self.has_bias}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LayerInfo:
        return cls(name=data["name"], kind=data["kind"], role=data["role"], shape=tuple(data["shape"]),
                   heads=int(data.get("heads", 1)), has_bias=bool(data.get("has_bias", False)))


@dataclass(frozen=True)
class LayerTensors:
    """The current values of one layer, as framework arrays (torch, jax, numpy).

    Attributes:
        kernel: shape ``info.shape`` (PyTorch layout).
        bias: shape ``(info.nodes,)`` or ``None``.
    """

    kernel: Any
    bias: Any | None = None


def select(names: Iterable[str], include: Sequence[str] | None, exclude: Sequence[str] | None) -> list[str]:
    """Names matching any ``include`` glob (all when None) and no ``exclude`` glob.

    >>> select(["fc1", "fc2", "out"], include=["fc*"], exclude=["fc2"])
    ['fc1']
    """
    kept = []
    for name in names:
        if include is not None and not any(fnmatch.fnmatchcase(name, p) for p in include):
            continue
        if exclude is not None and any(fnmatch.fnmatchcase(name, p) for p in exclude):
            continue
        kept.append(name)
    return kept


def override_roles(layers: Sequence[LayerInfo], roles: Mapping[str, str] | None) -> list[LayerInfo]:
    """Apply user role overrides: ``{"glob": "role"}``, first matching glob wins."""
    if not roles:
        return list(layers)
    for role in roles.values():
        if role not in ROLES:
            raise ValueError(f"roles: {role!r} is not one of {ROLES}")
    out = []
    for layer in layers:
        for pattern, role in roles.items():
            if fnmatch.fnmatchcase(layer.name, pattern):
                layer = LayerInfo(layer.name, layer.kind, role, layer.shape, layer.heads, layer.has_bias)
                break
        out.append(layer)
    return out


def mark_output(layers: Sequence[LayerInfo]) -> list[LayerInfo]:
    """The network's output layer: the last ``linear`` layer becomes role ``output``.

    Only when that layer still has the default ``fc`` role (an attention
    block's MLP keeps ``mlp``). The one rule every integration and the
    analysis use, so a run's roles never depend on where it was logged.

    >>> out = mark_output([LayerInfo("fc1", "linear", "fc", (4, 2)), LayerInfo("fc2", "linear", "fc", (3, 4))])
    >>> [layer.role for layer in out]
    ['fc', 'output']
    """
    out = list(layers)
    linear = [i for i, layer in enumerate(out) if layer.kind == "linear"]
    if linear and out[linear[-1]].role == "fc":
        last = out[linear[-1]]
        out[linear[-1]] = LayerInfo(last.name, last.kind, "output", last.shape, last.heads, last.has_bias)
    return out


def finish_discovery(found: Sequence[tuple[LayerInfo, T]], include: Sequence[str] | None,
                     exclude: Sequence[str] | None, roles: Mapping[str, str] | None) -> list[tuple[LayerInfo, T]]:
    """Every integration's last discovery step, on ``(info, source)`` pairs in model order.

    Marks the output layer (:func:`mark_output`, before filtering, so leaving
    layers out never moves it), keeps the names ``include`` / ``exclude``
    select, then applies the ``roles`` overrides. Raises ``ValueError`` naming
    the layers when the filters leave none.
    """
    infos = mark_output([info for info, _ in found])
    names = set(select([info.name for info in infos], include, exclude))
    if not names:
        raise ValueError(
            f"include={include!r} / exclude={exclude!r} leave no layer to watch; "
            f"the layers are: {[info.name for info in infos]}"
        )
    kept = [(info, source) for info, (_, source) in zip(infos, found) if info.name in names]
    overridden = override_roles([info for info, _ in kept], roles)
    return [(info, source) for info, (_, source) in zip(overridden, kept)]
