"""A fitted reference (:mod:`.fit` makes one, :mod:`.reffile` stores it) and the verdicts it gives.

:class:`Reference` holds the models of each step (:mod:`.models`); it judges a
run at its latest logged step with the models of the latest step <= it, and
names the features that moved P(optimal) most (:class:`Driver`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..comparison.groups import family_of
from ..loading.run import Run
from .features import FEATURE_NAMES, FeatureTable, run_features
from .hparams import HparamColumn
from .models import StepModels
from .population import with_hparams
from .reffile import ReferenceFileError, read_reference, write_reference

#: How many features explain a prediction.
DRIVERS = 3
#: The group of a run of an architecture family the reference was not fitted on.
UNCERTAIN = "uncertain"


@dataclass
class Driver:
    """One feature's share in a prediction (on the classifier's raw scale: > 0 pushes towards optimal).

    ``value`` is what the model used: the run's own value, or, when the run lacks the
    feature (``missing``), the reference's fill value (the training runs' median).
    """

    feature: str
    value: float
    contribution: float
    typical_optimal: float
    typical_suboptimal: float
    missing: bool = False


@dataclass
class Prediction:
    """A run judged by a reference.

    Attributes:
        run: the run's name; step: its latest logged step used; model_step:
            the step of the model that judged it (the latest <= step).
        p_optimal: probability that the run ends in the optimal group.
        predicted: the predicted final value of the reference's metric.
        group: ``"optimal"`` when p_optimal >= 0.5, else ``"suboptimal"``; ``"uncertain"``
            when the run's architecture family is not one the reference was fitted on.
        drivers: the features that moved P(optimal) most, largest first.
        notes: warnings (features missing, a run past the reference's steps).
        p_non: at the reference's first step, the probability that the run stays at chance
            (None at later steps, or when the training runs had too few such runs);
            non: p_non >= 0.5 (None likewise).
    """

    run: str
    step: int
    model_step: int
    p_optimal: float
    predicted: float
    metric: str
    group: str
    drivers: list[Driver] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    p_non: float | None = None
    non: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "step": self.step, "model_step": self.model_step, "p_optimal": self.p_optimal,
                "predicted": self.predicted, "metric": self.metric, "group": self.group,
                "drivers": [vars(d) for d in self.drivers], "notes": list(self.notes), "p_non": self.p_non,
                "non": self.non}


class Reference:
    """A fitted reference: models per step plus what they were fitted on.

    Build one with :func:`weightwatch.analysis.fit`; read one
    with :meth:`load`. ``info`` is the JSON document (see :mod:`.reffile`).
    """

    def __init__(self, info: dict[str, Any], steps: Sequence[StepModels]) -> None:
        if not steps:
            raise ReferenceFileError("a reference needs models for at least one step")
        self.info = info
        self.steps = sorted(steps, key=lambda s: s.step)
        features = info.get("features", {})
        self.hparams = [HparamColumn.from_json(c) for c in features.get("hparams", [])]
        self.horizon: int | None = features.get("horizon")
        #: the column names of the models' inputs: FEATURE_NAMES, then the hyperparameters
        self.names = [*FEATURE_NAMES, *(c.name for c in self.hparams)]

    @property
    def metric(self) -> str:
        return self.info["label"]["metric"]

    def table(self, run: Run) -> FeatureTable:
        """The run's features as this reference's models read them (its metric, horizon and
        hyperparameter columns), at every logged step."""
        return with_hparams(run_features(run, self.metric, self.horizon), run, self.hparams)

    def model_for(self, step: int) -> StepModels:
        """The models of the latest step <= ``step`` (the first step's when ``step`` is earlier)."""
        chosen = self.steps[0]
        for s in self.steps:
            if s.step <= step:
                chosen = s
        return chosen

    def predict(self, x: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(P(optimal) (n,), predicted metric (n,)) for feature rows ``x`` (n, F) logged at ``step``."""
        m = self.model_for(step)
        xf = m.filled(x)
        return m.classifier.predict(xf), m.regressor.predict(xf)

    def drivers(self, x: np.ndarray, step: int, k: int = DRIVERS) -> list[Driver]:
        """The ``k`` features with the largest share in P(optimal) for one row ``x`` (F + H,); features
        the run has come before those it lacks (filled), and every driver carries numbers."""
        m = self.model_for(step)
        xf = m.filled(x)
        _, contrib = m.classifier.raw(xf, contributions=True)
        c = contrib[0]
        names = self.names
        chosen: list[int] = []
        order = np.argsort(-np.abs(c), kind="stable")
        for j in [*(j for j in order if np.isfinite(x[j])), *(j for j in order if not np.isfinite(x[j]))]:
            if len(chosen) == k or c[j] == 0:
                continue
            base = names[j].split(":")[0]
            # at the second record the change since the start is the change since the previous one
            if any(names[i].split(":")[0] == base and xf[0, i] == xf[0, j] for i in chosen):
                continue
            chosen.append(int(j))
        return [Driver(names[j], float(xf[0, j]), float(c[j]), float(m.typical_optimal[j]),
                       float(m.typical_suboptimal[j]), missing=not bool(np.isfinite(x[j]))) for j in chosen]

    def classify(self, run: Run, step: int | None = None, *, table: FeatureTable | None = None) -> Prediction:
        """Judge ``run`` at its latest logged step (or the latest <= ``step``)."""
        table = table if table is not None else self.table(run)
        at, x = table.at(step)
        m = self.model_for(at)
        p, pred = self.predict(x[None, :], at)
        notes = []
        everywhere = m.coverage >= 1.0  # features every training run had
        missing = int(np.sum(everywhere & ~np.isfinite(x)))
        if missing > 0.1 * max(int(everywhere.sum()), 1):
            notes.append(f"{missing} of the {int(everywhere.sum())} features all the reference's runs had are "
                         "missing from this run: is it of the same architecture family?")
        if at < m.step:
            notes.append(f"step {at} is earlier than the reference's first model (step {m.step})")
        p0 = float(p[0])
        group = "optimal" if p0 >= 0.5 else "suboptimal"
        families = self.info.get("population", {}).get("families")
        if isinstance(families, list) and families and family_of(run) not in families:
            group = UNCERTAIN  # the models never saw this kind of network: no verdict
            notes.append(f"another architecture: the reference was fitted on {', '.join(map(str, families))} "
                         f"runs, this run is {family_of(run)}; no verdict (fit a reference on runs like it)")
        p_non = float(m.non.predict(m.filled(x))[0]) if m.non is not None and at >= m.step else None
        return Prediction(run=run.name, step=at, model_step=m.step, p_optimal=p0, predicted=float(pred[0]),
                          metric=self.metric, group=group, drivers=self.drivers(x, at), notes=notes,
                          p_non=p_non, non=None if p_non is None else p_non >= 0.5)


    # -- the file (see :mod:`.reffile`) ----------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the reference to ``path``; returns it."""
        return write_reference(self.info, self.steps, path)

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        """Read a reference file; raises :class:`ReferenceFileError` with the reason when it cannot be used."""
        return cls(*read_reference(path))


def load_reference(reference: str | Path | Reference) -> Reference:
    """A :class:`Reference` from a path (or the reference itself)."""
    return reference if isinstance(reference, Reference) else Reference.load(reference)


def classify_runs(runs: Sequence[Run], reference: str | Path | Reference, step: int | None = None) -> list[Prediction]:
    """:meth:`Reference.classify` for each run."""
    ref = load_reference(reference)
    return [ref.classify(run, step) for run in runs]
