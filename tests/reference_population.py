"""One small real population and a reference fitted on it, shared by the classification tests.

Runs of tiny models on the 8x8 digits (tests/populations.py: MLPs and CNNs,
good, mediocre and dead initialisations), 4 epochs each: the reference is
fitted on 24 of them; 6 more, with other seeds, are held out (both groups
among them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import populations

TRAIN_RUNS = 24
HELD_OUT_RUNS = 6
EPOCHS = 4


@dataclass
class Shared:
    train: Path  # the runs the reference is fitted on
    held_out: Path  # the others
    truth: dict  # held-out run name -> populations.Truth
    reference: Path  # fitted on ``train``
    fit: object  # the FitResult


_cache: dict[str, Shared] = {}


def shared(tmp_path_factory) -> Shared:
    """Build (once per session) the population and its reference."""
    if "shared" in _cache:
        return _cache["shared"]
    from weightwatch.analysis.load import load_runs
    from weightwatch.analysis.model import fit_reference

    base = tmp_path_factory.mktemp("classify")
    train, held = base / "train", base / "held_out"
    populations.make_population(train, runs=TRAIN_RUNS, epochs=EPOCHS)
    truth = populations.make_population(held, runs=HELD_OUT_RUNS, epochs=EPOCHS, seed=100)
    result = fit_reference(load_runs(train, progress=False, cache=False).runs, cv=3)
    ref = result.reference.save(base / "reference.ww")
    _cache["shared"] = Shared(train, held, truth, ref, result)
    return _cache["shared"]
