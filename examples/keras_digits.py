"""Keras 3 ``model.fit`` on scikit-learn's 8x8 digits, watched by weightwatch's callback.

    python examples/keras_digits.py --epochs 10 --log-dir runs/keras_digits
    tensorboard --logdir runs/keras_digits

The one weightwatch line is ``callbacks=[WeightWatchCallback(...)]``. It runs on
any Keras backend (``KERAS_BACKEND=torch``, ``jax``, ...); torch when unset.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from weightwatch.integrations.keras import WeightWatchCallback  # noqa: E402


def digit_images(seed: int = 0) -> tuple[np.ndarray, ...]:
    """Train/validation split: images (n, 8, 8, 1) float32 in [0, 1], labels (n,) int."""
    images, labels = load_digits(return_X_y=True)
    images = (images / 16.0).astype("float32").reshape(-1, 8, 8, 1)
    return tuple(train_test_split(images, labels, test_size=0.25, random_state=seed, stratify=labels))


def make_model(filters: int = 8, hidden: int = 32) -> keras.Model:
    """Conv(3x3) -> Flatten -> Dense(hidden) -> Dense(10), the seed paper's small CNN plus a hidden layer."""
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(filters, 3, activation="relu", name="conv"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(hidden, activation="relu", name="fc"),
        keras.layers.Dense(10, name="out"),
    ], name="digits_cnn")


def train(log_dir: Path, epochs: int, seed: int = 0, lr: float = 1e-3, batch: int = 64) -> dict[str, list[float]]:
    """Train one run with the callback; returns Keras' history (per-epoch logs)."""
    keras.utils.set_random_seed(seed)
    xtr, xva, ytr, yva = digit_images(seed)
    model = make_model()
    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    watch = WeightWatchCallback(log_dir, hparams={"seed": seed, "lr": lr, "batch": batch})
    history = model.fit(xtr, ytr, validation_data=(xva, yva), epochs=epochs, batch_size=batch,
                        callbacks=[watch], verbose=0)
    return history.history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-dir", type=Path, default=Path("runs/keras_digits"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    history = train(args.log_dir, args.epochs, seed=args.seed)
    print(f"backend {keras.backend.backend()}: val_accuracy {history['val_accuracy'][-1]:.3f}")
    print(f"watch it: tensorboard --logdir {args.log_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
