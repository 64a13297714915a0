"""The repeated cross-validation behind ``fit``'s "use a richer family than the metric so far", against
sklearn by hand.

Two synthetic populations of 60 runs with a weakly informative metric so far:

- a *lucky* family: one indicator column per pair of runs. The pairs are built from the folds of the
  first split (``StratifiedKFold(5, shuffle=True, random_state=0)``): a pair of opposite labels always
  sits inside one fold there (so it never misleads the first split's models), a pair of equal labels
  always across two folds (so the twin in the training folds gives the answer). On any other fold
  split the opposite pairs fall across folds too and predict the wrong label: the family wins the
  first split by construction and loses on fresh folds;
- a *truly better* family: a column that is the label plus noise, better than the metric on any split.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from weightwatch.analysis.classification.candidates import classifiers
from weightwatch.analysis.classification.evaluation import CV_REPEATS, MARGIN, auc_gain, evaluate_step
from weightwatch.analysis.classification.fit import fit_step
from weightwatch.cli import main

N, FAMILIES = 60, ("metric", "hparams")
HPARAM_CANDIDATES = ("logistic", "forest")  # what evaluation cross-validates for the hparams family


def folds_of(y: np.ndarray, random_state: int) -> np.ndarray:
    """(n,) the fold of each run in the stratified 5-fold split of ``random_state``."""
    fold = np.empty(y.size, dtype=int)
    for k, (_, test) in enumerate(StratifiedKFold(5, shuffle=True, random_state=random_state).split(y[:, None], y)):
        fold[test] = k
    return fold


def labels_and_metric(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(y (N,) bool, half optimal; the metric so far (N,): the label shifted 0.6 sd plus noise)."""
    rng = np.random.default_rng(seed)
    y = np.zeros(N, dtype=bool)
    y[rng.permutation(N)[: N // 2]] = True
    return y, y * 0.6 + rng.normal(size=N)


def lucky_columns(y: np.ndarray, opposite_per_fold: int = 3) -> np.ndarray:
    """(N, pairs) 0/1: the lucky family of the module doc."""
    fold = folds_of(y, 0)
    pos = [list(np.flatnonzero(y & (fold == k))) for k in range(5)]
    neg = [list(np.flatnonzero(~y & (fold == k))) for k in range(5)]
    pairs = [(pos[k].pop(), neg[k].pop()) for k in range(5) for _ in range(opposite_per_fold)]
    for group in (pos, neg):
        flat = [i for k in range(5) for i in group[k]]  # by fold: the two halves pair folds 0-1 with 2-4
        pairs += list(zip(flat[: len(flat) // 2], flat[len(flat) // 2:]))
    x = np.zeros((N, len(pairs)))
    for j, (a, b) in enumerate(pairs):
        assert (fold[a] == fold[b]) == (y[a] != y[b])
        x[a, j] = x[b, j] = 1.0
    return x


def step_matrix(metric: np.ndarray, family: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(features (N, 1 + f), names): the metric so far and ``family`` as hyperparameter columns."""
    return np.column_stack([metric, family]), ["curve/metric_last"] + [f"hparam/h{j:02d}" for j in
                                                                       range(family.shape[1])]


def oof_auc_by_hand(x: np.ndarray, y: np.ndarray, random_state: int) -> float:
    """The best out-of-fold AUC among the hparams family's candidates on the folds of ``random_state``."""
    best = -1.0
    for name in HPARAM_CANDIDATES:
        p = np.zeros(y.size)
        for train, test in StratifiedKFold(5, shuffle=True, random_state=random_state).split(x, y):
            model = clone(classifiers(random_state)[name]).fit(x[train], y[train])
            p[test] = model.predict_proba(x[test])[:, 1]
        best = max(best, roc_auc_score(y, p))
    return best


def test_a_family_lucky_on_the_first_split_is_rejected_by_the_repeats():
    y, metric = labels_and_metric()
    family = lucky_columns(y)
    x, names = step_matrix(metric, family)
    base_auc = roc_auc_score(y, metric)
    first_gain = oof_auc_by_hand(family, y, 0) - base_auc
    assert first_gain >= MARGIN  # the construction works: the first split is fooled ...
    once = evaluate_step(x, names, y, metric, cv=5, families=FAMILIES, cv_repeats=0)
    assert once.classifier_family == "hparams" and once.challenger["kept"]  # ... and so is the rule on it alone
    assert once.challenger["gain_over_metric"] == pytest.approx(first_gain)
    assert "gain_per_repeat" not in once.challenger

    choice = evaluate_step(x, names, y, metric, cv=5, families=FAMILIES, cv_repeats=4)
    c = choice.challenger
    want = [oof_auc_by_hand(family, y, r) - base_auc for r in (1, 2, 3, 4)]
    assert c["family"] == "hparams" and c["cv_repeats"] == 4 and len(c["repeat_classifiers"]) == 4
    assert c["gain_per_repeat"] == pytest.approx(want)
    assert c["gain_over_metric_repeated"] == pytest.approx(np.mean(want))
    assert max(want) < MARGIN  # on fresh folds the family is worse than the metric so far
    assert not c["kept"] and choice.classifier_family == "metric"
    assert c["gain_over_metric"] == once.challenger["gain_over_metric"]  # the first split's numbers stay


def test_a_truly_better_family_is_kept():
    y, metric = labels_and_metric(1)
    rng = np.random.default_rng(7)
    family = np.column_stack([y + rng.normal(scale=0.4, size=N), rng.normal(size=N)])
    x, names = step_matrix(metric, family)
    choice = evaluate_step(x, names, y, metric, cv=5, families=FAMILIES, cv_repeats=3)
    c = choice.challenger
    want = [oof_auc_by_hand(family, y, r) - roc_auc_score(y, metric) for r in (1, 2, 3)]
    assert c["gain_per_repeat"] == pytest.approx(want)
    assert min(want) > 0.1
    assert c["kept"] and choice.classifier_family == "hparams"
    assert 0 < c["gain_se_repeated"] < c["gain_over_metric_repeated"]


def test_the_standard_error_of_the_mean_gain_is_that_of_the_averaged_difference():
    """Over R scorings the bootstrap averages the R AUCs on each resample: for R identical rows it is the
    one-row answer; for R scorings it lies between the smallest and the largest one-row error."""
    rng = np.random.default_rng(3)
    y = rng.random(80) < 0.5
    base = y + rng.normal(size=80)
    rows = np.array([y + rng.normal(scale=s, size=80) for s in (0.5, 0.8, 1.2)])
    one = auc_gain(y, rows[0], base, random_state=2)
    assert auc_gain(y, np.vstack([rows[0]] * 3), base, random_state=2) == pytest.approx(one)
    gain, se = auc_gain(y, rows, base, random_state=2)
    each = [auc_gain(y, r, base, random_state=2) for r in rows]
    assert gain == pytest.approx(np.mean([roc_auc_score(y, r) for r in rows]) - roc_auc_score(y, base))
    assert min(s for _, s in each) <= se <= max(s for _, s in each)


def test_fit_step_records_the_repeats_in_its_cv_summary():
    y, metric = labels_and_metric()
    x, names = step_matrix(metric, lucky_columns(y))
    m = fit_step(0, x, y, metric, names=names, cv=5, families=FAMILIES, cv_repeats=2)
    c = m.cv["challenger"]
    assert c["cv_repeats"] == 2 and len(c["gain_per_repeat"]) == 2 and not c["kept"]
    assert m.cv["family"] == "metric" and m.cv["families"]["hparams"]["gain_over_metric"] == c["gain_over_metric"]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> Path:
    sys.path.insert(0, str(Path(__file__).parents[2] / "cli"))
    import tiny

    root = tmp_path_factory.mktemp("tiny") / "runs"
    tiny.population(root, 12)
    return root


@pytest.mark.parametrize("given, want", [([], CV_REPEATS), (["--cv-repeats", "0"], 0), (["--cv-repeats", "2"], 2)])
def test_the_cli_option_reaches_every_step(tiny_runs, tmp_path, monkeypatch, capsys, given, want):
    import weightwatch.analysis.classification.fit as fit_module

    seen = []
    real = fit_module.evaluate_step

    def spy(*args, **kwargs):
        seen.append(args[7] if len(args) > 7 else kwargs["cv_repeats"])
        return real(*args, **kwargs)

    monkeypatch.setattr(fit_module, "evaluate_step", spy)
    out = tmp_path / "r.ww"
    assert main(["fit", str(tiny_runs), "-o", str(out), "--cv", "2", "--no-baseline", "--json", *given]) == 0
    capsys.readouterr()
    assert seen and set(seen) == {want}
    from weightwatch.analysis import Reference

    assert Reference.load(out).info["population"]["cv_repeats"] == want


@pytest.mark.parametrize("bad", ["-1", "1.5", "many"])
def test_the_cli_refuses_a_bad_repeat_count(capsys, bad):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "R", "--cv-repeats", bad])
    assert exc.value.code == 2 and "--cv-repeats" in capsys.readouterr().err
