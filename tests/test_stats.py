"""Every statistic against the slow numpy reference in tests/reference.py.

Each test runs on both reduction paths: the fused CPU kernels and the torch-op
path used on accelerators (forced onto the CPU here).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import reference as ref
from weightwatch.integrations.torch import WeightWatch

PATHS = [pytest.param(None, id="cpu-kernels"), pytest.param(True, id="torch-ops")]


def snapshot(model: nn.Module, tmp_path, on_device, **kw):
    ww = WeightWatch(model, tmp_path / "run", **kw)
    snap = ww.recorder.compute(0, ww.tensors(), on_device=on_device)
    ww.close()
    return {layer.info.name: layer for layer in snap.layers}, snap


def np_of(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("on_device", PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weight_statistics_match_numpy(tmp_path, on_device, dtype):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 33), nn.Linear(33, 10)).to(dtype)
    with torch.no_grad():
        model[2].weight.add_(0.3)  # a non-zero mean, to catch a variance that ignores it
    layers, snap = snapshot(model, tmp_path, on_device)
    for name, module in (("0", model[0]), ("2", model[2]), ("3", model[3])):
        got = layers[name].weights.as_dict()
        want = ref.weight_stats(np_of(module.weight))
        for stat, value in want.items():
            assert got[stat] == pytest.approx(value, rel=1e-6, abs=1e-9), (name, stat)
        bias = layers[name].bias.as_dict()
        for stat, value in ref.weight_stats(np_of(module.bias)).items():
            assert bias[stat] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, "bias", stat)
        for q in (0, 25, 50, 75, 100):  # bias percentiles are exact
            assert bias[f"p{q}"] == pytest.approx(np.percentile(np_of(module.bias), q), rel=1e-12), (name, q)
    everything = np.concatenate([np_of(p.weight).reshape(-1) for p in (model[0], model[2], model[3])])
    total = snap.total.as_dict()
    for stat, value in ref.weight_stats(everything).items():
        assert total[stat] == pytest.approx(value, rel=1e-6, abs=1e-9), ("all", stat)


@pytest.mark.parametrize("on_device", PATHS)
def test_histogram_counts_are_exact(tmp_path, on_device):
    model = nn.Sequential(nn.Linear(300, 200), nn.Linear(200, 7))
    layers, _ = snapshot(model, tmp_path, on_device, bins=50)
    for name, module in (("0", model[0]), ("1", model[1])):
        layer = layers[name]
        w = np_of(module.weight)
        assert layer.edges[0] == w.min() and layer.edges[-1] == w.max()
        np.testing.assert_array_equal(layer.counts, ref.histogram(w, layer.edges))
        assert layer.counts.sum() == w.size


@pytest.mark.parametrize("on_device", PATHS)
def test_percentiles_within_one_bin_of_numpy(tmp_path, on_device):
    model = nn.Sequential(nn.Linear(400, 300))
    layers, snap = snapshot(model, tmp_path, on_device, bins=64)
    w = np_of(model[0].weight).reshape(-1)
    width = (w.max() - w.min()) / 64
    pct = layers["0"].weights.percentiles
    assert pct[0] == w.min() and pct[100] == w.max()
    for q in (25, 50, 75):
        assert abs(pct[q] - np.percentile(w, q)) <= width, q
    for q in (25, 50, 75):  # one layer: the merged network percentiles are the same estimate
        assert snap.total.percentiles[q] == pytest.approx(pct[q], abs=1e-9)


def test_network_percentiles_merge_layers(tmp_path):
    model = nn.Sequential(nn.Linear(200, 300), nn.Linear(300, 300))
    with torch.no_grad():
        model[1].weight.mul_(20.0)  # very different ranges, so the merge is exercised
    _, snap = snapshot(model, tmp_path, None, bins=128)
    w = np.concatenate([np_of(model[0].weight).ravel(), np_of(model[1].weight).ravel()])
    width = max(np.ptp(np_of(model[0].weight)), np.ptp(np_of(model[1].weight))) / 128
    for q in (25, 50, 75):
        assert abs(snap.total.percentiles[q] - np.percentile(w, q)) <= width


@pytest.mark.parametrize("on_device", PATHS)
def test_node_strength_linear_and_conv_by_hand(tmp_path, on_device):
    model = nn.Sequential(nn.Conv2d(2, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 2 * 2, 6), nn.Linear(6, 3))
    layers, _ = snapshot(model, tmp_path, on_device, example_input=torch.randn(2, 2, 4, 4))
    for name, module in (("0", model[0]), ("3", model[3]), ("4", model[4])):
        s, sp, sn = ref.in_strength(np_of(module.weight))
        got = layers[name].strength
        np.testing.assert_allclose(got.strength, s, rtol=1e-6)
        np.testing.assert_allclose(got.positive, sp, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(got.negative, sn, rtol=1e-5, atol=1e-7)
        d = got.as_dict()
        assert d["mean"] == pytest.approx(s.mean()) and d["std"] == pytest.approx(s.std())
        assert d["pos_mean"] == pytest.approx(sp.mean(), rel=1e-5)
        assert d["neg_mean"] == pytest.approx(sn.mean(), rel=1e-5)
    # signed (complex-network) strength: conv -> flatten -> linear -> linear
    w0, b0, w3, b3, w4, b4 = (np_of(t) for t in (model[0].weight, model[0].bias, model[3].weight,
                                                  model[3].bias, model[4].weight, model[4].bias))
    np.testing.assert_allclose(layers["0"].strength.signed, ref.cnt_strength(w0, b0, w3), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(layers["3"].strength.signed, ref.cnt_strength(w3, b3, w4), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(layers["4"].strength.signed, ref.cnt_strength(w4, b4, None), rtol=1e-6, atol=1e-9)
    assert layers["3"].strength.as_dict()["fluctuation"] == pytest.approx(ref.cnt_strength(w3, b3, w4).std())
    # the conv's fluctuation is over its (channel, position) units, as in the reference code
    assert layers["0"].strength.as_dict()["fluctuation"] == pytest.approx(ref.cnt_units(w0, b0, w3).std())


def test_node_strength_tiny_linear_exact_numbers(tmp_path):
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]))
        lin.bias.copy_(torch.tensor([0.25, -0.5]))
    layers, _ = snapshot(nn.Sequential(lin), tmp_path, None)
    ns = layers["0"].strength
    np.testing.assert_allclose(ns.strength, [3.5, 4.0])
    np.testing.assert_allclose(ns.positive, [1.5, 3.0])
    np.testing.assert_allclose(ns.negative, [-2.0, -1.0])
    np.testing.assert_allclose(ns.signed, [-0.5 + 0.25, 2.0 - 0.5])


@pytest.mark.parametrize("on_device", PATHS)
def test_attention_projections_and_heads(tmp_path, on_device):
    mha = nn.MultiheadAttention(embed_dim=12, num_heads=3)
    model = nn.ModuleDict({"attn": mha, "head": nn.Linear(12, 4)})
    layers, _ = snapshot(model, tmp_path, on_device)
    assert [n for n in layers] == ["attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj", "head"]
    w = np_of(mha.in_proj_weight)
    for i, proj in enumerate(("q_proj", "k_proj", "v_proj")):
        part = w[i * 12:(i + 1) * 12]
        s, _, _ = ref.in_strength(part)
        layer = layers[f"attn.{proj}"]
        assert layer.info.role == "attn" and layer.info.heads == 3
        np.testing.assert_allclose(layer.strength.strength, s, rtol=1e-6)
        np.testing.assert_allclose(layer.strength.head_means, s.reshape(3, 4).mean(axis=1), rtol=1e-6)
        for stat, value in ref.weight_stats(part).items():
            assert layer.weights.as_dict()[stat] == pytest.approx(value, rel=1e-6, abs=1e-9)
        np.testing.assert_allclose(layer.bias.mean, np_of(mha.in_proj_bias)[i * 12:(i + 1) * 12].mean(), atol=1e-12)
    s_out, _, _ = ref.in_strength(np_of(mha.out_proj.weight))
    np.testing.assert_allclose(layers["attn.out_proj"].strength.strength, s_out, rtol=1e-6)
    assert layers["head"].info.role == "output"


@pytest.mark.parametrize("on_device", PATHS)
def test_nonfinite_weights_are_counted_not_fatal(tmp_path, on_device):
    lin = nn.Linear(10, 4)
    with torch.no_grad():
        lin.weight[0, 0] = float("nan")
        lin.weight[1, 1] = float("inf")
        lin.weight[2, 2] = float("-inf")
    layers, snap = snapshot(nn.Sequential(lin), tmp_path, on_device)
    got = layers["0"].weights.as_dict()
    want = ref.weight_stats(np_of(lin.weight))
    assert got["nonfinite"] == 3 == snap.total.nonfinite
    for stat in ("mean", "std", "min", "max", "l2"):
        assert got[stat] == pytest.approx(want[stat], rel=1e-6)
    assert layers["0"].counts.sum() == 37


@pytest.mark.parametrize("on_device", PATHS)
def test_all_nonfinite_and_constant_kernels(tmp_path, on_device):
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
        model[1].weight.fill_(0.5)
    layers, _ = snapshot(model, tmp_path, on_device)
    assert layers["0"].weights.nonfinite == 12 and np.isnan(layers["0"].weights.mean)
    const = layers["1"].weights
    assert const.mean == 0.5 and const.std == 0.0 and const.min == const.max == 0.5
    assert layers["1"].counts.sum() == 6 and layers["1"].edges[0] < 0.5 < layers["1"].edges[-1]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_parameters(tmp_path, dtype):
    lin = nn.Linear(64, 32).to(dtype)
    layers, _ = snapshot(nn.Sequential(lin), tmp_path, None)
    want = ref.weight_stats(lin.weight.detach().float().numpy())
    for stat in ("mean", "std", "min", "max", "l2"):
        assert layers["0"].weights.as_dict()[stat] == pytest.approx(want[stat], rel=1e-6, abs=1e-9)


def test_both_paths_give_identical_histograms(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 16, 5), nn.Flatten(), nn.Linear(16, 10))
    a, _ = snapshot(model, tmp_path / "a", None)
    b, _ = snapshot(model, tmp_path / "b", True)
    for name in a:
        np.testing.assert_array_equal(a[name].counts, b[name].counts)
        np.testing.assert_array_equal(a[name].edges, b[name].edges)


@pytest.mark.parametrize("on_device", PATHS)
def test_sketch_samples_the_same_positions_in_every_run(tmp_path, on_device):
    from weightwatch.sketch import read_sketch, sketch_indices

    runs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(40, 30), nn.Linear(30, 5))
        ww = WeightWatch(model, tmp_path / f"run{seed}")
        snap = ww.recorder.compute(0, ww.tensors(), on_device=on_device)
        ww.log(3)
        ww.close()
        step, values = read_sketch(tmp_path / f"run{seed}")
        assert step == 3 and list(values) == ["0", "1"]
        for name, module in (("0", model[0]), ("1", model[1])):
            idx = sketch_indices(tuple(module.weight.shape))
            np.testing.assert_array_equal(values[name], module.weight.detach().numpy().reshape(-1)[idx])
        np.testing.assert_array_equal(snap.sketch[0], values["0"])
        runs.append(values)
    assert len(runs[0]["0"]) == 256 and len(runs[0]["1"]) == 150  # capped size; small kernels whole


@pytest.mark.parametrize("on_device", PATHS)
def test_nonfinite_entries_are_left_out_of_node_strengths(tmp_path, on_device):
    model = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3))
    with torch.no_grad():
        model[0].weight[1, 2] = float("nan")
        model[1].weight[0, 3] = float("-inf")
    layers, _ = snapshot(model, tmp_path, on_device, example_input=torch.randn(2, 5))
    w0, b0, w1, b1 = (np.nan_to_num(np_of(t), nan=0.0, neginf=0.0) for t in
                      (model[0].weight, model[0].bias, model[1].weight, model[1].bias))
    np.testing.assert_allclose(layers["0"].strength.strength, ref.in_strength(w0)[0], rtol=1e-6)
    np.testing.assert_allclose(layers["0"].strength.signed, ref.cnt_strength(w0, b0, w1), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(layers["1"].strength.strength, ref.in_strength(w1)[0], rtol=1e-6)
    assert layers["1"].counts.sum() == 11 and layers["0"].counts.sum() == 19
