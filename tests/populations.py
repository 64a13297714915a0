"""Small real populations for the analysis tests and the demo: tiny models on the 8x8 digits.

Each run trains an MLP (64-h-h-10, the seed paper's DNN shape) or a CNN (one
3x3 conv + a linear output, the paper's CNN shape) with its own seed and weight
initialisation, logged by ``weightwatch.integrations.torch.WeightWatch``. The
initialisations span good (normal, std 0.1), mediocre (std 1 to 3) and dead
(all zeros: the hidden units never learn, accuracy stays near chance) runs,
so every accuracy group appears.

    python tests/populations.py --out runs/digits --runs 20 --epochs 3

``make_population`` returns, per run, what the test compares the analysis
against: the final metrics as training computed them.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: (family, init) pairs cycled through; a run's seed picks its place in the cycle.
CONFIGS = (("mlp", 0.1), ("mlp", 1.0), ("cnn", 0.1), ("mlp", 3.0), ("cnn", 1.5), ("mlp", 0.3),
           ("mlp", "zeros"), ("cnn", 0.3), ("mlp", 0.03), ("cnn", "zeros"))


@dataclass
class Truth:
    """What training measured for one run (the analysis must find the same)."""

    family: str
    init: float | str
    seed: int
    val_accuracy: float
    accuracy: float
    loss: list[float]


@functools.lru_cache(maxsize=1)
def _digits(seed: int = 0):
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    xtr, xva, ytr, yva = train_test_split(x / 16.0, y, test_size=0.25, random_state=seed, stratify=y)
    return (torch.tensor(xtr, dtype=torch.float32), torch.tensor(ytr), torch.tensor(xva, dtype=torch.float32),
            torch.tensor(yva))


def make_model(family: str, init: float | str, hidden: int = 16, channels: int = 4):
    """The MLP 64-h-h-10 or the CNN conv3x3(1 -> C) + linear(C*6*6 -> 10); weights
    normal(0, init) or all zeros, biases zero."""
    import torch
    from torch import nn

    if family == "mlp":
        model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                              nn.Linear(hidden, 10))
    elif family == "cnn":
        model = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, channels, 3), nn.ReLU(), nn.Flatten(),
                              nn.Linear(channels * 6 * 6, 10))
    else:
        raise ValueError(f"unknown family {family!r}")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                if init == "zeros":
                    m.weight.zero_()
                else:
                    m.weight.normal_(0.0, float(init))
                m.bias.zero_()
    return model


def train_epoch(model, opt, x, y, batch: int) -> float:
    """One epoch of shuffled minibatches; the mean training loss. The loop users see in
    examples/torch_digits.py (its ``train_epoch``), shared so tests train exactly as the example."""
    import sys

    examples = str(Path(__file__).resolve().parents[1] / "examples")
    if examples not in sys.path:
        sys.path.insert(0, examples)
    from torch_digits import train_epoch as example_epoch

    return example_epoch(model, opt, x, y, batch)


def train_run(log_dir: Path, family: str, init: float | str, seed: int, epochs: int = 3, lr: float = 1e-2,
              batch: int = 64) -> Truth:
    """Train one run with Adam, logging loss, accuracy and val_accuracy after every epoch."""
    import torch

    from weightwatch.integrations.torch import WeightWatch

    torch.manual_seed(seed)
    xtr, ytr, xva, yva = _digits()
    model = make_model(family, init)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    hparams = {"family": family, "init": str(init), "seed": seed, "lr": lr}
    with WeightWatch(model, log_dir, hparams=hparams) as ww:
        for epoch in range(epochs):
            losses.append(train_epoch(model, opt, xtr, ytr, batch))
            with torch.no_grad():
                acc = float((model(xtr).argmax(1) == ytr).float().mean())
                val = float((model(xva).argmax(1) == yva).float().mean())
            ww.log(epoch, loss=losses[-1], accuracy=acc, val_accuracy=val)
    return Truth(family, init, seed, val, acc, losses)


def train_watched(model, log_dir: Path, epochs: int, after_epoch=None, curve: str | None = "val_accuracy",
                  **watch_kwargs):
    """Adam (lr 1e-2) on the digits under ``WeightWatch(model, log_dir, **watch_kwargs)``,
    logging the validation accuracy each epoch as ``curve`` (None: the last batch's loss only);
    ``after_epoch(ww, epoch, acc)`` returning True ends it.

    Returns (ww, the last val_accuracy, epochs trained).
    """
    import torch

    from weightwatch.integrations.torch import WeightWatch

    xtr, ytr, xva, yva = _digits()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with WeightWatch(model, log_dir, **watch_kwargs) as ww:
        for epoch in range(epochs):
            for i in range(0, len(xtr), 64):
                loss = torch.nn.functional.cross_entropy(model(xtr[i:i + 64]), ytr[i:i + 64])
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                acc = float((model(xva).argmax(1) == yva).float().mean())
            ww.log(epoch, **({curve: acc} if curve else {"loss": float(loss)}))
            if after_epoch is not None and after_epoch(ww, epoch, acc):
                return ww, acc, epoch + 1
    return ww, acc, epochs


def make_population(root: str | Path, runs: int = 20, epochs: int = 3, seed: int = 0) -> dict[str, Truth]:
    """Train ``runs`` runs into ``root/<family>/<name>``; returns run name -> :class:`Truth`.

    Run names are the directories relative to ``root`` (as the loader names them).
    Also writes ``root/truth.json``.
    """
    import numba
    import torch

    # Tiny layers: one thread each for torch and weightwatch's kernels; spinning
    # thread pools only slow them down on a shared 2-core machine.
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    root = Path(root)
    truth = {}
    for i in range(runs):
        family, init = CONFIGS[i % len(CONFIGS)]
        s = seed + i
        name = f"{family}/init{init}_seed{s}"
        truth[name] = train_run(root / name, family, init, s, epochs)
    (root / "truth.json").write_text(json.dumps({k: asdict(v) for k, v in truth.items()}, indent=1))
    return truth


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a small population of digits runs.")
    parser.add_argument("--out", type=Path, default=Path("runs/digits"))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    truth = make_population(args.out, args.runs, args.epochs)
    accs = np.array([t.val_accuracy for t in truth.values()])
    print(f"{len(truth)} runs in {time.perf_counter() - t0:.1f} s; val_accuracy {accs.min():.2f} .. {accs.max():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())


_made: dict[tuple[int, int], tuple[Path, dict[str, Truth]]] = {}


def shared_population(tmp_path_factory, runs: int = 20, epochs: int = 3) -> tuple[Path, dict[str, Truth]]:
    """One population per test session (for session-scoped fixtures in several test modules).

    Tests must not change it: copy it first (``shutil.copytree``) to truncate or grow files.
    """
    key = (runs, epochs)
    if key not in _made:
        root = tmp_path_factory.mktemp(f"population{runs}x{epochs}")
        _made[key] = (root, make_population(root, runs, epochs))
    return _made[key]
