"""The reference file (``.ww``): what ``weightwatch fit`` learned, and the evaluator that applies it.

Format (version 1), documented so that anyone can read it without weightwatch:
a ZIP archive holding

====================  ==========================================================
member                content
====================  ==========================================================
``reference.json``    UTF-8 JSON: ``format`` (``"weightwatch-reference"``),
                      ``version`` (1), the feature set (``features.set``,
                      ``features.version``, ``features.names``: one per column),
                      the labels (``label``: metric, rule, threshold), the
                      training population, the hparams-only baseline and one
                      entry per step in ``steps`` (see below)
``arrays/<key>.npy``  NumPy ``.npy`` arrays of numbers (never objects), named
                      by the ``"arrays"`` entries of the JSON
====================  ==========================================================

Each ``steps`` entry describes the models fitted on the runs' features at
that logged step: ``step``, ``runs``, ``cv`` (cross-validated quality),
``fill`` (array key: (F,) value used for a missing feature),
``coverage`` ((F,) fraction of the training runs that had each feature),
``typical_optimal`` / ``typical_suboptimal`` ((F,) medians, to explain a
prediction), ``classifier`` (gives P(optimal)) and ``regressor`` (gives the
predicted final metric). A model is one of:

- ``{"kind": "linear", "link": ..., "intercept": b, "arrays": {"center", "scale", "coef"}}``:
  ``raw = b + sum_j coef_j * (x_j - center_j) / scale_j``;
- ``{"kind": "trees", "link": ..., "base": b, "weight": w, "arrays": {"roots", "left",
  "right", "feature", "threshold", "value"}}``: ``raw = b + w * sum_t value[leaf_t(x)]``
  where each tree starts at node ``roots[t]`` and a node ``i`` with ``left[i] >= 0``
  sends ``x`` to ``left[i]`` when ``float32(x[feature[i]]) <= threshold[i]``, else to
  ``right[i]`` (node ids are global over the trees; children have larger ids than
  their parent);

and ``link`` turns ``raw`` into the output: ``"identity"`` or ``"logistic"``
(``1 / (1 + exp(-raw))``); ``clip`` ([lo, hi]) bounds it when present. Features
that are missing or not finite are replaced by ``fill`` first.

Loading reads JSON and ``.npy`` arrays with ``allow_pickle=False`` and checks
every index, so a file cannot execute code or make the evaluator loop or read
out of bounds. A file of another format version or feature set is refused with
a message saying which.
"""

from __future__ import annotations

import io
import json
import math
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .features import FEATURE_NAMES, FEATURE_SET, FEATURE_VERSION, FeatureTable, run_features
from .loading.run import Run

FORMAT = "weightwatch-reference"
VERSION = 1
SUFFIX = ".ww"
JSON_MEMBER = "reference.json"
ARRAY_PREFIX = "arrays/"
#: Refuse members larger than this when loading (a ZIP bomb, not a reference).
MAX_MEMBER_BYTES = 512 << 20
#: How many features explain a prediction.
DRIVERS = 3
#: The (F,) vectors stored per step.
VECTORS = ("fill", "coverage", "typical_optimal", "typical_suboptimal")


class ReferenceError(ValueError):
    """The file is not a reference this weightwatch can use; the message says why."""


# -- the evaluator ------------------------------------------------------------------------------------

def _link(raw: np.ndarray, link: str) -> np.ndarray:
    if link == "logistic":
        return 1.0 / (1.0 + np.exp(-np.clip(raw, -500, 500)))
    return raw


def tree_depth(left: np.ndarray, right: np.ndarray) -> int:
    """Levels of the deepest tree in global node arrays whose children have larger ids than their parent."""
    depth = np.zeros(left.shape[0], dtype=np.int64)
    for i in np.flatnonzero(left >= 0):  # in id order, so a parent's depth is known before its children's
        depth[left[i]] = depth[right[i]] = depth[i] + 1
    return int(depth.max()) + 1 if depth.size else 0


