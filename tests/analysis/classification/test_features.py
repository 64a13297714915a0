"""The classification features against an independent reading of the event file.

The expected values are computed here with plain numpy from what TensorBoard's
own EventAccumulator reads back (scalars and histograms), following the
definitions in weightwatch/analysis/classification/features.py's docstring; the features
under test come from weightwatch's loader and from the live scorer.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from weightwatch.analysis.classification.features import FEATURE_NAMES, assign_slots, histogram_shape, run_features
from weightwatch.analysis.classification.live import LoggedRun
from weightwatch.analysis.loading.loader import load_runs
from weightwatch.integrations.torch import WeightWatch


def train_logged(log_dir, model: nn.Module, epochs: int = 3, seed: int = 0, **kw) -> WeightWatch:
    """A few epochs of Adam on random data, weights logged at step 0 and after each epoch."""
    torch.manual_seed(seed)
    x = torch.randn(256, 64)
    y = (x[:, :10].argmax(1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ww = WeightWatch(model, log_dir, **kw)
    ww.log(0, accuracy=0.0)
    for epoch in range(1, epochs + 1):
        for i in range(0, 256, 32):
            loss = nn.functional.cross_entropy(model(x[i:i + 32]), y[i:i + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
        ww.log(epoch, accuracy=float((model(x).argmax(1) == y).float().mean()))
    ww.close()
    return ww


def accumulated(run_dir):
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    scalars = {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}
    hists = {}
    for tag in acc.Tags()["histograms"]:
        hists[tag] = {e.step: (np.array([e.histogram_value.min, *e.histogram_value.bucket_limit]),
                               np.array(e.histogram_value.bucket)) for e in acc.Histograms(tag)}
    return scalars, hists


def shape_by_hand(edges, counts):
    """Kurtosis, skewness, density at zero * std * sqrt(2 pi), (mode - mean) / std, from bin centres."""
    centres = (edges[:-1] + edges[1:]) / 2
    mean = np.average(centres, weights=counts)
    std = math.sqrt(np.average((centres - mean) ** 2, weights=counts))
    z = (centres - mean) / std
    zero_bin = next(i for i in range(len(counts)) if edges[i] <= 0 <= edges[i + 1])
    density = counts[zero_bin] / counts.sum() / (edges[zero_bin + 1] - edges[zero_bin])
    return {"h_kurt": np.average(z ** 4, weights=counts), "h_skew": np.average(z ** 3, weights=counts),
            "h_peak0": density * std * math.sqrt(2 * math.pi), "h_mode": z[int(np.argmax(counts))]}


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 10))
    train_logged(root / "mlp", model)
    return root / "mlp"


def test_features_match_numpy_on_tensorboards_reading(mlp_run):
    run = load_runs(mlp_run, progress=False, cache=False).runs[0]
    table = run_features(run)
    scalars, hists = accumulated(mlp_run)
    assert table.steps.tolist() == [0, 1, 2, 3]
    slots = {"first": "0", "hidden": "2", "output": "4"}
    fan_in = {"0": 64, "2": 16, "4": 12}
    expected = {step: {} for step in range(4)}
    for step in range(4):
        e = expected[step]
        for slot, layer in slots.items():
            for stat in ("p0", "p25", "p50", "p75", "p100", "mean", "std"):
                e[f"{slot}/w_{stat}"] = scalars[f"weights/{layer}/{stat}"][step]
                e[f"{slot}/b_{stat}"] = scalars[f"bias/{layer}/{stat}"][step]
            s_mean = scalars[f"node_strength/{layer}/mean"][step]
            e[f"{slot}/s_mean"] = s_mean
            e[f"{slot}/s_pos"] = scalars[f"node_strength/{layer}/pos_mean"][step]
            e[f"{slot}/s_neg"] = scalars[f"node_strength/{layer}/neg_mean"][step]
            e[f"{slot}/s_fluct"] = scalars[f"node_strength/{layer}/fluctuation"][step]
            e[f"{slot}/s_per_input"] = s_mean / fan_in[layer]
            e[f"{slot}/s_cv"] = scalars[f"node_strength/{layer}/std"][step] / s_mean
            s_edges, _ = hists[f"node_strength/{layer}"][step]
            e[f"{slot}/s_min_rel"] = s_edges[0] / s_mean
            e[f"{slot}/s_max_rel"] = s_edges[-1] / s_mean
            e[f"{slot}/w_nonfinite"] = 0.0
            for name, value in shape_by_hand(*hists[f"weights/{layer}"][step]).items():
                e[f"{slot}/{name}"] = value
        e["all/w_std"] = scalars["weights/all/std"][step]
        e["all/w_p50"] = scalars["weights/all/p50"][step]
        e["all/s_mean"] = np.mean([scalars[f"node_strength/{la}/mean"][step] for la in "024"])
        e["all/h_kurt"] = np.mean([shape_by_hand(*hists[f"weights/{la}"][step])["h_kurt"] for la in "024"])
        e["arch/depth"] = 3
        e["arch/log10_params"] = math.log10(64 * 16 + 16 + 16 * 12 + 12 + 12 * 10 + 10)
        e["arch/log2_width"] = math.log2(12)
    for step in range(4):
        got = table.as_dict(step)
        for name, value in expected[step].items():
            assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), (step, name)
            if step > 0 and not name.startswith("arch/"):
                assert got[f"{name}:delta"] == pytest.approx(value - expected[step - 1][name], rel=1e-9, abs=1e-9)
                assert got[f"{name}:start"] == pytest.approx(value - expected[0][name], rel=1e-9, abs=1e-9)
            elif not name.startswith("arch/"):
                assert math.isnan(got[f"{name}:delta"]) and math.isnan(got[f"{name}:start"])
        # slots this network does not have are missing, not zero
        assert all(math.isnan(got[n]) for n in FEATURE_NAMES if n.split("/")[0] in ("conv", "attn", "mlp", "norm"))


def test_live_features_equal_the_logged_ones(tmp_path):
    """What the callbacks score while training is what classify computes from the files afterwards."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.LayerNorm(16), nn.Linear(16, 10))
    ww = WeightWatch(model, tmp_path / "run")
    live = LoggedRun(ww.layers, ww.recorder.bins)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(3):
        metrics = {"accuracy": 0.5 + 0.1 * step, "loss": 2.0 / (step + 1)}
        live.append(ww.recorder.log(step, ww.tensors(), metrics))
        live.add_metrics(step, metrics)
        loss = model(torch.randn(32, 64)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    ww.close()
    loaded = run_features(load_runs(tmp_path / "run", progress=False, cache=False).runs[0])
    scored = run_features(live.run)
    assert loaded.steps.tolist() == scored.steps.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(scored.values, loaded.values)
    assert not np.isnan(loaded.as_dict()["norm/w_std"])
    assert loaded.as_dict()["curve/metric_last"] == pytest.approx(0.7)  # the curves count too


def test_slots_of_a_cnn_with_norm():
    from weightwatch.layers import LayerInfo as L

    layers = [L("conv", "conv", "conv", (4, 1, 3, 3)), L("bn", "norm", "norm", (4,)),
              L("fc", "linear", "output", (10, 144))]
    slots = assign_slots(layers)
    assert slots["first"] == [0] and slots["output"] == [2] and slots["hidden"] == []
    assert slots["conv"] == [0] and slots["norm"] == [1] and slots["all"] == [0, 1, 2]


@pytest.mark.parametrize("dist, kurtosis, peak0", [("normal", 3.0, 1.0), ("laplace", 6.0, math.sqrt(math.pi))])
def test_histogram_shape_of_known_distributions(dist, kurtosis, peak0):
    rng = np.random.default_rng(0)
    x = getattr(rng, dist)(0.0, 1.0, size=2_000_000)
    counts, edges = np.histogram(x, bins=np.linspace(-12, 12, 961))
    shape = histogram_shape(edges[None, :], counts[None, :])
    assert shape["h_kurt"][0] == pytest.approx(kurtosis, rel=0.03)
    assert shape["h_skew"][0] == pytest.approx(0.0, abs=0.02)
    assert shape["h_peak0"][0] == pytest.approx(peak0, rel=0.03)


@pytest.mark.parametrize("module", ["features", "population", "models", "reffile", "live", "reference"])
def test_doctests(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"weightwatch.analysis.classification.{module}")
    assert doctest.testmod(mod, optionflags=doctest.ELLIPSIS).failed == 0
