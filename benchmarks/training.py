"""Training overhead: wall time of real training epochs with and without the watcher.

Models, on scikit-learn's digits (1797 images, no download): the seed paper's
DNN (images upsampled to 28x28, 784-100-100-10), a small CNN (8x8 input), and
torchvision's resnet18 (images upsampled to 32x32), SGD with batch 8 or 16;
and the seed paper's own settings (``paper-dnn``: 784-100-100-10, ``paper-cnn``:
one 3x3 conv with 16 channels, no padding, ReLU, FC to 10; Adam 1e-3, batch 100)
on Fashion-MNIST's 60,000 training images (benchmarks/paper/data.py; the digits
stand in, upsampled, when it is not installed). For each model and each
mode (no watcher, weightwatch logging once per epoch, every 100 steps) it
trains ``--epochs`` epochs from the same seed, ``--repeats`` times, the modes
interleaved. Overhead = median epoch time with the watcher / without - 1;
the spread is the range over repeats of each repeat's own overhead.

    python benchmarks/training.py [--models dnn cnn resnet18 paper-dnn paper-cnn] [--repeats 3] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from sklearn.datasets import load_digits
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _results import update_section  # noqa: E402

from weightwatch.integrations.torch import WeightWatch  # noqa: E402

MODES = ("no watcher", "every epoch", "every 100 steps")


def data(size: int | None, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    images = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    if size is not None:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images.repeat(1, channels, 1, 1), torch.tensor(y)


#: The paper's families as benchmarks/paper builds them: (family, width).
PAPER = {"paper-dnn": ("dnn", 100), "paper-cnn": ("cnn", 16)}


def make(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor, int]:
    """(model, images, labels, batch size)."""
    if name in PAPER:
        from paper.data import load_images
        from paper.models import build_module

        images = load_images(warn=lambda line: print(line, file=sys.stderr))
        return build_module(*PAPER[name]), images.x_train, images.y_train, 100
    if name == "dnn":
        x, y = data(28, 1)
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                              nn.Linear(100, 10))
        return model, x, y, 8
    if name == "cnn":
        x, y = data(None, 1)
        model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10))
        return model, x, y, 8
    x, y = data(32, 3)
    return torchvision.models.resnet18(weights=None, num_classes=10), x, y, 16


def train(name: str, mode: str, epochs: int, log_dir: Path) -> tuple[list[float], float]:
    """(wall time of each epoch, share of the training time spent inside ww.log)."""
    torch.manual_seed(0)
    model, x, y, batch = make(name)
    opt = (torch.optim.Adam(model.parameters(), lr=1e-3) if name in PAPER
           else torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    schedule = 100 if mode == "every 100 steps" else 1
    ww = WeightWatch(model, log_dir, schedule=schedule) if mode != "no watcher" else None
    step = 0
    times = []
    in_log = 0.0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        order = torch.randperm(len(x))
        model.train()
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if ww is not None and mode == "every 100 steps":
                t1 = time.perf_counter()
                ww.log(step, loss=loss.item())
                in_log += time.perf_counter() - t1
        if ww is not None and mode == "every epoch":
            t1 = time.perf_counter()
            ww.log(epoch, loss=loss.item())
            in_log += time.perf_counter() - t1
        times.append(time.perf_counter() - t0)
    if ww is not None:
        ww.close()
    return times, in_log / sum(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["dnn", "cnn", "resnet18", *PAPER],
                        choices=["dnn", "cnn", "resnet18", *PAPER])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            epoch_times: dict[str, list[list[float]]] = {m: [] for m in MODES}
            shares: dict[str, list[float]] = {m: [] for m in MODES}
            for r in range(args.repeats):
                for mode in MODES:
                    times, share = train(name, mode, args.epochs, Path(tmp) / f"{name}-{r}-{mode}")
                    epoch_times[mode].append(times)
                    shares[mode].append(share)
            base = [statistics.median(t) for t in epoch_times["no watcher"]]
            for mode in MODES[1:]:
                per = [statistics.median(t) for t in epoch_times[mode]]
                overhead = statistics.median(per) / statistics.median(base) - 1
                each = [p / b - 1 for p, b in zip(per, base)]
                row = (f"| {name} | {mode} | {statistics.median(base):.2f} s | {statistics.median(per):.2f} s "
                       f"| {overhead * 100:+.1f}% | {min(each) * 100:+.1f}% .. {max(each) * 100:+.1f}% "
                       f"| **{statistics.median(shares[mode]) * 100:.2f}%** "
                       f"({min(shares[mode]) * 100:.2f} .. {max(shares[mode]) * 100:.2f}%) |")
                print(row, flush=True)
                rows.append(row)
    body = "\n".join([
        f"Command: `python benchmarks/training.py {' '.join(argv if argv is not None else sys.argv[1:])}` "
        f"({os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads), "
        "scikit-learn digits with SGD (dnn, cnn, resnet18), Fashion-MNIST's 60,000 training images with the "
        "paper's Adam 1e-3 and batch 100 (paper-dnn, paper-cnn). Epoch wall time (median over epochs, then over repeats); the modes "
        "interleaved. The spread is the range over repeats of each repeat's own overhead. The machine "
        f"is shared with other jobs (1-minute load average {os.getloadavg()[0]:.1f} at the end): epoch "
        "times vary by more than the overhead being measured for the small models, so the last column, "
        "the share of the training thread's time spent inside the log calls (what the watcher makes "
        "training wait for; the background writer's own CPU time is not in it), is the figure to read.",
        "",
        "| model | weightwatch logs | epoch without | epoch with | wall-time overhead | its spread over repeats "
        "| time inside ww.log / training time (median, range) |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ])
    if not args.no_write:
        update_section("Training overhead (benchmarks/training.py)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(np.random.seed(0) or main())
