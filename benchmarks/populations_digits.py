"""The three digits (8x8) populations of issue 10, logged by weightwatch, for benchmarks/verdict.py and pruning.py.

Every run trains with Adam (batch 64) on 1347 of sklearn's 8x8 digits and is
validated on the other 450 (tests/populations.py's split); after every epoch
it logs ``loss``, ``accuracy`` (training set), ``val_loss`` and
``val_accuracy`` with its weights, and its hyperparameters.

- ``mixed``: MLP 64-h-h-10 (h in 8, 16, 32, 64) or CNN conv3x3(1 -> c) +
  linear (c in 2, 4, 8), init std log-uniform in 0.03..3 (one run in 10 all
  zeros: stays at chance), lr 3e-3, 5 epochs;
- ``seeds16``: ONE configuration, MLP 64-16-16-10, init std 0.5, lr 1e-3,
  7 epochs, differing only by seed;
- ``seeds12``: ONE configuration, MLP 64-12-12-10, init std 1.5, lr 1e-3,
  5 epochs, differing only by seed.

    python benchmarks/populations_digits.py mixed runs/digits-mixed --runs 100
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import populations  # noqa: E402  (the digits split and the two model shapes)

KINDS = ("mixed", "seeds16", "seeds12")


@dataclass(frozen=True)
class Config:
    family: str
    width: int  # hidden units (MLP) or channels (CNN)
    init: float | str
    seed: int
    lr: float
    epochs: int


def configs(kind: str, n: int, seed: int = 0) -> list[Config]:
    """The ``n`` runs of population ``kind`` (see the module doc); reproducible from ``seed``."""
    if kind == "seeds16":
        return [Config("mlp", 16, 0.5, seed + i, 1e-3, 7) for i in range(n)]
    if kind == "seeds12":
        return [Config("mlp", 12, 1.5, seed + i, 1e-3, 5) for i in range(n)]
    if kind != "mixed":
        raise ValueError(f"unknown population {kind!r}; one of {KINDS}")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        family = "mlp" if rng.random() < 0.6 else "cnn"
        width = int(rng.choice([8, 16, 32, 64] if family == "mlp" else [2, 4, 8]))
        init: float | str = "zeros" if i % 10 == 9 else float(round(math.exp(rng.uniform(math.log(0.03),
                                                                                          math.log(3.0))), 4))
        out.append(Config(family, width, init, seed + i, 3e-3, 5))
    return out


def train(cfg: Config, log_dir: Path) -> float:
    """Train and log one run; returns its final val_accuracy."""
    import torch
    from torch import nn

    from weightwatch.integrations.torch import WeightWatch

    torch.manual_seed(cfg.seed)
    xtr, ytr, xva, yva = populations._digits()
    model = populations.make_model(cfg.family, cfg.init, hidden=cfg.width, channels=cfg.width)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    hparams = {"family": cfg.family, "width": cfg.width, "init": str(cfg.init), "seed": cfg.seed, "lr": cfg.lr}
    with WeightWatch(model, log_dir, hparams=hparams) as ww:
        for epoch in range(cfg.epochs):
            loss = populations.train_epoch(model, opt, xtr, ytr, 64)
            with torch.no_grad():
                acc = float((model(xtr).argmax(1) == ytr).float().mean())
                out = model(xva)
                val_loss = float(nn.functional.cross_entropy(out, yva))
                val = float((out.argmax(1) == yva).float().mean())
            ww.log(epoch, loss=loss, accuracy=acc, val_loss=val_loss, val_accuracy=val)
    return val


def make(kind: str, root: Path, n: int, seed: int = 0) -> float:
    """Train population ``kind`` into ``root/run###`` (skips runs already complete); returns seconds spent.

    ``root/DONE`` holds "<kind> <runs> <seconds>" once every run is trained.
    """
    import numba
    import torch

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i, cfg in enumerate(configs(kind, n, seed)):
        run_dir = root / f"run{i:03d}"
        if (run_dir / "COMPLETE").exists():
            continue
        val = train(cfg, run_dir)
        (run_dir / "COMPLETE").write_text(f"{val}\n{asdict(cfg)}\n")
    seconds = time.perf_counter() - t0
    (root / "DONE").write_text(f"{kind} {n} {seconds:.0f}\n")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("out", type=Path)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    seconds = make(args.kind, args.out, args.runs, args.seed)
    print(f"{args.kind}: {args.runs} runs in {seconds:.0f} s into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
