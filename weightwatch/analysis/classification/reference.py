"""A fitted reference (:mod:`.fit` makes one, :mod:`.reffile` stores it) and the verdicts it gives.

:class:`Reference` holds the models of each step (:mod:`.models`); it judges a
run at its latest logged step with the models of the latest step <= it, and
names the features that moved P(optimal) most (:class:`Driver`).

A step's chosen classifier may read a feature every training run had that the
run judged lacks (a learning curve it did not log, a hyperparameter it does not
record): filled with the training runs' median, its output would be a guess
dressed as a verdict. :meth:`Reference.judge` then uses the step's weights-only
fallback (kept by ``fit`` wherever the chosen model reads more than the weights)
when the run has all it reads, and otherwise gives no verdict (``p_optimal``
None: *uncertain*), naming what is missing.
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
from .models import Model, StepModels
from .population import STEP_UNITS, with_hparams
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
class Judgement:
    """Which models of a step judge one feature row, and what they say (see :meth:`Reference.judge`).

    Attributes:
        models: the step's models (``models.step``: the model step).
        p_optimal: P(optimal) from ``classifier``; None when no model of the step has what it
            needs from the row (the verdict is uncertain).
        predicted: the predicted final metric, None likewise.
        classifier: the model that gave ``p_optimal`` (the chosen one, or the weights-only
            fallback), None when uncertain; family: its feature family.
        missing: the features the chosen classifier reads that every training run had and the
            row lacks (empty: it judged the row itself).
        filled_p / filled_predicted: what the chosen models say with the gaps filled by the
            training runs' medians (the number when ``missing`` is empty).
    """

    models: StepModels
    p_optimal: float | None
    predicted: float | None
    classifier: Model | None
    family: str | None
    missing: list[str]
    filled_p: float
    filled_predicted: float

    @property
    def uncertain(self) -> bool:
        return self.p_optimal is None

    @property
    def fallback(self) -> bool:
        """Whether the weights-only fallback judged (the chosen model lacked a feature)."""
        return self.classifier is not None and self.classifier is not self.models.classifier


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
        family: the feature family of the model that gave p_optimal (the step's chosen one,
            or its weights-only fallback when the run lacks a feature the chosen one reads).
        missing: those features (empty when the chosen model judged the run itself); when no
            model of the step can do without them the group is ``"uncertain"`` and p_optimal
            is the chosen model's output with them filled by the training runs' medians (no
            verdict: shown, not to be acted on).
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
    family: str | None = None
    missing: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "step": self.step, "model_step": self.model_step, "p_optimal": self.p_optimal,
                "predicted": self.predicted, "metric": self.metric, "group": self.group,
                "drivers": [vars(d) for d in self.drivers], "notes": list(self.notes), "p_non": self.p_non,
                "non": self.non, "family": self.family, "missing": list(self.missing)}


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

    @property
    def step_unit(self) -> str | None:
        """How the training runs counted their steps: ``"epoch"``, ``"step"`` (optimizer steps) or
        None (unknown: they did not say, or differed; see :func:`~.population.step_unit`)."""
        unit = self.info.get("population", {}).get("step_unit")
        return unit if unit in STEP_UNITS else None

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
        """(P(optimal) (n,), predicted metric (n,)) of the step's chosen models for feature rows
        ``x`` (n, F) logged at ``step``, gaps filled (:meth:`judge` checks what a row lacks)."""
        m = self.model_for(step)
        xf = m.filled(x)
        return m.classifier.predict(xf), m.regressor.predict(xf)

    def judge(self, x: np.ndarray, step: int) -> Judgement:
        """Judge one feature row ``x`` (F + H,) logged at ``step`` with the models of that step:
        the chosen ones when the row has every feature they read that all training runs had,
        else the step's weights-only fallback when the row has what it reads, else no verdict
        (see the module doc). The classifier and the regressor are checked each on its own."""
        m = self.model_for(step)
        xf = m.filled(x)
        filled_p = float(m.classifier.predict(xf)[0])
        filled_pred = float(m.regressor.predict(xf)[0])
        missing = m.lacks(m.classifier, x)
        fb = m.cv.get("fallback", {}) if isinstance(m.cv.get("fallback"), dict) else {}
        clf, family = m.classifier, m.cv.get("family")
        if missing.size:
            clf, family = (m.fallback, fb.get("family")) if usable_on(m, m.fallback, x) else (None, None)
        reg = m.regressor
        if m.lacks(reg, x).size:
            reg = m.fallback_regressor if usable_on(m, m.fallback_regressor, x) else None
        p = None if clf is None else filled_p if clf is m.classifier else float(clf.predict(xf)[0])
        pred = None if reg is None else filled_pred if reg is m.regressor else float(reg.predict(xf)[0])
        return Judgement(m, p, pred, clf, family, [self.names[j] for j in missing], filled_p, filled_pred)

    def drivers(self, x: np.ndarray, step: int, k: int = DRIVERS, classifier: Model | None = None) -> list[Driver]:
        """The ``k`` features with the largest share in P(optimal) for one row ``x`` (F + H,) (of the
        step's chosen classifier, or ``classifier``); features the run has come before those it
        lacks (filled), and every driver carries numbers."""
        m = self.model_for(step)
        xf = m.filled(x)
        _, contrib = (classifier or m.classifier).raw(xf, contributions=True)
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
        judged = self.judge(x, at)
        m = judged.models
        notes = []
        everywhere = m.coverage >= 1.0  # features every training run had
        missing = int(np.sum(everywhere & ~np.isfinite(x)))
        if missing > 0.1 * max(int(everywhere.sum()), 1):
            notes.append(f"{missing} of the {int(everywhere.sum())} features all the reference's runs had are "
                         "missing from this run: is it of the same architecture family?")
        if at < m.step:
            notes.append(f"step {at} is earlier than the reference's first model (step {m.step})")
        p0 = judged.filled_p if judged.uncertain else judged.p_optimal
        pred = judged.filled_predicted if judged.predicted is None else judged.predicted
        group = "optimal" if p0 >= 0.5 else "suboptimal"
        if judged.missing:
            notes.append(missing_note(self, judged))
            if judged.uncertain:
                group = UNCERTAIN
        families = self.info.get("population", {}).get("families")
        if isinstance(families, list) and families and family_of(run) not in families:
            group = UNCERTAIN  # the models never saw this kind of network: no verdict
            notes.append(f"another architecture: the reference was fitted on {', '.join(map(str, families))} "
                         f"runs, this run is {family_of(run)}; no verdict (fit a reference on runs like it)")
        p_non = float(m.non.predict(m.filled(x))[0]) if m.non is not None and at >= m.step else None
        return Prediction(run=run.name, step=at, model_step=m.step, p_optimal=p0, predicted=pred,
                          metric=self.metric, group=group, drivers=self.drivers(x, at, classifier=judged.classifier),
                          notes=notes, p_non=p_non, non=None if p_non is None else p_non >= 0.5,
                          family=judged.family if not judged.uncertain else m.cv.get("family"),
                          missing=judged.missing)


    # -- the file (see :mod:`.reffile`) ----------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the reference to ``path``; returns it."""
        return write_reference(self.info, self.steps, path)

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        """Read a reference file; raises :class:`ReferenceFileError` with the reason when it cannot be used."""
        return cls(*read_reference(path))


def usable_on(m: StepModels, model: Model | None, x: np.ndarray) -> bool:
    """Whether ``model`` (one of ``m``'s) exists and row ``x`` has every feature it needs."""
    return model is not None and not m.lacks(model, x).size


def missing_note(ref: Reference, judged: Judgement) -> str:
    """What the run lacks for the step's chosen model, what judged it instead, and what to do."""
    m = judged.models
    shown = ", ".join(judged.missing[:4]) + (f" and {len(judged.missing) - 4} more" if len(judged.missing) > 4 else "")
    curves = any(n.startswith("curve/") for n in judged.missing)
    todo = (f"log {ref.metric!r} (the reference's metric) and its loss at the steps the weights are logged"
            if curves else "record the same hyperparameters") + ", or fit the reference on runs logged like this one"
    if judged.uncertain:
        return (f"uncertain at step {m.step}: the reference's model ({m.cv.get('family')}) needs {shown}, which "
                f"this run lacks, and no model of that step does without it; no verdict ({todo})")
    auc = m.cv.get("fallback", {}).get("auc")
    quality = f", cross-validated AUC {auc:.3f}" if isinstance(auc, (int, float)) else ""
    return (f"this run lacks {shown}, which the reference's model of step {m.step} ({m.cv.get('family')}) "
            f"needs: judged by the weights-only model ({judged.family}{quality}) instead; {todo}")


def load_reference(reference: str | Path | Reference) -> Reference:
    """A :class:`Reference` from a path (or the reference itself)."""
    return reference if isinstance(reference, Reference) else Reference.load(reference)


def classify_runs(runs: Sequence[Run], reference: str | Path | Reference, step: int | None = None) -> list[Prediction]:
    """:meth:`Reference.classify` for each run."""
    ref = load_reference(reference)
    return [ref.classify(run, step) for run in runs]
