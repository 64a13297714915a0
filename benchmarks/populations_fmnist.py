"""Populations of small fully connected networks on Fashion-MNIST, logged by weightwatch.

The seed paper's DNN (input-h-h-10, ReLU, Adam, batch 100, weights drawn from
a normal distribution, biases zero), trained many at once: the runs that share
a hidden size are stacked into one batched model (one ``bmm`` per layer), and
since Adam is elementwise and the loss is the sum of the runs' own losses,
each run trains exactly as it would alone, with its own initialisation and its
own data order from its seed. After each epoch (and at step 0, before
training) every run's weights are copied into its own ``nn.Sequential`` and
logged by ``weightwatch.integrations.torch.WeightWatch`` with its metrics
(``loss`` and ``accuracy``: running means over the epoch on the training
subset; ``val_loss`` and ``val_accuracy`` on the 10,000 test images).

Two populations:

- ``mixed``: hidden sizes 5..200 and init std 0.01..2 (log-uniform), 5 epochs;
- ``seeds``: ONE configuration, 784-20-20-10, init std 1.0, Adam 1e-3,
  5 epochs, that differs only by seed.

Both train on the same 10,000-image subset of the training set.

    python benchmarks/populations_fmnist.py seeds runs/fmnist-seeds --runs 200
    python benchmarks/populations_fmnist.py mixed runs/fmnist-mixed --runs 200
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: benchmarks.paper
from benchmarks.paper.data import FILES, FMNIST, read_idx  # noqa: E402
from weightwatch.integrations.torch import WeightWatch  # noqa: E402


@dataclass(frozen=True)
class Config:
    """One run: the hyperparameters and the seed (init and data order)."""

    hidden: int
    init_std: float
    seed: int
    lr: float = 1e-3
    epochs: int = 5
    batch: int = 100


def load_fmnist(root: Path = FMNIST, train_subset: int = 10_000, subset_seed: int = 0):
    """(x_train (n, 784) float32 in [0, 1], y_train (n,), x_test (10000, 784), y_test)."""
    xtr, ytr, xte, yte = (read_idx(root / name) for name in FILES)  # the paper reproduction's reader
    xtr, xte = xtr.reshape(-1, 784), xte.reshape(-1, 784)
    keep = np.random.default_rng(subset_seed).choice(len(xtr), size=train_subset, replace=False)
    def f(x):
        return torch.from_numpy(x.astype(np.float32) / 255.0)
    return f(xtr[keep]), torch.from_numpy(ytr[keep].astype(np.int64)), f(xte), torch.from_numpy(yte.astype(np.int64))


def mixed_configs(n: int, seed: int = 0) -> list[Config]:
    rng = np.random.default_rng(seed)
    hidden = (5, 10, 20, 50, 100, 200)
    return [Config(hidden=int(rng.choice(hidden)), init_std=float(round(math.exp(rng.uniform(math.log(0.01),
                                                                                             math.log(2.0))), 4)),
                   seed=1000 + i) for i in range(n)]


def seed_configs(n: int, first_seed: int = 0) -> list[Config]:
    return [Config(hidden=20, init_std=1.0, seed=first_seed + i) for i in range(n)]


def _module(hidden: int, n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out))


class Stack:
    """``len(configs)`` MLPs of one hidden size as batched tensors: weights (N, out, in), biases (N, out)."""

    def __init__(self, configs: Sequence[Config], n_in: int, n_out: int) -> None:
        h = configs[0].hidden
        sizes = [(h, n_in), (h, h), (n_out, h)]
        self.params: list[torch.Tensor] = []
        per_run = []
        for c in configs:
            g = torch.Generator().manual_seed(c.seed)
            per_run.append([torch.randn(size, generator=g) * c.init_std for size in sizes])
        for layer, (out, _) in enumerate(sizes):
            self.params.append(torch.stack([w[layer] for w in per_run]).requires_grad_())
            self.params.append(torch.zeros(len(configs), out, requires_grad=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, B, n_in), one batch per run -> logits (N, B, n_out)."""
        for i in range(0, len(self.params), 2):
            w, b = self.params[i], self.params[i + 1]
            x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
            if i + 2 < len(self.params):
                x = torch.relu(x)
        return x

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 2000) -> tuple[np.ndarray, np.ndarray]:
        """(loss (N,), accuracy (N,)) of every run on the same data x (n, n_in), y (n,)."""
        n_runs = self.params[0].shape[0]
        loss = torch.zeros(n_runs, dtype=torch.float64)
        correct = torch.zeros(n_runs, dtype=torch.float64)
        for s in range(0, len(x), chunk):
            xb, yb = x[s:s + chunk], y[s:s + chunk]
            logits = self.forward(xb.expand(n_runs, *xb.shape))
            ce = nn.functional.cross_entropy(logits.transpose(1, 2), yb.expand(n_runs, -1), reduction="none")
            loss += ce.double().sum(1)
            correct += (logits.argmax(-1) == yb).double().sum(1)
        return (loss / len(x)).numpy(), (correct / len(x)).numpy()

    @torch.no_grad()
    def copy_into(self, k: int, module: nn.Sequential) -> None:
        linears = [m for m in module if isinstance(m, nn.Linear)]
        for j, lin in enumerate(linears):
            lin.weight.copy_(self.params[2 * j][k])
            lin.bias.copy_(self.params[2 * j + 1][k])


