"""Feature families: which columns each candidate verdict may use, and the baselines beside them.

``fit`` cross-validates, at every step, a model on each family alone and on
all of them combined, and the reference keeps per step the one that
validates best. The families (column names as in :mod:`.features` and
:mod:`.hparams`):

=================  ================================================================
family             columns
=================  ================================================================
``metric``         ``curve/metric_last``: the metric so far (linear models only)
``curve``          the learning-curve features ``curve/*`` (not the extrapolations)
``extrapolation``  ``curve/extrap_*`` (Domhan et al. 2015; linear models only)
``hparams``        ``hparam/*``: the hyperparameters that vary
``no_weights``     curve + extrapolation + hparams: everything but the weights
``tensor``         per-tensor statistics of kernel and bias, histogram shape
                   (Unterthiner et al. 2020), with their changes
``neurons``        node strengths and their distribution over the neurons
                   (Scabini & Bruno 2023), with their changes
``updates``        ``*/u_*``: how far each layer moved since the previous log
``weights``        tensor + neurons + updates + ``arch/*``: everything from the weights
``combined``       every column
=================  ================================================================

>>> masks = family_masks(["curve/metric_last", "first/w_mean", "first/s_q50:delta", "hparam/lr"])
>>> {f: m.tolist() for f, m in masks.items() if f in ("metric", "tensor", "neurons", "no_weights")}
{'metric': [True, False, False, False], 'no_weights': [True, False, False, True], 'tensor': [False, True, False, False], 'neurons': [False, False, True, False]}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .curves import METRIC_SO_FAR
from .hparams import PREFIX as HPARAM

FAMILIES = ("metric", "curve", "extrapolation", "hparams", "no_weights", "tensor", "neurons", "updates",
            "weights", "combined")
#: The families whose columns come from the weights (the others never look at them).
WEIGHT_FAMILIES = ("tensor", "neurons", "updates", "weights", "combined")
#: The families that read nothing but the weights: what any watched run of the family logs
#: (a reference keeps the best of them as its fallback where the chosen model reads more).
WEIGHTS_ONLY = ("tensor", "neurons", "updates", "weights")
#: Families of a handful of monotone columns: linear models only.
LINEAR_ONLY = ("metric", "extrapolation")


def _stat(name: str) -> str:
    """The statistic of a slot column: ``first/w_mean:delta`` -> ``w_mean``."""
    return name.split(":")[0].rsplit("/", 1)[-1]


def family_of(name: str) -> str:
    """The smallest family holding column ``name``."""
    if name == METRIC_SO_FAR:
        return "metric"
    if name.startswith("curve/extrap_"):
        return "extrapolation"
    if name.startswith("curve/"):
        return "curve"
    if name.startswith(HPARAM):
        return "hparams"
    if name.startswith("arch/"):
        return "weights"
    stat = _stat(name)
    if stat.startswith("u_"):
        return "updates"
    if stat.startswith("s_"):
        return "neurons"
    return "tensor"


def family_masks(names: Sequence[str]) -> dict[str, np.ndarray]:
    """Family -> (len(names),) bool: the columns it uses, in :data:`FAMILIES` order."""
    own = np.array([family_of(n) for n in names])
    weights = np.isin(own, ("tensor", "neurons", "updates", "weights"))
    no_weights = np.isin(own, ("metric", "curve", "extrapolation", "hparams"))
    return {
        "metric": own == "metric",
        "curve": np.isin(own, ("metric", "curve")),
        "extrapolation": own == "extrapolation",
        "hparams": own == "hparams",
        "no_weights": no_weights,
        "tensor": own == "tensor",
        "neurons": own == "neurons",
        "updates": own == "updates",
        "weights": weights,
        "combined": np.ones(len(names), dtype=bool),
    }
