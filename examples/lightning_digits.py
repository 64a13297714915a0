"""PyTorch Lightning ``Trainer.fit`` on scikit-learn's 8x8 digits, watched by weightwatch's callback.

    python examples/lightning_digits.py --epochs 10 --log-dir runs/lightning_digits
    python examples/lightning_digits.py --devices 2      # DDP on the CPU: only rank 0 writes
    tensorboard --logdir runs/lightning_digits

The one weightwatch line is ``callbacks=[WeightWatchCallback()]``: it writes into
the TensorBoardLogger's directory, next to Lightning's own curves.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import lightning.pytorch as pl
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from weightwatch.integrations.lightning import WeightWatchCallback


class DigitsCNN(pl.LightningModule):
    """Conv(3x3) -> Flatten -> Linear(hidden) -> Linear(10) on (n, 1, 8, 8) images."""

    def __init__(self, filters: int = 8, hidden: int = 32, lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.conv = nn.Conv2d(1, filters, 3)
        self.fc = nn.Linear(filters * 6 * 6, hidden)
        self.out = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).flatten(1)
        return self.out(torch.relu(self.fc(h)))

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], prefix: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        self.log(f"{prefix}loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        self.log(f"{prefix}accuracy", acc, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val_")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def loaders(batch: int = 64, seed: int = 0) -> tuple[DataLoader, DataLoader]:
    """Train/validation loaders of (image (1, 8, 8) in [0, 1], label) pairs."""
    x, y = load_digits(return_X_y=True)
    xtr, xva, ytr, yva = train_test_split(x / 16.0, y, test_size=0.25, random_state=seed, stratify=y)

    def dataset(xs, ys) -> TensorDataset:
        return TensorDataset(torch.tensor(xs, dtype=torch.float32).reshape(-1, 1, 8, 8), torch.tensor(ys))

    return DataLoader(dataset(xtr, ytr), batch_size=batch, shuffle=True), DataLoader(dataset(xva, yva), batch_size=256)


def train(log_dir: Path, epochs: int, devices: int = 1, seed: int = 0) -> pl.Trainer:
    pl.seed_everything(seed, verbose=False)
    train_loader, val_loader = loaders(seed=seed)
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
        logger=pl.loggers.TensorBoardLogger(log_dir, name="digits_cnn"), callbacks=[WeightWatchCallback()],
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, log_every_n_steps=5,
    )
    trainer.fit(DigitsCNN(), train_loader, val_loader)
    return trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-dir", type=Path, default=Path("runs/lightning_digits"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--devices", type=int, default=1, help="CPU processes; more than 1 trains with DDP")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    trainer = train(args.log_dir, args.epochs, devices=args.devices, seed=args.seed)
    metrics = {k: round(float(v), 3) for k, v in trainer.callback_metrics.items()}
    print(f"rank {trainer.global_rank} of {trainer.world_size} (pid {os.getpid()}): steps {trainer.global_step}, "
          f"{metrics}")
    if trainer.is_global_zero:
        print(f"watch it: tensorboard --logdir {args.log_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