def train_group(configs: Sequence[Config], data, out: Path, population: str) -> None:
    """Train runs sharing hidden size, epochs and batch size together; log each to out/<name>."""
    xtr, ytr, xte, yte = data
    c0 = configs[0]
    n, n_in, n_out = len(configs), xtr.shape[1], int(ytr.max()) + 1
    stack = Stack(configs, n_in, n_out)
    lrs = {c.lr for c in configs}
    opt = torch.optim.Adam([{"params": stack.params, "lr": lrs.pop()}]) if len(lrs) == 1 else None
    if opt is None:
        raise ValueError("runs trained together must share the learning rate")
    gens = [torch.Generator().manual_seed(10_000 + c.seed) for c in configs]
    modules = [_module(c.hidden, n_in, n_out) for c in configs]
    watches = [WeightWatch(m, out / f"{population}-h{c.hidden}-s{c.seed}",
                           hparams={**asdict(c), "population": population}) for m, c in zip(modules, configs)]

    def log(step: int, train: dict[str, np.ndarray]) -> None:
        val_loss, val_acc = stack.evaluate(xte, yte)
        for k, (m, ww) in enumerate(zip(modules, watches)):
            stack.copy_into(k, m)
            ww.log(step, **{name: float(v[k]) for name, v in train.items()},
                   val_loss=float(val_loss[k]), val_accuracy=float(val_acc[k]))

    log(0, {})
    steps = len(xtr) // c0.batch
    for epoch in range(1, c0.epochs + 1):
        order = torch.stack([torch.randperm(len(xtr), generator=g) for g in gens])  # (N, n)
        total = torch.zeros(n, dtype=torch.float64)
        correct = torch.zeros(n, dtype=torch.float64)
        for s in range(steps):
            idx = order[:, s * c0.batch:(s + 1) * c0.batch]
            logits = stack.forward(xtr[idx])
            ce = nn.functional.cross_entropy(logits.transpose(1, 2), ytr[idx], reduction="none").mean(1)
            opt.zero_grad(set_to_none=True)
            ce.sum().backward()
            opt.step()
            total += ce.detach().double()
            correct += (logits.detach().argmax(-1) == ytr[idx]).double().mean(1)
        # the training metrics are running means over the epoch, as most loops report them
        log(epoch, {"loss": (total / steps).numpy(), "accuracy": (correct / steps).numpy()})
    for ww in watches:
        ww.close()


def train_population(configs: Sequence[Config], out: Path, data=None, population: str = "pop",
                     verbose: bool = True) -> Path:
    """Train every config (grouped by hidden size, epochs, batch and lr) and log each run under ``out``."""
    data = data if data is not None else load_fmnist()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple, list[Config]] = {}
    for c in configs:
        groups.setdefault((c.hidden, c.epochs, c.batch, c.lr), []).append(c)
    # Saturated runs (large init std) drive Adam's second moments into subnormal floats, which
    # the CPU handles ~3x slower; flushing them to zero changes nothing measurable.
    torch.set_flush_denormal(True)
    t0 = time.perf_counter()
    for key, group in sorted(groups.items()):
        train_group(group, data, out, population)
        if verbose:
            print(f"  trained {len(group):4d} runs with hidden={key[0]:4d}  ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("population", choices=("mixed", "seeds"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="first seed (seeds) / sampling seed (mixed)")
    args = parser.parse_args(argv)
    configs = mixed_configs(args.runs, args.seed) if args.population == "mixed" else seed_configs(args.runs,
                                                                                                  args.seed)
    train_population(configs, args.out, population=args.population)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
