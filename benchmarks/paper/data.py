"""The images: Fashion-MNIST from the Debian package, or scikit-learn's digits when it is absent.

Fashion-MNIST is read with numpy from the idx ``.gz`` files that the Debian
package ``dataset-fashion-mnist`` installs under /usr/share/datasets/fashion-mnist
(or the directory in ``$FASHION_MNIST``). Without it, the 1797 8x8 digits that
ship with scikit-learn stand in, upsampled (bilinear) to 28x28 so that every
model family keeps its paper shape; the results then say so.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FMNIST = Path(os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")
HOW_TO_GET = ("Fashion-MNIST not found in {root} (files {files}). Install it with "
              "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or point $FASHION_MNIST at a "
              "directory holding the four idx .gz files. Using scikit-learn's digits (8x8, upsampled to 28x28) "
              "instead.")


@dataclass
class Images:
    """Training and held-out images: x (n, 1, 28, 28) float32 in [0, 1], y (n,) int64."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def subset(self, n_train: int | None, n_test: int | None, seed: int = 0) -> Images:
        """The first ``n_train`` images of a fixed random order (all when None or larger); same for test."""
        def pick(x: torch.Tensor, y: torch.Tensor, n: int | None, s: int) -> tuple[torch.Tensor, torch.Tensor]:
            if n is None or n >= len(x):
                return x, y
            keep = torch.from_numpy(np.random.default_rng(s).permutation(len(x))[:n])
            return x[keep], y[keep]
        xtr, ytr = pick(self.x_train, self.y_train, n_train, seed)
        xte, yte = pick(self.x_test, self.y_test, n_test, seed + 1)
        return Images(self.name, xtr, ytr, xte, yte)


def read_idx(path: Path) -> np.ndarray:
    """An idx file (big-endian header: magic, dims, sizes) as a uint8 array."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_mnist_available(root: Path = FMNIST) -> bool:
    return all((root / f).is_file() for f in FILES)


def load_fashion_mnist(root: Path = FMNIST) -> Images:
    xtr, ytr, xte, yte = (read_idx(root / f) for f in FILES)

    def images(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(y.astype(np.int64))

    return Images("Fashion-MNIST", images(xtr), labels(ytr), images(xte), labels(yte))


def load_digits_28(test_fraction: float = 1 / 6, seed: int = 0) -> Images:
    """scikit-learn's digits, 8x8 in [0, 16] -> 28x28 in [0, 1]; a fixed random split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.nn.functional.interpolate(torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1),
                                        size=(28, 28), mode="bilinear", align_corners=False)
    y = torch.from_numpy(d.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
    n_test = int(round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    return Images("scikit-learn digits (8x8 upsampled to 28x28)", x[train], y[train], x[test], y[test])


def load_images(root: Path = FMNIST, warn=print) -> Images:
    """Fashion-MNIST when installed, else the digits with a message saying how to get it."""
    if fashion_mnist_available(root):
        return load_fashion_mnist(root)
    warn(HOW_TO_GET.format(root=root, files=", ".join(FILES)))
    return load_digits_28()
