"""Train many runs of one architecture at once and log each with weightwatch's PyTorch callback.

Runs sharing (family, width) are stacked (:class:`~benchmarks.paper.models.Stack`)
in chunks that fit in memory; each run keeps its own initialisation (from its
seed) and its own data order (a generator seeded from its seed). After every
epoch each run's weights are copied into its own ``nn.Module`` and logged by
``weightwatch.integrations.torch.WeightWatch`` at step = epoch index (0 after
the first epoch, as the Keras callback counts), with:

- ``loss``, ``accuracy``: running means over the epoch's training batches
  (what a training loop prints, and what the paper's numbers look like);
- ``val_loss``, ``val_accuracy``: on the held-out test images.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.nn import functional as F

from weightwatch.integrations.torch import WeightWatch

from .data import Images
from .models import Stack, build_module
from .populations import Config

#: floats held per run (parameters x 4 for weight, grad and Adam's two moments, plus activations) per chunk
CHUNK_FLOATS = 150_000_000


def run_dir(out: Path, c: Config) -> Path:
    return out / c.family / c.population / c.name


def _floats_per_run(c: Config, batch: int) -> int:
    params = sum(p.numel() for p in build_module(c.family, c.width).parameters())
    acts = {"dnn": 4 * c.width, "cnn": 3 * c.width * 676, "vit": 12 * 784 + 3 * 2048}[c.family] * batch
    return 4 * params + acts


def chunks(configs: Sequence[Config]) -> list[list[Config]]:
    """Group by (family, width, lr, batch), then cut each group into chunks that fit CHUNK_FLOATS."""
    groups: dict[tuple, list[Config]] = {}
    for c in configs:
        groups.setdefault((c.family, c.width, c.lr, c.batch), []).append(c)
    out = []
    for _, group in sorted(groups.items()):
        size = max(1, CHUNK_FLOATS // _floats_per_run(group[0], group[0].batch))
        out += [group[i:i + size] for i in range(0, len(group), size)]
    return out


def train_chunk(configs: Sequence[Config], data: Images, out: Path, epochs: int) -> None:
    """Train runs of one architecture together for ``epochs``; log each under ``run_dir(out, c)``."""
    c0 = configs[0]
    n, n_out = len(configs), int(data.y_train.max()) + 1
    stack = Stack(c0.family, c0.width, [c.init_std for c in configs], [c.seed for c in configs], n_out)
    opt = torch.optim.Adam(stack.parameters(), lr=c0.lr)
    gens = [torch.Generator().manual_seed(10_000 + c.seed) for c in configs]
    modules = [build_module(c.family, c.width, n_out) for c in configs]
    # the modules never run forward themselves (the stack computes): trace their data flow on one image
    watches = [WeightWatch(m, run_dir(out, c), hparams=c.hparams(epochs), example_input=data.x_train[:1])
               for m, c in zip(modules, configs)]
    steps = len(data.x_train) // c0.batch
    for epoch in range(epochs):
        order = torch.stack([torch.randperm(len(data.x_train), generator=g) for g in gens])  # (N, n)
        total = torch.zeros(n, dtype=torch.float64)
        correct = torch.zeros(n, dtype=torch.float64)
        for s in range(steps):
            idx = order[:, s * c0.batch:(s + 1) * c0.batch]  # (N, B): each run its own batch
            logits = stack.forward(data.x_train[idx])
            labels = data.y_train[idx]
            ce = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none").mean(1)  # (N,)
            opt.zero_grad(set_to_none=True)
            ce.sum().backward()
            opt.step()
            total += ce.detach().double()
            correct += (logits.detach().argmax(-1) == labels).double().mean(1)
        val_loss, val_acc = stack.evaluate(data.x_test, data.y_test)
        for k, (m, ww) in enumerate(zip(modules, watches)):
            stack.copy_into(k, m)
            ww.log(epoch, loss=float(total[k] / steps), accuracy=float(correct[k] / steps),
                   val_loss=float(val_loss[k]), val_accuracy=float(val_acc[k]))
    for ww in watches:
        ww.close()


def train_torch(configs: Sequence[Config], data: Images, out: Path, epochs: int,
                say: Callable[[str], None] = print) -> float:
    """Train every config (PyTorch) in stacked chunks; returns the seconds spent."""
    torch.set_num_threads(os.cpu_count() or 1)
    # saturated runs (large init std) push Adam's moments into subnormal floats, ~3x slower on CPUs
    torch.set_flush_denormal(True)
    t0 = time.perf_counter()
    for chunk in chunks(configs):
        train_chunk(chunk, data, out, epochs)
        c = chunk[0]
        say(f"  {c.family}: trained {len(chunk):4d} runs with width {c.width:4d} "
            f"({time.perf_counter() - t0:.0f} s)")
    return time.perf_counter() - t0
