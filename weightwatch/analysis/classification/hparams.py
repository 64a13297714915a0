"""The runs' hyperparameters as feature columns: numbers as they are, other values one-hot.

A reference stores its columns (``features.hparams`` in the file, see
:mod:`.reffile`), so a new run is encoded exactly as the training runs were;
a hyperparameter a run lacks is NaN (filled like any missing feature).

>>> from pathlib import Path
>>> from weightwatch.analysis.loading.run import Run
>>> runs = [Run("a", Path("a"), {"hparams": {"lr": 0.1, "opt": "adam", "seed": 1}}),
...         Run("b", Path("b"), {"hparams": {"lr": 0.01, "opt": "sgd", "seed": 1}})]
>>> cols = hparam_columns(runs)
>>> [c.name for c in cols]
['hparam/lr', 'hparam/opt=adam', 'hparam/opt=sgd']
>>> hparam_values(runs[1], cols).tolist()
[0.01, 0.0, 1.0]
>>> inits = [Run(i, Path(i), {"hparams": {"init": i}}) for i in ("0.1", "1.5", "zeros")]
>>> [c.name for c in hparam_columns(inits)], hparam_values(inits[2], hparam_columns(inits)).tolist()
(['hparam/init', 'hparam/init=zeros'], [nan, 1.0])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..loading.run import Run

PREFIX = "hparam/"


@dataclass(frozen=True)
class HparamColumn:
    """One column: hyperparameter ``key`` as a number (``level`` None) or its indicator of ``level``."""

    key: str
    level: str | None = None

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.key}" + (f"={self.level}" if self.level is not None else "")

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "level": self.level}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> HparamColumn:
        key, level = d["key"], d.get("level")
        if not isinstance(key, str) or not (level is None or isinstance(level, str)):
            raise TypeError(f"a hyperparameter column needs a string key and level, got {dict(d)!r}")
        return cls(key, level)


#: A hyperparameter with more distinct non-numeric values than this is not one-hot encoded.
MAX_LEVELS = 10


def _numeric(v: Any) -> bool:
    return v is None or isinstance(v, (int, float)) and not isinstance(v, bool)


def _as_number(v: Any) -> float:
    """``v`` as a float (numbers, and strings that read as one, e.g. ``"0.1"``), else NaN."""
    if _numeric(v):
        return float("nan") if v is None else float(v)
    try:
        return float(str(v))
    except ValueError:
        return float("nan")


def hparam_columns(runs: Sequence[Run]) -> list[HparamColumn]:
    """The columns of the hyperparameters that vary among ``runs`` (sorted by key)."""
    cols = []
    for key in sorted({k for run in runs for k in run.hparams}):
        vals = [run.hparams.get(key) for run in runs]
        if all(_numeric(v) for v in vals):
            finite = [float(v) for v in vals if v is not None]
            if finite and max(finite) > min(finite):
                cols.append(HparamColumn(key))
            continue
        # strings: a number column for the values that read as numbers ("0.1"), one-hot for the others
        numbers = {_as_number(v) for v in vals} - {float("nan")}
        numbers = {x for x in numbers if x == x}
        levels = sorted({str(v) for v in vals if _as_number(v) != _as_number(v)})
        if len(numbers) > 1:
            cols.append(HparamColumn(key))
        if 1 < len(levels) + bool(numbers) and len(levels) <= MAX_LEVELS:
            cols += [HparamColumn(key, level) for level in levels]
    return cols


def hparam_values(run: Run, columns: Sequence[HparamColumn]) -> np.ndarray:
    """(len(columns),) float64: ``run``'s hyperparameters in ``columns`` (NaN where it lacks one)."""
    hp = run.hparams
    out = np.full(len(columns), np.nan)
    for i, c in enumerate(columns):
        v = hp.get(c.key)
        if v is None:
            continue
        if c.level is None:
            out[i] = _as_number(v)
        else:
            out[i] = float(str(v) == c.level)
    return out


def hparams_matrix(runs: Sequence[Run]) -> tuple[np.ndarray, list[str]]:
    """The runs' hyperparameters that vary as numbers (n, h), and the column names."""
    cols = hparam_columns(runs)
    x = np.vstack([hparam_values(r, cols) for r in runs]) if cols else np.zeros((len(runs), 0))
    return x, [c.name[len(PREFIX):] for c in cols]
