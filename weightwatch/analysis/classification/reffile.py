"""The reference file (``.ww``): what ``weightwatch fit`` learned, as an open, versioned format.

Format (version 1), documented so that anyone can read it without weightwatch:
a ZIP archive holding

====================  ==========================================================
member                content
====================  ==========================================================
``reference.json``    UTF-8 JSON: ``format`` (``"weightwatch-reference"``),
                      ``version`` (1), the feature set (``features.set``,
                      ``features.version``, ``features.names``: one per column;
                      ``features.hparams``: hyperparameter columns appended, each
                      ``{"key", "level"}``; ``features.horizon``: the step the
                      curves are extrapolated to),
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
prediction), ``classifier`` (gives P(optimal)), ``regressor`` (gives the
predicted final metric) and, optionally, ``non`` (P(the run stays at chance),
first step only) and ``fallback`` / ``fallback_regressor`` (the best models of
that step reading the weights only, when the chosen ones read more: they judge
a run that lacks a curve or hyperparameter the chosen ones need). Vectors and models have one entry per column: the feature
names, then the hyperparameter columns. A model is one of:

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

Loading never executes anything from the file: the archive may hold only
``reference.json`` and ``arrays/*.npy`` (anything else, a pickle say, is
refused); the JSON is strict (no NaN / Infinity, bounded depth) and its
fields are type-checked; each ``.npy`` header is parsed by hand and must
declare a numeric dtype and exactly as many bytes as the member holds (so no
object arrays, no array declared larger than the file), and every tree index
is checked, so a file cannot make the evaluator loop or read out of bounds.
A file larger than :data:`MAX_FILE_BYTES`, a damaged archive, or a file of
another format version or feature set is refused with a message saying which.
"""


from __future__ import annotations

import io
import json
import math
import os
import time
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from weightwatch import __version__, interrupts

from ..loading.info import loads_strict
from .features import FEATURE_NAMES, FEATURE_SET, FEATURE_VERSION
from .hparams import HparamColumn
from .models import Model, StepModels

FORMAT = "weightwatch-reference"
VERSION = 1
SUFFIX = ".ww"
JSON_MEMBER = "reference.json"
ARRAY_PREFIX = "arrays/"
#: Refuse members larger than this when loading (a ZIP bomb, not a reference).
MAX_MEMBER_BYTES = 512 << 20
#: Refuse reference files larger than this, and archives whose members add up to more.
MAX_FILE_BYTES = 1 << 30
#: Refuse archives with more members than this.
MAX_MEMBERS = 100_000
#: The models a step may hold (``non``: only the first step, and only when optional).
MODEL_ROLES = ("classifier", "regressor", "non", "fallback", "fallback_regressor")
#: The roles a step may lack.
OPTIONAL_ROLES = ("non", "fallback", "fallback_regressor")
#: The (F,) vectors stored per step.
VECTORS = ("fill", "coverage", "typical_optimal", "typical_suboptimal")


class ReferenceFileError(ValueError):
    """The file is not a reference this weightwatch can use; the message says why."""


def write_reference(info: Mapping[str, Any], steps: Sequence[StepModels], path: str | Path) -> Path:
    """Write a reference's JSON header ``info`` and its ``steps`` to ``path`` (see the module doc); returns it.

    Missing parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    entries = []
    for s in steps:
        prefix = f"step{s.step}"
        entry = {"step": s.step, "runs": s.runs, "cv": s.cv}
        for name in VECTORS:
            key = f"{prefix}/{name}"
            arrays[key] = np.asarray(getattr(s, name), dtype=np.float64)
            entry[name] = key
        for role in MODEL_ROLES:
            model: Model | None = getattr(s, role)
            if model is None:
                continue
            keys = {}
            for name, arr in model.arrays.items():
                keys[name] = f"{prefix}/{role}/{name}"
                arrays[keys[name]] = arr
            entry[role] = {**{k: v for k, v in model.meta.items() if k != "arrays"}, "arrays": keys}
        entries.append(entry)
    doc = {**info, "format": FORMAT, "version": VERSION, "steps": entries}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:  # complete or not at all: an error or Ctrl-C leaves no partial file
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(JSON_MEMBER, json.dumps(json_safe(doc), indent=1, allow_nan=False))
            for key, arr in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
                zf.writestr(f"{ARRAY_PREFIX}{key}.npy", buf.getvalue())
        interrupts.raise_if_interrupted()  # a Ctrl-C swallowed on the way still keeps the old file
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path



def _read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> np.ndarray:
    """A ``.npy`` member read without numpy's loader: the header is parsed first, and only a
    numeric array whose declared size is exactly the member's is read (never a pickle)."""
    with zf.open(info) as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version != (1, 0) and version != (2, 0):
                raise ValueError(f"npy format version {version}")
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
        except ValueError as exc:
            raise ReferenceFileError(f"{where} is not a NumPy array file ({exc})") from None
        if dtype.hasobject or dtype.kind not in "biuf":
            raise ReferenceFileError(f"{where} has dtype {dtype}, expected numbers (objects would need pickle: "
                                     "refused, nothing was run)")
        count = math.prod(shape)
        size = count * dtype.itemsize
        if size != info.file_size - fh.tell():
            raise ReferenceFileError(f"{where} declares shape {shape} ({size} bytes) but holds "
                                     f"{info.file_size - fh.tell()} bytes")
        data = fh.read(size)
    return np.frombuffer(data, dtype=dtype, count=count).reshape(shape, order="F" if fortran else "C").copy()


