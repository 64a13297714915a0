"""The models a reference holds, as plain arrays, and how they predict (no scikit-learn needed).

A model (see :mod:`.reffile` for how it is stored) is linear or a sum of trees:

- linear: ``raw = b + sum_j coef_j * (x_j - center_j) / scale_j``;
- trees: ``raw = b + w * sum_t value[leaf_t(x)]``, each tree walked from its
  root, a node ``i`` with ``left[i] >= 0`` sending ``x`` to ``left[i]`` when
  ``float32(x[feature[i]]) <= threshold[i]``, else to ``right[i]``;

and its ``link`` turns ``raw`` into the output (identity or logistic), clipped
to ``clip`` when present. :class:`StepModels` are the two models of one step.

>>> m = Model({"kind": "linear", "link": "identity", "intercept": 1.0},
...           {"center": np.zeros(2), "scale": np.ones(2), "coef": np.array([2.0, 0.0])})
>>> m.predict(np.array([[1.0, 5.0]])).tolist()
[3.0]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


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

    def columns(self, n: int) -> np.ndarray:
        """(n,) bool: the columns this model reads (a nonzero coefficient, or a split of some tree)."""
        used = np.zeros(n, dtype=bool)
        a = self.arrays
        if self.kind == "linear":
            used[np.flatnonzero(a["coef"] != 0)] = True
        else:
            used[a["feature"][a["left"] >= 0]] = True
        return used

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = _link(self.raw(x)[0], self.meta["link"])
        clip = self.meta.get("clip")
        return np.clip(out, clip[0], clip[1]) if clip else out


@dataclass
class StepModels:
    """The models fitted at one step: P(optimal), the predicted metric, how to fill gaps, and at
    the first step optionally ``non``: P(the run stays at chance).

    ``fallback`` / ``fallback_regressor`` (optional): the best models of this step that read the
    weights only, kept when the chosen ones read more (the curves, the hyperparameters), for a
    run that lacks what the chosen ones need (see :meth:`lacks`).
    """

    step: int
    runs: int
    classifier: Model
    regressor: Model
    fill: np.ndarray
    coverage: np.ndarray
    typical_optimal: np.ndarray
    typical_suboptimal: np.ndarray
    cv: dict[str, Any] = field(default_factory=dict)
    non: Model | None = None
    fallback: Model | None = None
    fallback_regressor: Model | None = None

    def lacks(self, model: Model, x: np.ndarray) -> np.ndarray:
        """Indices of the columns ``model`` reads that every training run had (coverage 1) and the
        row ``x`` (F,) lacks (not finite): a filled value there is a guess the model never saw."""
        x = np.asarray(x, dtype=np.float64).ravel()
        return np.flatnonzero(model.columns(x.size) & (self.coverage >= 1.0) & ~np.isfinite(x))

    def filled(self, x: np.ndarray) -> np.ndarray:
        x = np.array(x, dtype=np.float64, ndmin=2)
        bad = ~np.isfinite(x)
        x[bad] = np.broadcast_to(self.fill, x.shape)[bad]
        return x