@dataclass
class Model:
    """One exported model (see the module doc): ``meta`` from the JSON, ``arrays`` from the .npy members."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    depth: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.kind == "trees":
            self.depth = tree_depth(self.arrays["left"], self.arrays["right"])

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    def raw(self, x: np.ndarray, contributions: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw score of each row of ``x`` (n, F) (already filled), and with ``contributions``
        the (n, F) share of each feature in it (Saabas paths for trees, coef * z for linear);
        raw minus the contributions' sum is the same for every row (the bias)."""
        a = self.arrays
        n = x.shape[0]
        if self.kind == "linear":
            z = (x - a["center"]) / a["scale"]
            terms = z * a["coef"]
            return self.meta["intercept"] + terms.sum(axis=1), (terms if contributions else None)
        xs = x.astype(np.float32).astype(np.float64)  # trees compare in float32, like scikit-learn
        left, right, feature, threshold, value = a["left"], a["right"], a["feature"], a["threshold"], a["value"]
        node = np.broadcast_to(a["roots"], (n, a["roots"].size)).copy()
        weight = float(self.meta["weight"])
        contrib = np.zeros_like(x) if contributions else None
        rows = np.arange(n)[:, None]
        for _ in range(self.depth):
            inner = left[node] >= 0
            if not inner.any():
                break
            f = np.where(inner, feature[node], 0)
            go_left = xs[rows, f] <= threshold[node]
            nxt = np.where(inner, np.where(go_left, left[node], right[node]), node)
            if contrib is not None:
                np.add.at(contrib, (np.broadcast_to(rows, f.shape), f), weight * (value[nxt] - value[node]))
            node = nxt
        return self.meta["base"] + weight * value[node].sum(axis=1), contrib

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = _link(self.raw(x)[0], self.meta["link"])
        clip = self.meta.get("clip")
        return np.clip(out, clip[0], clip[1]) if clip else out


def _checked_model(meta: dict[str, Any], arrays: Mapping[str, np.ndarray], n_features: int, where: str) -> Model:
    """An exported model read from a file, validated (see the module doc)."""
    def bad(msg: str) -> ReferenceError:
        return ReferenceError(f"{where}: {msg}")

    if meta.get("link") not in ("identity", "logistic"):
        raise bad(f"unknown link {meta.get('link')!r}")
    clip = meta.get("clip")
    if clip is not None:
        meta["clip"] = [float(clip[0]), float(clip[1])]
    if meta.get("kind") == "linear":
        for key in ("center", "scale", "coef"):
            if arrays[key].shape != (n_features,):
                raise bad(f"{key} has shape {arrays[key].shape}, expected ({n_features},)")
        if not np.all(arrays["scale"] != 0):
            raise bad("scale has zeros")
        meta["intercept"] = float(meta["intercept"])
        return Model(meta, dict(arrays))
    if meta.get("kind") != "trees":
        raise bad(f"unknown model kind {meta.get('kind')!r}")
    left, right, feature = arrays["left"], arrays["right"], arrays["feature"]
    size = left.shape[0]
    if left.ndim != 1 or any(arrays[k].shape != (size,) for k in ("right", "feature", "threshold", "value")):
        raise bad("tree arrays must be 1-D and of one length")
    roots = arrays["roots"]
    if roots.ndim != 1 or roots.size == 0 or roots.min() < 0 or roots.max() >= size:
        raise bad("roots out of range")
    ids = np.arange(size)
    inner = left >= 0
    if np.any(inner != (right >= 0)):
        raise bad("a node has one child only")
    if np.any((left[inner] <= ids[inner]) | (right[inner] <= ids[inner]) | (left[inner] >= size)
              | (right[inner] >= size)):
        raise bad("child ids must be larger than their parent's and inside the arrays")
    if np.any((feature[inner] < 0) | (feature[inner] >= n_features)):
        raise bad("feature index out of range")
    meta["base"], meta["weight"] = float(meta["base"]), float(meta["weight"])
    return Model(meta, dict(arrays))


# -- predictions ---------------------------------------------------------------------------------------

@dataclass
class Driver:
    """One feature's share in a prediction (on the classifier's raw scale: > 0 pushes towards optimal)."""

    feature: str
    value: float
    contribution: float
    typical_optimal: float
    typical_suboptimal: float


