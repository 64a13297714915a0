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
    from weightwatch.analysis.loading.loader import load_runs
    from weightwatch.analysis import fit

    base = tmp_path_factory.mktemp("classify")
    train, held = base / "train", base / "held_out"
    populations.make_population(train, runs=TRAIN_RUNS, epochs=EPOCHS)
    truth = populations.make_population(held, runs=HELD_OUT_RUNS, epochs=EPOCHS, seed=100)
    result = fit(load_runs(train, progress=False, cache=False).runs, cv=3)
    ref = result.reference.save(base / "reference.ww")
    _cache["shared"] = Shared(train, held, truth, ref, result)
    return _cache["shared"]


#: Optimizer steps per epoch of the population's training (1347 images, batches of 64).
STEPS_PER_EPOCH = 22


def per_step_reference(tmp_path_factory) -> Path:
    """The same population's reference with steps counted in optimizer steps, as Lightning's and
    Hugging Face's callbacks log them: the record after epoch e (0-based) sits at step 22 (e + 1) - 1,
    with the ``epoch`` scalar Lightning's callback writes there (e), so the reference knows its unit."""
    if "per_step" in _cache:
        return _cache["per_step"]
    import numpy as np

    from weightwatch.analysis.loading.loader import load_runs
    from weightwatch.analysis import fit
    from weightwatch.analysis.loading.run import HistogramSeries, Series

    base = shared(tmp_path_factory)
    runs = load_runs(base.train, progress=False, cache=False).runs

    def moved(steps: np.ndarray) -> np.ndarray:
        return STEPS_PER_EPOCH * (np.asarray(steps) + 1) - 1

    for run in runs:
        epochs = np.unique(np.asarray(run.scalars["weights/all/mean"].steps))
        run.scalars["epoch"] = Series(epochs, epochs.astype(np.float64))
        for tag, series in list(run.scalars.items()):
            run.scalars[tag] = Series(moved(series.steps), series.values)
        for tag, hist in list(run.histograms.items()):
            run.histograms[tag] = HistogramSeries(moved(hist.steps), hist.edges, hist.counts)
    path = tmp_path_factory.mktemp("per_step") / "reference.ww"
    fit(runs, cv=3, baseline=False).reference.save(path)
    _cache["per_step"] = path
    return path
