"""The verdict from everything a run logged: families beside the baselines, --step as a run stopped
there, numeric drivers, early non detection, the curve and neuron features against numpy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import populations
from reference import in_strength
from reference_population import EPOCHS, shared
from weightwatch.analysis import Reference, format_fit
from weightwatch.analysis.classification.families import FAMILIES, WEIGHT_FAMILIES, WEIGHTS_ONLY
from weightwatch.analysis.classification.features import run_features
from weightwatch.analysis.loading.loader import load_runs
from weightwatch.cli import main


@pytest.fixture(scope="module")
def pop(tmp_path_factory):
    return shared(tmp_path_factory)


def test_fit_reports_every_family_beside_the_raw_baselines(pop):
    fit = pop.fit
    runs = load_runs(pop.train, progress=False, cache=False).runs
    values = np.array([r.scalars["val_accuracy"].values[-1] for r in runs])
    y = values >= fit.threshold
    for c in fit.curve:
        assert set(c["families"]) == set(FAMILIES)
        so_far = np.array([r.scalars["val_accuracy"].values[c["step"]] for r in runs])  # the raw curve, by hand
        assert c["baselines"]["metric_so_far"]["auc"] == pytest.approx(roc_auc_score(y, so_far))
        avail = {f: q["auc"] for f, q in c["families"].items() if q["available"]}
        assert all(0.0 <= a <= 1.0 for a in avail.values())
        nothing = max(a for f, a in avail.items() if f not in WEIGHT_FAMILIES) >= \
            max(a for f, a in avail.items() if f in WEIGHT_FAMILIES)
        assert c["weights_add_nothing"] == nothing
    text = format_fit(fit)
    for c in fit.curve:
        assert (f"step {c['step']}: the weights add nothing here" in text) == c["weights_add_nothing"]


def test_a_run_without_the_curve_is_judged_by_the_weights_only_fallback(pop):
    """Where the chosen family reads the curves, the step keeps the best weights-only family (by the fit
    table's AUC); a held-out run with its val_accuracy removed is judged by it, and says so."""
    ref = Reference.load(pop.reference)
    for c, m in zip(pop.fit.curve, ref.steps):
        assert c["family"] not in WEIGHTS_ONLY  # the metric so far wins on this population
        avail = [f for f in WEIGHTS_ONLY if c["families"][f]["available"]]
        best = max(avail, key=lambda f: c["families"][f]["auc"])
        assert c["fallback"]["family"] == best and m.cv["fallback"]["auc"] == c["families"][best]["auc"]
        read = [ref.names[j] for j in np.flatnonzero(m.fallback.columns(len(ref.names)))]
        assert read and not any(n.startswith(("curve/", "hparam/")) for n in read)
    run = load_runs(pop.held_out, progress=False, cache=False).runs[0]
    run.scalars = {k: v for k, v in run.scalars.items() if k != "val_accuracy"}
    for step in range(EPOCHS):
        pred = ref.classify(run, step)
        m = ref.model_for(step)
        x = ref.table(run).at(step)[1]
        assert pred.family == m.cv["fallback"]["family"] and pred.missing == ["curve/metric_last"]
        assert pred.p_optimal == pytest.approx(float(m.fallback.predict(m.filled(x))[0]))
        assert pred.group in ("optimal", "suboptimal") and any("weights-only model" in n for n in pred.notes)


def test_fit_json_has_the_same_table(pop, tmp_path, capsys):
    assert main(["fit", str(pop.train), "-o", str(tmp_path / "r.ww"), "--cv", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["families"] for c in out["curve"]] == [c["families"] for c in pop.fit.to_json()["curve"]]
    assert out["weights_add_nothing"] == [c["step"] for c in pop.fit.curve if c["weights_add_nothing"]]


def test_step_k_judges_a_run_as_if_it_had_stopped_there(pop, tmp_path):
    """A run trained for k + 1 epochs (same seed, deterministic) gets at its end what --step k gives the full run."""
    ref = Reference.load(pop.reference)
    populations.train_run(tmp_path / "full", "mlp", 0.3, 5, epochs=EPOCHS)
    full = load_runs(tmp_path / "full", progress=False, cache=False).runs[0]
    for k in (0, 1, EPOCHS - 2):
        populations.train_run(tmp_path / f"short{k}", "mlp", 0.3, 5, epochs=k + 1)
        short = load_runs(tmp_path / f"short{k}", progress=False, cache=False).runs[0]
        a, b = ref.classify(full, k), ref.classify(short)
        assert (a.step, a.p_optimal, a.predicted, a.p_non) == (b.step, b.p_optimal, b.predicted, b.p_non)
        assert [vars(d) for d in a.drivers] == [vars(d) for d in b.drivers]


def test_every_driver_in_json_has_a_number(pop, capsys):
    for step in range(EPOCHS):
        assert main(["classify", str(pop.held_out), "-r", str(pop.reference), "--json", "--step", str(step)]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out and all({"run", "p_optimal", "predicted", "drivers"} <= set(p) for p in out)
        for p in out:
            for d in p["drivers"]:
                for key in ("value", "contribution", "typical_optimal", "typical_suboptimal"):
                    assert isinstance(d[key], float) and math.isfinite(d[key]), (step, d)


def test_early_non_detection_flags_dead_runs_at_the_first_log(pop, tmp_path):
    non = pop.fit.non
    assert non["available"] and non["non"] >= 2 and 0.0 <= non["precision"] <= 1.0 and 0.0 <= non["recall"] <= 1.0
    ref = Reference.load(pop.reference)
    flags = {}
    for init in ("zeros", 0.1):
        populations.train_run(tmp_path / str(init), "mlp", init, 77, epochs=1)
        flags[init] = ref.classify(load_runs(tmp_path / str(init), progress=False, cache=False).runs[0])
    assert flags["zeros"].non and flags["zeros"].p_non >= 0.5
    assert not flags[0.1].non
    assert ref.classify(load_runs(pop.held_out, progress=False, cache=False).runs[0]).p_non is None  # later steps


def test_curve_and_neuron_features_against_numpy(tmp_path):
    """Curve features at each step from the points up to it; node-strength quantiles and the update size
    from the real weights (within the 64-bin histogram's resolution)."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    from weightwatch.integrations.torch import WeightWatch

    accs, losses, kernels = [0.2, 0.5, 0.6, 0.58], [2.0, 1.2, 0.9, 0.8], []
    with WeightWatch(model, tmp_path / "run") as ww:
        for step, (acc, loss) in enumerate(zip(accs, losses)):
            with torch.no_grad():
                model[0].weight.mul_(1.1)
            kernels.append(model[0].weight.detach().double().numpy().copy())
            ww.log(step, val_accuracy=acc, accuracy=acc + 0.1, loss=loss)
    run = load_runs(tmp_path / "run", progress=False, cache=False).runs[0]
    table = run_features(run, "val_accuracy", horizon=3)
    for k in range(len(accs)):
        got = table.as_dict(k)
        seen = np.float32(accs[: k + 1]).astype(float)
        assert got["curve/metric_last"] == seen[-1] and got["curve/metric_best"] == seen.max()
        assert got["curve/metric_mean"] == pytest.approx(seen.mean())
        assert got["curve/gap_metric"] == pytest.approx(0.1, abs=1e-6)
        assert (math.isnan(got["curve/metric_slope"]) if k == 0 else
                got["curve/metric_slope"] == pytest.approx(seen[-1] - seen[-2]))
        s = in_strength(kernels[k])[0]
        # quantiles from the histogram: within one bin of the true ones
        width = (s.max() - s.min()) / 64
        assert got["first/s_q50"] * s.mean() == pytest.approx(np.percentile(s, 50), abs=width)
        if k:
            # the kernel grew by 10%: its norm's relative change, by hand
            want = np.linalg.norm(kernels[k]) / np.linalg.norm(kernels[k - 1]) - 1
            assert got["first/u_norm"] == pytest.approx(want, rel=1e-4)
