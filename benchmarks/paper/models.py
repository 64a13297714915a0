"""The seed paper's three model families (Table 1), as one ``nn.Module`` per run and as batched stacks.

A *stack* holds the parameters of N runs of one architecture as tensors with a
leading run axis (N, ...), keyed by the per-run module's own parameter names,
so run k's weights copy into its module by name (``copy_into``). Its forward
takes one batch per run, x (N, B, 1, 28, 28), and returns logits (N, B, 10).
Since Adam is elementwise and the loss is the sum of the runs' own mean
losses, every run trains exactly as it would alone.

Families (width = the one size varied):

- ``dnn``: 784-h-h-10, ReLU (width h);
- ``cnn``: Conv2d(1, C, 3), no padding, ReLU, flatten (C*26*26, torch's C,H,W
  order), Linear to 10 (width C);
- ``vit``: the 28x28 image flattened to ONE token of 784 values (d_model =
  784 fits no other way without adding a projection the paper does not
  list; no positional encoding, no class token), one post-norm
  ``nn.TransformerEncoderLayer(784, nhead, dim_feedforward=2048, ReLU,
  dropout 0)``, then Linear(784, 10) (width nhead; it must divide 784:
  2, 4, 7, 8, 14, 16). With one token the attention weights are
  softmax over one key = 1, so attention is out_proj(v_proj(x)) and the
  query and key projections get exactly zero gradient: they keep their
  initial values (the stack skips computing them, which changes nothing).

Initialisation (the paper's "normal"): every kernel N(0, init_std^2), every
bias 0, LayerNorm scale 1 and shift 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

FAMILIES = ("dnn", "cnn", "vit")
D_MODEL = 784
FEEDFORWARD = 2048
VIT_HEADS = (2, 4, 7, 8, 14, 16)  # the nhead values from 2 to 16 that divide 784


class ViT(nn.Module):
    """x (B, 1, 28, 28) -> one token (B, 1, 784) -> encoder layer -> Linear(784, 10)."""

    def __init__(self, nhead: int, n_out: int = 10) -> None:
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(D_MODEL, nhead, dim_feedforward=FEEDFORWARD, dropout=0.0,
                                                  batch_first=True)
        self.fc = nn.Linear(D_MODEL, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.encoder(x.reshape(len(x), 1, D_MODEL))[:, 0])


def build_module(family: str, width: int, n_out: int = 10) -> nn.Module:
    """One run's network (weights as PyTorch initialises them; the stack overwrites them)."""
    if family == "dnn":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                             nn.Linear(width, n_out))
    if family == "cnn":
        return nn.Sequential(nn.Conv2d(1, width, 3), nn.ReLU(), nn.Flatten(), nn.Linear(width * 26 * 26, n_out))
    if family == "vit":
        if D_MODEL % width:
            raise ValueError(f"nhead {width} does not divide d_model {D_MODEL}; use one of {VIT_HEADS}")
        return ViT(width, n_out)
    raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")


def _init_value(name: str, shape: torch.Size, std: float, gen: torch.Generator) -> torch.Tensor:
    if ".norm" in name or name.startswith("norm"):
        return torch.ones(shape) if name.endswith("weight") else torch.zeros(shape)
    if name.endswith("bias"):
        return torch.zeros(shape)
    return torch.randn(shape, generator=gen) * std


