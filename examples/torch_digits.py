"""A plain PyTorch training loop on scikit-learn's 8x8 digits, watched by weightwatch.

    python examples/torch_digits.py --runs 3 --epochs 10 --log-dir runs/torch_digits
    tensorboard --logdir runs/torch_digits

The one weightwatch line is ``ww.log(epoch, ...)`` (plus creating and closing ``ww``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from weightwatch.integrations.torch import WeightWatch


def digits(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Train/validation split of the digits: x (n, 64) scaled to [0, 1], y (n,)."""
    x, y = load_digits(return_X_y=True)
    xtr, xva, ytr, yva = train_test_split(x / 16.0, y, test_size=0.25, random_state=seed, stratify=y)
    return (torch.tensor(xtr, dtype=torch.float32), torch.tensor(ytr), torch.tensor(xva, dtype=torch.float32),
            torch.tensor(yva))


def make_model(hidden: int, init_std: float) -> nn.Module:
    """The seed paper's DNN shape: input-h-h-10 with ReLU, normal initialisation."""
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=init_std)
            nn.init.zeros_(m.bias)
    return model


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                batch: int) -> float:
    """One epoch of minibatches in a random order: x (n, ...), y (n,); returns the mean training loss.
    Leaves the model in eval mode, ready to be evaluated."""
    model.train()
    perm = torch.randperm(len(x))
    total = 0.0
    for i in range(0, len(x), batch):
        idx = perm[i:i + batch]
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    model.eval()
    return total / len(x)


def train_run(log_dir: Path, seed: int, epochs: int, hidden: int = 32, init_std: float = 0.1,
              lr: float = 1e-3, batch: int = 100) -> float:
    """Train one run, logging with weightwatch; returns the final validation accuracy."""
    torch.manual_seed(seed)
    xtr, ytr, xva, yva = digits()
    model = make_model(hidden, init_std)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hparams = {"seed": seed, "hidden": hidden, "init_std": init_std, "lr": lr}
    with WeightWatch(model, log_dir, hparams=hparams) as ww:
        for epoch in range(epochs):
            loss = train_epoch(model, opt, xtr, ytr, batch)
            with torch.no_grad():
                train_acc = (model(xtr).argmax(1) == ytr).float().mean().item()
                val_acc = (model(xva).argmax(1) == yva).float().mean().item()
            ww.log(epoch, loss=loss, accuracy=train_acc, val_accuracy=val_acc)
    return val_acc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-dir", type=Path, default=Path("runs/torch_digits"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=32)
    args = parser.parse_args(argv)
    for seed in range(args.runs):
        acc = train_run(args.log_dir / f"seed{seed}", seed, args.epochs, hidden=args.hidden)
        print(f"run seed{seed}: val_accuracy {acc:.3f}")
    print(f"watch it: tensorboard --logdir {args.log_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