def _check_header(doc: Any, path: Path) -> None:
    """The JSON header's structure, before anything is read from it."""
    def bad(what: str) -> ReferenceFileError:
        return ReferenceFileError(f"{path}: malformed reference ({what})")

    if not isinstance(doc, dict):
        raise bad(f"{JSON_MEMBER} holds {type(doc).__name__}, not an object")
    check_compatible(doc, path)
    if not isinstance(doc.get("label"), dict) or not isinstance(doc["label"].get("metric"), str):
        raise bad("label.metric must be a string")
    for key in ("population", "baseline"):
        if not isinstance(doc.get(key, {}), dict):
            raise bad(f"{key} must be an object")
    steps = doc.get("steps")
    if not isinstance(steps, list) or not steps or not all(isinstance(e, dict) for e in steps):
        raise bad("steps must be a non-empty list of objects")


def read_reference(path: str | Path) -> tuple[dict[str, Any], list[StepModels]]:
    """(JSON header, models per step) of a reference file; raises :class:`ReferenceFileError`
    with the reason when it cannot be used."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ReferenceFileError(f"cannot read the reference {str(path)!r}: {exc.strerror or exc}") from None
    try:
        if size > MAX_FILE_BYTES:
            raise ReferenceFileError(f"{str(path)!r} is {size} bytes, larger than any reference "
                                     f"({MAX_FILE_BYTES} at most): refused")
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ReferenceFileError(f"{str(path)!r} is not a weightwatch reference (not a ZIP archive: {exc})") from None
    with zf:
        try:
            return _read_open(zf, path)
        except ReferenceFileError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError) as exc:
            raise ReferenceFileError(f"{str(path)!r} is damaged ({type(exc).__name__}: {exc}); fit it again or "
                                     "copy it anew") from None


def _read_open(zf: zipfile.ZipFile, path: Path) -> tuple[dict[str, Any], list[StepModels]]:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ReferenceFileError(f"{path}: {len(infos)} members, more than a reference has: refused")
    members = {i.filename: i for i in infos}
    for info in members.values():
        if info.file_size > MAX_MEMBER_BYTES:
            raise ReferenceFileError(f"{path}: member {info.filename!r} is too large ({info.file_size} bytes)")
        if info.filename != JSON_MEMBER and not (info.filename.startswith(ARRAY_PREFIX)
                                                 and info.filename.endswith(".npy")):
            raise ReferenceFileError(f"{path}: unexpected member {info.filename!r} (a reference holds only "
                                     f"{JSON_MEMBER} and {ARRAY_PREFIX}*.npy): refused, nothing was run")
    if sum(i.file_size for i in infos) > MAX_FILE_BYTES:
        raise ReferenceFileError(f"{path}: its members add up to more than {MAX_FILE_BYTES} bytes: refused")
    if JSON_MEMBER not in members:
        raise ReferenceFileError(f"{str(path)!r} is not a weightwatch reference (no {JSON_MEMBER})")
    try:
        doc = loads_strict(zf.read(JSON_MEMBER).decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError too
        raise ReferenceFileError(f"{path}: {JSON_MEMBER} is not valid JSON: {exc}") from None
    _check_header(doc, path)

    def array(key: str) -> np.ndarray:
        member = f"{ARRAY_PREFIX}{key}.npy" if isinstance(key, str) else None
        if member not in members:
            raise ReferenceFileError(f"{path}: array {key!r} is missing")
        return _read_npy(zf, members[member], f"{path}: array {key!r}")

    steps = []
    try:
        n_features = len(FEATURE_NAMES) + len(hparam_names(doc))
        for entry in doc["steps"]:
            where = f"{path}: step {entry['step']}"
            vectors = {}
            for name in VECTORS:
                vectors[name] = array(entry[name]).astype(np.float64)
                if vectors[name].shape != (n_features,):
                    raise ReferenceFileError(f"{where}: {name} has shape {vectors[name].shape}")
            models = {}
            for role in MODEL_ROLES:
                if role in OPTIONAL_ROLES and role not in entry:
                    continue
                meta = dict(entry[role])
                arrays = {k: array(v) for k, v in meta.pop("arrays").items()}
                for k in ("roots", "left", "right", "feature"):
                    if k in arrays:
                        arrays[k] = arrays[k].astype(np.int64)
                for k in ("threshold", "value", "center", "scale", "coef"):
                    if k in arrays:
                        arrays[k] = arrays[k].astype(np.float64)
                models[role] = checked_model(meta, arrays, n_features, f"{where} {role}")
            steps.append(StepModels(step=int(entry["step"]), runs=int(entry["runs"]), cv=dict(entry["cv"]),
                                    **models, **vectors))
    except ReferenceFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReferenceFileError(f"{path}: malformed reference ({type(exc).__name__}: {exc})") from None
    info = {k: v for k, v in doc.items() if k != "steps"}
    return info, steps


def checked_model(meta: dict[str, Any], arrays: Mapping[str, np.ndarray], n_features: int, where: str) -> Model:
    """An exported model read from a file, validated (see the module doc)."""
    def bad(msg: str) -> ReferenceFileError:
        return ReferenceFileError(f"{where}: {msg}")

    if meta.get("link") not in ("identity", "logistic"):
        raise bad(f"unknown link {meta.get('link')!r}")
    for key, arr in arrays.items():
        if not np.all(np.isfinite(arr)):
            raise bad(f"{key} holds NaN or infinite values")
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


def check_compatible(doc: Mapping[str, Any], path: str | Path = "reference") -> None:
    """Raise :class:`ReferenceFileError` unless ``doc`` is a reference of this version and feature set."""
    if doc.get("format") != FORMAT:
        raise ReferenceFileError(f"{str(path)!r} is not a weightwatch reference (format {doc.get('format')!r})")
    version = doc.get("version")
    if version != VERSION:
        newer = isinstance(version, int) and version > VERSION
        raise ReferenceFileError(
            f"{str(path)!r} is a reference of format version {version!r}; this weightwatch reads version {VERSION}. "
            + ("Upgrade weightwatch to use it." if newer else "Fit it again with `weightwatch fit`.")
        )
    feats = doc.get("features")
    feats = feats if isinstance(feats, dict) else {}
    names = feats.get("names")
    if not isinstance(names, list) or feats.get("set") != FEATURE_SET or feats.get("version") != FEATURE_VERSION \
            or names != list(FEATURE_NAMES):
        raise ReferenceFileError(
            f"{str(path)!r} was fitted on features {feats.get('set')!r} version {feats.get('version')!r}; "
            f"this weightwatch computes {FEATURE_SET!r} version {FEATURE_VERSION}. "
            "Fit the reference again with `weightwatch fit` (same runs, this version)."
        )


def hparam_names(doc: Mapping[str, Any]) -> list[str]:
    """The hyperparameter columns a reference appends to FEATURE_NAMES (``features.hparams``)."""
    return [HparamColumn.from_json(c).name for c in doc.get("features", {}).get("hparams", [])]


def reference_info(label: Mapping[str, Any], population: Mapping[str, Any],
                   baseline: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON header of a new reference (the ``steps`` entries are added by :meth:`Reference.save`)."""
    return {
        "format": FORMAT, "version": VERSION, "weightwatch": __version__, "created": time.time(),
        "features": {"set": FEATURE_SET, "version": FEATURE_VERSION, "names": list(FEATURE_NAMES)},
        "label": dict(label), "population": dict(population), "baseline": dict(baseline or {}),
    }


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