class Stack:
    """N runs of one (family, width) as batched parameters ``params[name]`` of shape (N, *per-run shape)."""

    def __init__(self, family: str, width: int, init_stds: Sequence[float], seeds: Sequence[int],
                 n_out: int = 10) -> None:
        self.family, self.width, self.n = family, width, len(seeds)
        template = build_module(family, width, n_out)
        self.params: dict[str, torch.Tensor] = {}
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        for name, p in template.named_parameters():
            self.params[name] = torch.stack([_init_value(name, p.shape, std, g)
                                             for std, g in zip(init_stds, gens)]).requires_grad_()

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, B, 1, 28, 28), one batch per run -> logits (N, B, n_out)."""
        return {"dnn": self._dnn, "cnn": self._cnn, "vit": self._vit}[self.family](x)

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """x (N, B, in) -> (N, B, out) with run k's weight (out, in) and bias (out,)."""
        return torch.baddbmm(self.params[f"{name}.bias"].unsqueeze(1), x, self.params[f"{name}.weight"].transpose(1, 2))

    def _dnn(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(self.n, x.shape[1], -1)
        h = torch.relu(self._linear(h, "1"))
        h = torch.relu(self._linear(h, "3"))
        return self._linear(h, "5")

    def _cnn(self, x: torch.Tensor) -> torch.Tensor:
        # the conv as one bmm over 3x3 patches: 2-3x faster on CPUs than a grouped conv's backward
        n, b, c = self.n, x.shape[1], self.width
        patches = F.unfold(x.reshape(n * b, 1, 28, 28), 3)  # (N*B, 9, 676)
        patches = patches.reshape(n, b, 9, 676).transpose(2, 3).reshape(n, b * 676, 9)
        kernels = self.params["0.weight"].reshape(n, c, 9).transpose(1, 2)  # (N, 9, C)
        h = torch.relu(torch.baddbmm(self.params["0.bias"].unsqueeze(1), patches, kernels))  # (N, B*676, C)
        h = h.reshape(n, b, 676 * c)  # position-major (H, W, C) ...
        # ... so the FC kernel (N, 10, C*676), in torch's C,H,W flatten order, is permuted to match
        fc = self.params["3.weight"].reshape(n, -1, c, 676).transpose(2, 3).reshape(n, -1, 676 * c)
        return torch.baddbmm(self.params["3.bias"].unsqueeze(1), h, fc.transpose(1, 2))

    def _layer_norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        y = F.layer_norm(x, (x.shape[-1],), eps=1e-5)
        return y * self.params[f"{name}.weight"].unsqueeze(1) + self.params[f"{name}.bias"].unsqueeze(1)

    def _vit(self, x: torch.Tensor) -> torch.Tensor:
        p, e = self.params, "encoder."
        h = x.reshape(self.n, x.shape[1], D_MODEL)
        # one token: attention = out_proj(v_proj(x)); q and k rows of in_proj get zero gradient
        w_v = p[e + "self_attn.in_proj_weight"][:, 2 * D_MODEL:]
        b_v = p[e + "self_attn.in_proj_bias"][:, 2 * D_MODEL:]
        v = torch.baddbmm(b_v.unsqueeze(1), h, w_v.transpose(1, 2))
        h = self._layer_norm(h + self._linear(v, e + "self_attn.out_proj"), e + "norm1")
        ff = self._linear(torch.relu(self._linear(h, e + "linear1")), e + "linear2")
        h = self._layer_norm(h + ff, e + "norm2")
        return self._linear(h, "fc")

    @torch.no_grad()
    def copy_into(self, k: int, module: nn.Module) -> nn.Module:
        """Run k's current weights into ``module`` (built by :func:`build_module` with the same width)."""
        for name, p in module.named_parameters():
            p.copy_(self.params[name][k])
        return module

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss (N,), accuracy (N,)) of every run on the same images x (n, 1, 28, 28), labels y (n,)."""
        loss = torch.zeros(self.n, dtype=torch.float64)
        correct = torch.zeros(self.n, dtype=torch.float64)
        for s in range(0, len(x), chunk):
            xb, yb = x[s:s + chunk], y[s:s + chunk]
            logits = self.forward(xb.expand(self.n, *xb.shape))
            labels = yb.expand(self.n, -1)
            loss += F.cross_entropy(logits.transpose(1, 2), labels, reduction="none").double().sum(1)
            correct += (logits.argmax(-1) == labels).double().sum(1)
        return loss / len(x), correct / len(x)