@dataclass
class Prediction:
    """A run judged by a reference.

    Attributes:
        run: the run's name; step: its latest logged step used; model_step:
            the step of the model that judged it (the latest <= step).
        p_optimal: probability that the run ends in the optimal group.
        predicted: the predicted final value of the reference's metric.
        group: ``"optimal"`` when p_optimal >= 0.5, else ``"suboptimal"``.
        drivers: the features that moved P(optimal) most, largest first.
        notes: warnings (features missing, a run past the reference's steps).
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

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "step": self.step, "model_step": self.model_step, "p_optimal": self.p_optimal,
                "predicted": self.predicted, "metric": self.metric, "group": self.group,
                "drivers": [vars(d) for d in self.drivers], "notes": list(self.notes)}


@dataclass
class StepModels:
    """The models fitted at one step: P(optimal), the predicted metric, how to fill gaps."""

    step: int
    runs: int
    classifier: Model
    regressor: Model
    fill: np.ndarray
    coverage: np.ndarray
    typical_optimal: np.ndarray
    typical_suboptimal: np.ndarray
    cv: dict[str, Any] = field(default_factory=dict)

    def filled(self, x: np.ndarray) -> np.ndarray:
        x = np.array(x, dtype=np.float64, ndmin=2)
        bad = ~np.isfinite(x)
        x[bad] = np.broadcast_to(self.fill, x.shape)[bad]
        return x


class Reference:
    """A fitted reference: models per step plus what they were fitted on.

    Build one with :func:`weightwatch.analysis.model.fit_reference`; read one
    with :meth:`load`. ``info`` is the JSON document (see the module doc).
    """

    def __init__(self, info: dict[str, Any], steps: Sequence[StepModels]) -> None:
        if not steps:
            raise ReferenceError("a reference needs models for at least one step")
        self.info = info
        self.steps = sorted(steps, key=lambda s: s.step)

    @property
    def metric(self) -> str:
        return self.info["label"]["metric"]

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
        """The ``k`` features with the largest share in P(optimal) for one row ``x`` (F,)."""
        m = self.model_for(step)
        xf = m.filled(x)
        _, contrib = m.classifier.raw(xf, contributions=True)
        c = contrib[0]
        chosen: list[int] = []
        for j in np.argsort(-np.abs(c), kind="stable"):
            if len(chosen) == k or c[j] == 0:
                break
            base = FEATURE_NAMES[j].split(":")[0]
            # at the second record the change since the start is the change since the previous one
            if any(FEATURE_NAMES[i].split(":")[0] == base and xf[0, i] == xf[0, j] for i in chosen):
                continue
            chosen.append(int(j))
        return [Driver(FEATURE_NAMES[j], float(x[j]), float(c[j]), float(m.typical_optimal[j]),
                       float(m.typical_suboptimal[j])) for j in chosen]

    def classify(self, run: Run, step: int | None = None, *, table: FeatureTable | None = None) -> Prediction:
        """Judge ``run`` at its latest logged step (or the latest <= ``step``)."""
        table = table if table is not None else run_features(run)
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
        return Prediction(run=run.name, step=at, model_step=m.step, p_optimal=p0, predicted=float(pred[0]),
                          metric=self.metric, group="optimal" if p0 >= 0.5 else "suboptimal",
                          drivers=self.drivers(x, at), notes=notes)

    # -- the file ------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the reference to ``path`` (see the module doc for the format)."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        entries = []
        for s in self.steps:
            prefix = f"step{s.step}"
            entry = {"step": s.step, "runs": s.runs, "cv": s.cv}
            for name in VECTORS:
                key = f"{prefix}/{name}"
                arrays[key] = np.asarray(getattr(s, name), dtype=np.float64)
                entry[name] = key
            for role in ("classifier", "regressor"):
                model: Model = getattr(s, role)
                keys = {}
                for name, arr in model.arrays.items():
                    keys[name] = f"{prefix}/{role}/{name}"
                    arrays[keys[name]] = arr
                entry[role] = {**{k: v for k, v in model.meta.items() if k != "arrays"}, "arrays": keys}
            entries.append(entry)
        doc = {**self.info, "format": FORMAT, "version": VERSION, "steps": entries}
        tmp = path.with_name(path.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(JSON_MEMBER, json.dumps(json_safe(doc), indent=1, allow_nan=False))
            for key, arr in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
                zf.writestr(f"{ARRAY_PREFIX}{key}.npy", buf.getvalue())
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        """Read a reference file; raises :class:`ReferenceError` with the reason when it cannot be used."""
        path = Path(path)
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ReferenceError(f"{str(path)!r} is not a weightwatch reference (not a ZIP archive: {exc})") from None
        with zf:
            members = {i.filename: i for i in zf.infolist()}
            for info in members.values():
                if info.file_size > MAX_MEMBER_BYTES:
                    raise ReferenceError(f"{path}: member {info.filename!r} is too large ({info.file_size} bytes)")
            if JSON_MEMBER not in members:
                raise ReferenceError(f"{str(path)!r} is not a weightwatch reference (no {JSON_MEMBER})")
            try:
                doc = json.loads(zf.read(JSON_MEMBER).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ReferenceError(f"{path}: {JSON_MEMBER} is not valid JSON: {exc}") from None
            check_compatible(doc, path)

            def array(key: str) -> np.ndarray:
                member = f"{ARRAY_PREFIX}{key}.npy"
                if not isinstance(key, str) or member not in members:
                    raise ReferenceError(f"{path}: array {key!r} is missing")
                try:
                    with zf.open(member) as fh:
                        arr = np.lib.format.read_array(io.BytesIO(fh.read()), allow_pickle=False)
                except ValueError as exc:  # object arrays need pickle: refused
                    raise ReferenceError(f"{path}: array {key!r} cannot be read safely: {exc}") from None
                if arr.dtype.kind not in "biuf":
                    raise ReferenceError(f"{path}: array {key!r} has dtype {arr.dtype}, expected numbers")
                return arr

            steps = []
            n_features = len(FEATURE_NAMES)
            try:
                for entry in doc["steps"]:
                    where = f"{path}: step {entry['step']}"
                    vectors = {}
                    for name in VECTORS:
                        vectors[name] = array(entry[name]).astype(np.float64)
                        if vectors[name].shape != (n_features,):
                            raise ReferenceError(f"{where}: {name} has shape {vectors[name].shape}")
                    models = {}
                    for role in ("classifier", "regressor"):
                        meta = dict(entry[role])
                        arrays = {k: array(v) for k, v in meta.pop("arrays").items()}
                        for k in ("roots", "left", "right", "feature"):
                            if k in arrays:
                                arrays[k] = arrays[k].astype(np.int64)
                        for k in ("threshold", "value", "center", "scale", "coef"):
                            if k in arrays:
                                arrays[k] = arrays[k].astype(np.float64)
                        models[role] = _checked_model(meta, arrays, n_features, f"{where} {role}")
                    steps.append(StepModels(step=int(entry["step"]), runs=int(entry["runs"]), cv=dict(entry["cv"]),
                                            **models, **vectors))
            except ReferenceError:
                raise
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ReferenceError(f"{path}: malformed reference ({type(exc).__name__}: {exc})") from None
        info = {k: v for k, v in doc.items() if k != "steps"}
        return cls(info, steps)


def check_compatible(doc: Mapping[str, Any], path: str | Path = "reference") -> None:
    """Raise :class:`ReferenceError` unless ``doc`` is a reference of this version and feature set."""
    if doc.get("format") != FORMAT:
        raise ReferenceError(f"{str(path)!r} is not a weightwatch reference (format {doc.get('format')!r})")
    version = doc.get("version")
    if version != VERSION:
        newer = isinstance(version, int) and version > VERSION
        raise ReferenceError(
            f"{str(path)!r} is a reference of format version {version!r}; this weightwatch reads version {VERSION}. "
            + ("Upgrade weightwatch to use it." if newer else "Fit it again with `weightwatch fit`.")
        )
    feats = doc.get("features", {})
    if feats.get("set") != FEATURE_SET or feats.get("version") != FEATURE_VERSION \
            or list(feats.get("names", [])) != list(FEATURE_NAMES):
        raise ReferenceError(
            f"{str(path)!r} was fitted on features {feats.get('set')!r} version {feats.get('version')!r}; "
            f"this weightwatch computes {FEATURE_SET!r} version {FEATURE_VERSION}. "
            "Fit the reference again with `weightwatch fit` (same runs, this version)."
        )


def reference_info(label: Mapping[str, Any], population: Mapping[str, Any],
                   baseline: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON header of a new reference (the ``steps`` entries are added by :meth:`Reference.save`)."""
    from weightwatch import __version__

    return {
        "format": FORMAT, "version": VERSION, "weightwatch": __version__, "created": time.time(),
        "features": {"set": FEATURE_SET, "version": FEATURE_VERSION, "names": list(FEATURE_NAMES)},
        "label": dict(label), "population": dict(population), "baseline": dict(baseline or {}),
    }


