"""Features of the learning curves a run logged so far, and their extrapolation to the final step.

At a logged step k only the points at steps <= k are used, so a run judged
at k gets the same features as the same run stopped at k. With ``m`` the
metric the reference is fitted on (higher is better, e.g. ``val_accuracy``):

=======================  =========================================================
feature                  meaning (over the points logged at steps <= k)
=======================  =========================================================
``curve/metric_last``    the latest value of m (the "metric so far" baseline)
``curve/metric_best``    its best (largest) value so far
``curve/metric_mean``    its mean so far
``curve/metric_slope``   last minus previous value (per log; NaN with one point)
``curve/metric_curv``    second difference of the last three values
``curve/loss_last``      the latest training loss (``loss`` or ``train_loss``)
``curve/loss_slope``     its last minus previous value
``curve/val_loss_last``  the latest validation loss (``val_loss`` or ``eval_loss``)
``curve/gap_metric``     training counterpart of m minus m (``accuracy`` for
                         ``val_accuracy``): over-fitting shows as a growing gap
``curve/gap_loss``       validation loss minus training loss
``curve/extrap_*``       m extrapolated to the final step of the training
                         population (the ``horizon``) by three parametric curves,
                         least squares on the points so far (Domhan et al. 2015):
                         ``pow3`` c + a x^-alpha, ``exp3`` c + a exp(-b x / H),
                         ``loglin`` a + b log x (x = step + 1, H = horizon + 1)
=======================  =========================================================

The shape parameters alpha and b are chosen on a fixed grid (the rest is a
linear fit, so it never fails to converge); with fewer than three points
they are fixed (alpha = 0.5, b = 1), with one point every extrapolation is
the value itself. Extrapolations are clipped to the observed range widened
by twice its span.
"""

from __future__ import annotations

import numpy as np

from ..loading.metric import find_metric
from ..loading.run import Run

EXTRAPOLATORS = ("pow3", "exp3", "loglin")
CURVE_NAMES: tuple[str, ...] = (
    "curve/metric_last", "curve/metric_best", "curve/metric_mean", "curve/metric_slope", "curve/metric_curv",
    "curve/loss_last", "curve/loss_slope", "curve/val_loss_last", "curve/gap_metric", "curve/gap_loss",
    *(f"curve/extrap_{e}" for e in EXTRAPOLATORS),
)
METRIC_SO_FAR = "curve/metric_last"
TRAIN_LOSS = ("loss", "train_loss")
VAL_LOSS = ("val_loss", "eval_loss")

_ALPHAS = np.array([0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
_RATES = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 16.0])


def _series(run: Run, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    for name in names:
        tag = find_metric(run, name)
        if tag is not None and run.scalars[tag].values.size:
            s = run.scalars[tag]
            return np.asarray(s.steps, dtype=np.int64), np.asarray(s.values, dtype=np.float64)
    return None


def _linear_fit(basis: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Least squares of y (m,) on [1, basis] (m,): (coefficients (2,), residual sum of squares)."""
    design = np.column_stack([np.ones_like(basis), basis])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return coef, float(np.sum((design @ coef - y) ** 2))


def extrapolate(x: np.ndarray, y: np.ndarray, horizon: float) -> dict[str, float]:
    """The three extrapolations (see the module doc) of points (x (m,) > 0, y (m,)) to x = ``horizon``.

    >>> x = np.arange(1.0, 6.0); y = 0.9 - 0.5 * x ** -1.0
    >>> round(extrapolate(x, y, 10.0)["pow3"], 6)
    0.85
    """
    if y.size == 0:
        return {e: float("nan") for e in EXTRAPOLATORS}
    if y.size == 1:
        return {e: float(y[0]) for e in EXTRAPOLATORS}
    out = {}
    for name, grid, basis in (("pow3", _ALPHAS if y.size >= 3 else np.array([0.5]), lambda s, v: v ** -s),
                              ("exp3", _RATES if y.size >= 3 else np.array([1.0]),
                               lambda s, v: np.exp(-s * v / horizon))):
        best = None
        for s in grid:
            coef, sse = _linear_fit(basis(s, x), y)
            if best is None or sse < best[0] - 1e-15:
                best = (sse, s, coef)
        _, s, coef = best
        out[name] = float(coef[0] + coef[1] * basis(s, np.float64(horizon)))
    coef, _ = _linear_fit(np.log(x), y)
    out["loglin"] = float(coef[0] + coef[1] * np.log(horizon))
    span = float(np.ptp(y))
    lo, hi = float(y.min()) - 2 * span, float(y.max()) + 2 * span
    return {k: float(np.clip(v, lo, hi)) for k, v in out.items()}


def train_counterpart(tag: str) -> str | None:
    """The training-set tag of a validation metric: ``val_accuracy`` -> ``accuracy`` (None if not ``val_``).

    >>> train_counterpart("val_accuracy"), train_counterpart("eval/val_acc"), train_counterpart("accuracy")
    ('accuracy', 'eval/acc', None)
    """
    head, _, last = tag.rpartition("/")
    if not last.startswith("val_"):
        return None
    return f"{head}/{last[4:]}" if head else last[4:]


def _upto(series: tuple[np.ndarray, np.ndarray] | None, step: int) -> np.ndarray:
    if series is None:
        return np.zeros(0)
    steps, values = series
    return values[: int(np.searchsorted(steps, step, side="right"))]


def _last(v: np.ndarray, back: int = 0) -> float:
    return float(v[-1 - back]) if v.size > back else float("nan")


def curve_features(run: Run, steps: np.ndarray, metric: str | None, horizon: int | None) -> np.ndarray:
    """(n, len(CURVE_NAMES)): the curve features at each of ``steps`` (n,); NaN where a curve is missing.

    ``metric``: the tag the reference is fitted on (None: the first of val_accuracy, ... found);
    ``horizon``: the final step to extrapolate to (None: the run's own last step).
    """
    out = np.full((steps.size, len(CURVE_NAMES)), np.nan)
    tag = find_metric(run, metric)
    m = _series(run, (tag,)) if tag is not None else None
    train_m = _series(run, (train_counterpart(tag),)) if tag and train_counterpart(tag) else None
    loss, val_loss = _series(run, TRAIN_LOSS), _series(run, VAL_LOSS)
    if horizon is None:
        horizon = int(m[0][-1]) if m is not None else int(steps[-1]) if steps.size else 0
    for r, step in enumerate(steps.tolist()):
        y = _upto(m, step)
        lo, vlo, tr = _upto(loss, step), _upto(val_loss, step), _upto(train_m, step)
        row = [_last(y), float(y.max()) if y.size else np.nan, float(y.mean()) if y.size else np.nan,
               _last(y) - _last(y, 1), _last(y) - 2 * _last(y, 1) + _last(y, 2),
               _last(lo), _last(lo) - _last(lo, 1), _last(vlo), _last(tr) - _last(y), _last(vlo) - _last(lo)]
        x = m[0][: y.size].astype(np.float64) + 1.0 if m is not None else np.zeros(0)
        ext = extrapolate(x, y, float(max(horizon, step)) + 1.0)
        out[r] = row + [ext[e] for e in EXTRAPOLATORS]
    out[~np.isfinite(out)] = np.nan
    return out
