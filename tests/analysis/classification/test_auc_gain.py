"""The standard error behind the one-standard-error rule of ``fit``'s choice, against DeLong's.

DeLong, DeLong & Clarke-Pearson (1988) give the variance of the difference of two
correlated ROC AUCs on the same cases in closed form (from the placement values);
the bootstrap of :func:`auc_gain` must agree with it, and its gain must be the
plain difference of sklearn's AUCs.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from weightwatch.analysis.classification.evaluation import auc_gain


def delong_se(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """DeLong's standard error of AUC(a) - AUC(b), by hand with numpy (ties count one half)."""
    pos, neg = y.astype(bool), ~y.astype(bool)

    def placements(s):
        psi = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        return psi.mean(axis=1), psi.mean(axis=0)  # V10 (per positive), V01 (per negative)

    (v10a, v01a), (v10b, v01b) = placements(a), placements(b)
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    var = ((s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / pos.sum()
           + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / neg.sum())
    return float(np.sqrt(var))


@pytest.mark.parametrize("n, noise", [(60, 1.0), (200, 0.5), (200, 2.0)])
def test_the_bootstrap_standard_error_matches_delong(n, noise):
    rng = np.random.default_rng(n)
    y = rng.random(n) < 0.5
    signal = y + rng.normal(scale=1.0, size=n)
    a = signal + rng.normal(scale=noise * 0.3, size=n)  # two scores sharing the signal: correlated AUCs
    b = signal + rng.normal(scale=noise, size=n)
    gain, se = auc_gain(y, a, b, random_state=1, resamples=2000)
    assert gain == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b), abs=1e-12)
    assert se == pytest.approx(delong_se(y, a, b), rel=0.15)


def test_a_score_against_itself_has_no_gain_and_no_spread():
    rng = np.random.default_rng(0)
    y = rng.random(50) < 0.4
    s = rng.normal(size=50)
    assert auc_gain(y, s, s) == (0.0, 0.0)