def load_reference(reference: str | Path | Reference) -> Reference:
    """A :class:`Reference` from a path (or the reference itself)."""
    return reference if isinstance(reference, Reference) else Reference.load(reference)


def classify_runs(runs: Sequence[Run], reference: str | Path | Reference, step: int | None = None) -> list[Prediction]:
    """:meth:`Reference.classify` for each run."""
    ref = load_reference(reference)
    return [ref.classify(run, step) for run in runs]


def json_safe(value: Any) -> Any:
    """``value`` with NaN / infinite floats as None and numpy scalars as Python ones (strict JSON).

    >>> json_safe({"auc": float("nan"), "runs": np.int64(3), "curve": (0.5, np.float64(0.75))})
    {'auc': None, 'runs': 3, 'curve': [0.5, 0.75]}
    """
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- the command ---------------------------------------------------------------------------------------

def add_classify_arguments(parser: Any) -> None:
    """The arguments of ``weightwatch classify`` (an argparse parser)."""
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories (or directories holding runs)")
    parser.add_argument("--reference", "-r", required=True, help="the reference file written by `weightwatch fit`")
    parser.add_argument("--step", type=int, help="judge each run at its latest logged step <= STEP")
    parser.add_argument("--json", action="store_true", help="print the predictions as JSON")


