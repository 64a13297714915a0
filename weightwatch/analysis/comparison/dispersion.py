"""The seed paper's central claim, as a test: are good runs' weights more alike than bad runs'?

For each family and layer role (and ``all``), every high and low run is a
point in feature space: the mean and std of the role's weights and, for roles
with nodes, their mean node strength (:mod:`.final`), each feature
standardised over the high and low runs together. A group's *dispersion* is
the mean Euclidean distance of its runs to their centroid.

- ratio = dispersion(high) / dispersion(low): below 1, the high runs are tighter;
- p-value: one-sided permutation test of "high is tighter" (scipy's
  ``permutation_test``): the share of relabellings of the same runs (group
  sizes kept) whose ratio is at most the observed one. Exact (every
  relabelling) when there are at most ``permutations`` of them, else
  ``(1 + hits) / (1 + permutations)`` over random ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .final import Pooled, role_final
from .groups import Grouping

PERMUTATIONS = 2000
MIN_RUNS = 2
FEATURES = ("mean", "std", "strength")


@dataclass
class Dispersion:
    """The test for one family and role.

    Attributes:
        features: the feature names used (strength only for roles with nodes).
        high / low: dispersion of each group (NaN when not computed).
        ratio: high / low; p_value: see the module doc.
        note: why it was not computed, or empty.
    """

    family: str
    role: str
    n_high: int
    n_low: int
    features: tuple[str, ...] = ()
    high: float = math.nan
    low: float = math.nan
    ratio: float = math.nan
    p_value: float = math.nan
    note: str = ""

    @property
    def reading(self) -> str:
        if self.note:
            return self.note
        if self.p_value < 0.05 and self.ratio < 1:
            return "high runs tighter"
        if self.ratio > 1 and self.p_value > 0.95:
            return "high runs more spread"
        return "no clear difference"

    def as_dict(self) -> dict[str, object]:
        return {"family": self.family, "role": self.role, "n_high": self.n_high, "n_low": self.n_low,
                "features": list(self.features), "dispersion_high": self.high, "dispersion_low": self.low,
                "ratio": self.ratio, "p_value": self.p_value, "reading": self.reading}


def spread(points: np.ndarray) -> float:
    """Mean Euclidean distance of the rows of ``points`` (n, d) to their mean.

    >>> spread(np.array([[0.0, 0.0], [2.0, 0.0]]))
    1.0
    """
    return float(np.linalg.norm(points - points.mean(axis=0), axis=1).mean())


def permutation_test(x: np.ndarray, is_high: np.ndarray, permutations: int = PERMUTATIONS,
                     seed: int = 0) -> tuple[float, float, float, float]:
    """(dispersion high, dispersion low, ratio, one-sided p) for rows ``x`` (n, d) labelled ``is_high`` (n,).

    scipy's :func:`~scipy.stats.permutation_test` over the rows' labels (group
    sizes kept), alternative "less": exact when there are at most
    ``permutations`` relabellings, else ``(1 + hits) / (1 + permutations)``
    over random ones drawn from ``seed``. The smallest p it can give is
    therefore 1 / relabellings (exact) or 1 / (1 + permutations).
    """
    from scipy.stats import permutation_test as scipy_permutation_test

    def ratio(high_rows: np.ndarray, low_rows: np.ndarray) -> float:
        lo = spread(x[low_rows])
        return spread(x[high_rows]) / lo if lo > 0 else math.inf

    # the samples are row indices: scipy permutes them, the statistic reads the rows
    rows = np.arange(is_high.size)
    high, low = rows[is_high], rows[~is_high]
    result = scipy_permutation_test((high, low), ratio, permutation_type="independent", vectorized=False,
                                    n_resamples=permutations, alternative="less", rng=np.random.default_rng(seed))
    hi, lo = spread(x[high]), spread(x[low])
    return hi, lo, float(result.statistic), float(result.pvalue)


def _features(stats: Pooled, names: Sequence[str]) -> list[float]:
    return [getattr(stats, name) for name in names]


def dispersion_tests(grouping: Grouping, permutations: int = PERMUTATIONS, seed: int = 0) -> list[Dispersion]:
    """One :class:`Dispersion` per family and role, for families with high and low runs."""
    out = []
    for family in grouping.families:
        high = grouping.members(family, "high")
        low = grouping.members(family, "low")
        if len(high) < MIN_RUNS or len(low) < MIN_RUNS:
            out.append(Dispersion(family, "-", len(high), len(low),
                                  note=f"needs {MIN_RUNS}+ high and {MIN_RUNS}+ low runs"))
            continue
        roles: dict[str, None] = {}
        finals = {lab.name: role_final(lab.run) for lab in high + low}
        for stats in finals.values():
            roles.update(dict.fromkeys(stats))
        for role in roles:
            test = Dispersion(family, role, len(high), len(low))
            names = tuple(f for f in FEATURES if all(math.isfinite(getattr(finals[lab.name].get(role, Pooled(
                math.nan, math.nan)), f)) for lab in high + low))
            if not {"mean", "std"} <= set(names):
                test.note = "runs lack this role's weight statistics"
                out.append(test)
                continue
            x = np.array([_features(finals[lab.name][role], names) for lab in high + low])
            scale = x.std(axis=0)
            x = (x - x.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
            is_high = np.arange(len(x)) < len(high)
            test.features = names
            test.high, test.low, test.ratio, test.p_value = permutation_test(x, is_high, permutations, seed)
            out.append(test)
    return out
