"""Which runs each scale trains: one :class:`Config` per run, and the scales themselves.

Each family has two populations:

- ``mixed``: the width drawn from the family's settings and the init std
  log-uniform in [0.01, 2] (a wide spread of accuracies around std 1);
- ``seeds``: ONE configuration per family (DNN h=20, CNN C=10, ViT nhead=4,
  init std 1.0) that differs only by seed.

A share of the DNN mixed population (``keras_share``) is trained and logged
with Keras (``KERAS_BACKEND=torch``) instead of PyTorch, so the analysis
reads both frameworks' runs in one population.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .models import VIT_HEADS

WIDTHS = {"dnn": (5, 10, 20, 50, 100, 200), "cnn": (5, 10, 20, 50, 100, 200), "vit": VIT_HEADS}
SEED_CONFIG = {"dnn": 20, "cnn": 10, "vit": 4}  # the width of the seed-only population
SEED_INIT_STD = 1.0
STD_RANGE = (0.01, 2.0)


@dataclass(frozen=True)
class Config:
    """One run: its family, width (h, C or nhead), init std, seed, population and framework."""

    family: str
    width: int
    init_std: float
    seed: int
    population: str
    framework: str = "torch"
    lr: float = 1e-3
    batch: int = 100

    @property
    def name(self) -> str:
        tag = "" if self.framework == "torch" else f"-{self.framework}"
        return f"{self.family}-w{self.width}-std{self.init_std:g}-s{self.seed}{tag}"

    def hparams(self, epochs: int) -> dict:
        return {**asdict(self), "epochs": epochs}


@dataclass(frozen=True)
class Scale:
    """How much to train. ``runs``: family -> (mixed runs, seed-only runs)."""

    name: str
    runs: dict[str, tuple[int, int]]
    epochs: dict[str, int]
    train_images: dict[str, int | None]  # None: all 60,000
    test_images: dict[str, int | None]  # None: all 10,000
    keras_share: int  # DNN mixed runs trained with Keras
    widths: dict[str, tuple[int, ...]] = field(default_factory=lambda: dict(WIDTHS))
    note: str = ""


SCALES = {
    "smoke": Scale("smoke", runs={"dnn": (8, 6), "cnn": (6, 4), "vit": (3, 3)},
                   epochs={"dnn": 1, "cnn": 1, "vit": 1},
                   train_images={"dnn": 1000, "cnn": 1000, "vit": 500},
                   test_images={"dnn": 500, "cnn": 500, "vit": 300}, keras_share=2,
                   widths={"dnn": (5, 10, 20), "cnn": (2, 4), "vit": (2, 4)},
                   note="the pipeline's test: a few runs, one epoch, a small subset; its numbers mean nothing"),
    "small": Scale("small", runs={"dnn": (24, 16), "cnn": (16, 12), "vit": (6, 6)},
                   epochs={"dnn": 2, "cnn": 1, "vit": 1},
                   train_images={"dnn": 10_000, "cnn": 5_000, "vit": 2_000},
                   test_images={"dnn": 5_000, "cnn": 2_000, "vit": 500}, keras_share=2,
                   widths={"dnn": WIDTHS["dnn"], "cnn": (5, 10, 20), "vit": VIT_HEADS},
                   note="what fitted in the time left when the 2-core machine was shared (load average 10-12): "
                        "a fraction of the default, on subsets of the images"),
    "default": Scale("default", runs={"dnn": (100, 50), "cnn": (60, 40), "vit": (12, 8)},
                     epochs={"dnn": 3, "cnn": 1, "vit": 1},
                     train_images={"dnn": None, "cnn": 20_000, "vit": 10_000},
                     test_images={"dnn": None, "cnn": 10_000, "vit": 2_000}, keras_share=6,
                     widths={"dnn": WIDTHS["dnn"], "cnn": (5, 10, 20), "vit": VIT_HEADS},
                     note="sized for about 20 minutes on an idle 2-core CPU, under an hour on a shared one (the "
                          "CNN and ViT cost 20-100x the DNN per image, so they see a subset and one epoch)"),
    "paper": Scale("paper", runs={"dnn": (700, 300), "cnn": (700, 300), "vit": (120, 60)},
                   epochs={"dnn": 20, "cnn": 20, "vit": 20},
                   train_images={"dnn": None, "cnn": None, "vit": None},
                   test_images={"dnn": None, "cnn": None, "vit": None}, keras_share=100,
                   note="the paper's Table 1: 1000 runs x 20 epochs per DNN / CNN, 30 runs per ViT nhead "
                        "(6 values), full data; days of CPU, not run here"),
}


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(f"{math.exp(rng.uniform(math.log(lo), math.log(hi))):.3g}")


def family_configs(family: str, scale: Scale, seed: int = 0) -> list[Config]:
    """The mixed runs, then the seed-only runs, of one family at one scale."""
    n_mixed, n_seeds = scale.runs[family]
    rng = np.random.default_rng(seed + {"dnn": 0, "cnn": 1, "vit": 2}[family])
    widths = scale.widths[family]
    mixed = [Config(family, int(rng.choice(widths)), _log_uniform(rng, *STD_RANGE), 1000 + i, "mixed")
             for i in range(n_mixed)]
    if family == "dnn" and scale.keras_share:
        # a share of the mixed runs, spread over it, goes to Keras
        picks = set(np.linspace(0, n_mixed - 1, min(scale.keras_share, n_mixed)).round().astype(int).tolist())
        mixed = [Config(c.family, c.width, c.init_std, c.seed, c.population, "keras") if i in picks else c
                 for i, c in enumerate(mixed)]
    width = SEED_CONFIG[family] if SEED_CONFIG[family] in widths else widths[0]
    seeds = [Config(family, width, SEED_INIT_STD, i, "seeds") for i in range(n_seeds)]
    return mixed + seeds