def format_predictions(predictions: Sequence[Prediction]) -> str:
    """What ``weightwatch classify`` prints: one block per run."""
    def g(v: float) -> str:
        return f"{v:.4g}" if math.isfinite(v) else "missing"

    lines = []
    for p in predictions:
        lines.append(f"{p.run}: {p.group.upper()}  P(optimal) {p.p_optimal:.3f}  predicted {p.metric} "
                     f"{p.predicted:.4f}  (step {p.step}, model of step {p.model_step})")
        for d in p.drivers:
            sign = "+" if d.contribution > 0 else "-"
            lines.append(f"    {sign} {d.feature} = {g(d.value)}  (optimal runs ~{g(d.typical_optimal)}, "
                         f"suboptimal ~{g(d.typical_suboptimal)})")
        lines += [f"    note: {n}" for n in p.notes]
    return "\n".join(lines)


def format_prediction_table(predictions: Sequence[Prediction]) -> str:
    """One line per run (what ``weightwatch compare --reference`` adds to its report)."""
    if not predictions:
        return "no run could be classified"
    width = max(len(p.run) for p in predictions)
    metric = predictions[0].metric
    lines = [f"{'run':<{width}}  P(optimal)  predicted {metric}  group", ]
    lines += [f"{p.run:<{width}}  {p.p_optimal:10.3f}  {p.predicted:{10 + len(metric)}.4f}  {p.group}"
              + ("  (" + "; ".join(p.notes) + ")" if p.notes else "") for p in predictions]
    return "\n".join(lines)


def classify_path(path: str | Path, reference: str | Path | Reference, step: int | None = None,
                  problems: list[str] | None = None) -> list[Prediction]:
    """Classify every run below ``path`` (runs without logged weights are skipped, noted in ``problems``)."""
    from .loading.loader import load_runs

    ref = load_reference(reference)
    out = []
    for run in load_runs(path, progress=False).runs:
        try:
            out.append(ref.classify(run, step))
        except ValueError as exc:
            if problems is not None:
                problems.append(f"{run.name}: {exc}")
    return out


def classify_command(args: Any) -> int:
    """``weightwatch classify RUN... --reference reference.ww``: returns the exit code (0 when at least
    one run was classified; runs that could not be are reported on stderr; 1 when none was)."""
    import sys

    from .loading.loader import load_runs

    try:
        ref = Reference.load(args.reference)
    except (ReferenceError, FileNotFoundError) as exc:
        print(f"weightwatch classify: {exc}", file=sys.stderr)
        return 1
    predictions, failed = [], 0
    for path in args.runs:
        try:
            loaded = load_runs(path, progress=False)
        except FileNotFoundError as exc:
            print(f"weightwatch classify: {exc}", file=sys.stderr)
            failed += 1
            continue
        if not loaded.runs:
            print(f"weightwatch classify: no run found in {path!r}", file=sys.stderr)
            failed += 1
        for run in loaded.runs:
            # name runs as the user wrote them: the path itself, or path/run below it
            run.name = str(path) if Path(run.path).resolve() == Path(path).resolve() else str(Path(path) / run.name)
            try:
                predictions.append(ref.classify(run, args.step))
            except ValueError as exc:
                print(f"weightwatch classify: {run.name}: {exc}", file=sys.stderr)
                failed += 1
    if args.json:
        print(json.dumps(json_safe([p.to_json() for p in predictions]), indent=1))
    elif predictions:
        print(format_predictions(predictions))
    return 0 if predictions else 1
