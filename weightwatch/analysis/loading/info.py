"""Read ``weightwatch.json`` (a run's architecture, layers and hyperparameters) defensively.

The file comes from the user's disk and may be damaged, hand-edited or
hostile: it is read as strict JSON (no NaN / Infinity, bounded size and
depth) and every field the analysis uses is checked for its type. What is
wrong is dropped with a message naming it; the run itself is still loaded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .files import RunFiles, run_files
from .find import RUN_INFO_FILE

#: A weightwatch.json larger than this is not one (the integrations write a few kB).
MAX_INFO_BYTES = 8 << 20
#: Tensors of more dimensions than this are not layers.
MAX_SHAPE_DIMS = 8


def loads_strict(text: str | bytes) -> Any:
    """JSON as the standard says: NaN, Infinity and -Infinity refused, nesting too deep for the
    parser refused; raises ValueError with the reason.

    >>> loads_strict('{"a": [1, 2.5]}')
    {'a': [1, 2.5]}
    >>> loads_strict('{"a": NaN}')
    Traceback (most recent call last):
    ...
    ValueError: NaN is not valid JSON
    """
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    def finite(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise ValueError(f"{literal} is out of range for a JSON number")
        return value

    try:
        return json.loads(text, parse_constant=refuse, parse_float=finite)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _layer_problem(layer: Any) -> str | None:
    """Why ``layer`` is not a layer entry (None when it is one)."""
    if not isinstance(layer, dict):
        return f"is {type(layer).__name__}, expected an object"
    for key in ("name", "kind", "role"):
        if not isinstance(layer.get(key), str):
            return f"{key} is {layer.get(key)!r}, expected a string"
    shape = layer.get("shape")
    if not (isinstance(shape, list) and 1 <= len(shape) <= MAX_SHAPE_DIMS
            and all(_is_int(d) and d > 0 for d in shape)):
        return f"shape is {shape!r}, expected a list of 1 to {MAX_SHAPE_DIMS} positive integers"
    if "heads" in layer and not (_is_int(layer["heads"]) and layer["heads"] > 0):
        return f"heads is {layer['heads']!r}, expected a positive integer"
    if "has_bias" in layer and not isinstance(layer["has_bias"], bool):
        return f"has_bias is {layer['has_bias']!r}, expected true or false"
    return None


def _hparam_ok(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value))


def checked_info(doc: Any) -> tuple[dict[str, Any], list[str]]:
    """(``doc`` with every unusable field dropped, one message per field dropped)."""
    if not isinstance(doc, dict):
        return {}, [f"{RUN_INFO_FILE} holds {type(doc).__name__}, not an object; architecture and layers unknown"]
    info = dict(doc)
    problems = []
    layers = info.get("layers")
    if layers is not None:
        why = None if isinstance(layers, list) else f"layers is {type(layers).__name__}, expected a list"
        for i, layer in enumerate(layers if why is None else []):
            if (bad := _layer_problem(layer)) is not None:
                why = f"layers[{i}] {bad}"
                break
        if why is not None:
            del info["layers"]
            info.pop("architecture", None)  # it names the layers
            problems.append(f"{RUN_INFO_FILE}: {why}; architecture and layers unknown")
    if "architecture" in info and not isinstance(info["architecture"], str):
        problems.append(f"{RUN_INFO_FILE}: architecture is {info.pop('architecture')!r}, expected a string; ignored")
    hparams = info.get("hparams")
    if hparams is not None:
        if not isinstance(hparams, dict):
            problems.append(f"{RUN_INFO_FILE}: hparams is {type(info.pop('hparams')).__name__}, expected an "
                            "object; ignored")
        else:
            bad = sorted(k for k, v in hparams.items() if not _hparam_ok(v))
            if bad:
                info["hparams"] = {k: v for k, v in hparams.items() if k not in bad}
                problems.append(f"{RUN_INFO_FILE}: hparams {', '.join(map(repr, bad))} are not a string, number "
                                "or boolean; ignored")
    return info, problems


def read_info(files: RunFiles | Path) -> tuple[dict[str, Any], list[str]]:
    """The run's ``weightwatch.json`` checked (:func:`checked_info`); ({}, []) when there is none.

    ``files``: the run directory, or its :mod:`.files` reader.
    """
    files = run_files(files) if isinstance(files, Path) else files
    try:
        data = files.read_small(RUN_INFO_FILE, MAX_INFO_BYTES + 1)
        if data is None:
            return {}, []
        if len(data) > MAX_INFO_BYTES:
            raise ValueError(f"{MAX_INFO_BYTES}+ bytes, more than the {MAX_INFO_BYTES} a run's info can be")
        doc = loads_strict(data.decode("utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return {}, [f"{RUN_INFO_FILE} is unreadable ({reason}); architecture and layers unknown"]
    return checked_info(doc)
