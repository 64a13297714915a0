"""The framework-free core (ops' CPU kernels, stats, Recorder) against numpy, with no framework loaded.

Kernels are numpy arrays in the core's layout; every number is checked
against numpy by hand (tests/reference.py's loops, np.histogram,
np.percentile). The last test runs the core in a fresh interpreter and checks
that no deep-learning framework was imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import reference as ref
import tb_read
from weightwatch import LayerInfo, LayerTensors, Recorder
from weightwatch.flow import consumer_input_sums, order_flow
from weightwatch.outgoing import outgoing_terms
from weightwatch.ops.cpu import reduce_kernel
from weightwatch.stats import histogram_percentiles, merged_percentiles, vector_stats

RNG = np.random.default_rng(7)


def conv_mlp() -> tuple[list[LayerInfo], list[LayerTensors]]:
    """conv (8, 3, 3, 3) -> flatten (8 x 4 x 4) -> linear (20, 128) -> linear (5, 20), biases on all."""
    conv = RNG.normal(0.0, 0.2, (8, 3, 3, 3))
    fc = (RNG.normal(0.3, 0.1, (20, 128))).astype(np.float32)  # a non-zero mean, float32
    out = RNG.normal(0.0, 1.0, (5, 20))
    infos = [LayerInfo("conv", "conv", "conv", conv.shape, has_bias=True),
             LayerInfo("fc", "linear", "fc", fc.shape, has_bias=True),
             LayerInfo("out", "linear", "output", out.shape, has_bias=True)]
    tensors = [LayerTensors(w, RNG.normal(size=w.shape[0]).astype(w.dtype)) for w in (conv, fc, out)]
    return infos, tensors


def snapshot(tmp_path, infos, tensors, bins=64):
    rec = Recorder(tmp_path / "run", infos, bins=bins, framework="numpy")
    snap = rec.compute(0, tensors)
    rec.close()
    return snap


def test_weight_and_bias_statistics_match_numpy(tmp_path):
    infos, tensors = conv_mlp()
    snap = snapshot(tmp_path, infos, tensors)
    for layer, t in zip(snap.layers, tensors):
        got = layer.weights.as_dict()
        for stat, value in ref.weight_stats(t.kernel).items():
            assert got[stat] == pytest.approx(value, rel=1e-6, abs=1e-9), (layer.info.name, stat)
        b = np.asarray(t.bias, dtype=np.float64)
        bias = layer.bias.as_dict()
        for q in (0, 25, 50, 75, 100):  # a bias is small: its percentiles are exact
            assert bias[f"p{q}"] == pytest.approx(np.percentile(b, q), rel=1e-12), (layer.info.name, q)
        assert bias["mean"] == pytest.approx(b.mean(), rel=1e-12) and bias["std"] == pytest.approx(b.std(), rel=1e-12)
        np.testing.assert_array_equal(layer.counts, ref.histogram(t.kernel, layer.edges))
        assert layer.edges[0] == np.min(t.kernel) and layer.edges[-1] == np.max(t.kernel)
        w = np.asarray(t.kernel, dtype=np.float64).reshape(-1)
        width = (w.max() - w.min()) / 64
        for q in (25, 50, 75):  # kernel percentiles are read off the exact histogram
            assert abs(layer.weights.percentiles[q] - np.percentile(w, q)) <= width
    everything = np.concatenate([np.asarray(t.kernel, dtype=np.float64).reshape(-1) for t in tensors])
    total = snap.total.as_dict()
    for stat, value in ref.weight_stats(everything).items():
        assert total[stat] == pytest.approx(value, rel=1e-6, abs=1e-9), ("all", stat)


def test_node_strengths_by_hand(tmp_path):
    infos, tensors = conv_mlp()
    snap = snapshot(tmp_path, infos, tensors)
    kernels = [np.asarray(t.kernel, dtype=np.float64) for t in tensors]
    for i, (layer, t) in enumerate(zip(snap.layers, tensors)):
        s, sp, sn = ref.in_strength(kernels[i])
        got = layer.strength
        np.testing.assert_allclose(got.strength, s, rtol=1e-6)
        np.testing.assert_allclose(got.positive, sp, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(got.negative, sn, rtol=1e-6, atol=1e-9)
        nxt = kernels[i + 1] if i + 1 < len(kernels) else None  # conv -> fc through a flatten, fc -> out
        np.testing.assert_allclose(got.signed, ref.cnt_strength(kernels[i], t.bias, nxt), rtol=1e-6, atol=1e-9)
        # the fluctuation is over every unit: a conv's (channel, position) pairs, a linear's neurons
        units = ref.cnt_units(kernels[i], t.bias, nxt)
        assert layer.strength.as_dict()["fluctuation"] == pytest.approx(units.std(), rel=1e-6)


def test_attention_head_means(tmp_path):
    q = RNG.normal(size=(12, 6)).astype(np.float32)
    info = LayerInfo("attn.q_proj", "attention", "attn", q.shape, heads=3)
    snap = snapshot(tmp_path, [info], [LayerTensors(q)])
    per_node = np.abs(q.astype(np.float64)).sum(axis=1)
    np.testing.assert_allclose(snap.layers[0].strength.head_means, per_node.reshape(3, 4).mean(axis=1), rtol=1e-6)


def test_cpu_kernel_reductions_by_hand():
    w = RNG.normal(size=(7, 5, 2, 2))  # conv: 7 nodes, 5 input channels, 2 x 2 kernel
    raw = reduce_kernel(w, nodes=7, bins=10, input_units=5)
    flat = w.reshape(7, -1)
    np.testing.assert_allclose(raw.row_sum, flat.sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(raw.row_abs, np.abs(flat).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(raw.col_sum, w.sum(axis=(0, 2, 3)), rtol=1e-12)  # per input channel
    assert raw.total == pytest.approx(w.sum(), rel=1e-12) and raw.total_sq == pytest.approx((w * w).sum(), rel=1e-12)
    np.testing.assert_array_equal(raw.counts, np.histogram(w, bins=raw.edges)[0])
    assert (raw.count, raw.nonfinite, raw.min, raw.max) == (w.size, 0, w.min(), w.max())


def test_nonfinite_constant_and_half_precision_kernels():
    w = RNG.normal(size=(6, 9)).astype(np.float32)
    w[1, 2], w[4, 0], w[5, 8] = np.nan, np.inf, -np.inf
    raw = reduce_kernel(w, nodes=6, bins=8, input_units=9)
    finite = np.where(np.isfinite(w), w, 0.0).astype(np.float64)
    assert raw.nonfinite == 3 and raw.count == w.size - 3
    np.testing.assert_allclose(raw.row_sum, finite.sum(axis=1), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(raw.col_sum, finite.sum(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(raw.counts, ref.histogram(w, raw.edges))
    assert raw.min == np.nanmin(np.where(np.isfinite(w), w, np.nan))

    constant = reduce_kernel(np.full((3, 4), 0.25), nodes=3, bins=4)
    assert (constant.min, constant.max) == (0.25, 0.25) and constant.counts.sum() == 12
    assert constant.edges[0] == -0.25 and constant.edges[-1] == 0.75  # widened by 0.5, as numpy does

    nothing = reduce_kernel(np.full((2, 2), np.nan), nodes=2, bins=4)
    assert nothing.count == 0 and nothing.nonfinite == 4 and np.isnan(nothing.min) and nothing.counts.sum() == 0

    half = RNG.normal(size=(4, 16)).astype(np.float16)
    raw = reduce_kernel(half, nodes=4, bins=8)
    np.testing.assert_allclose(raw.row_sum, half.astype(np.float64).sum(axis=1), rtol=1e-6)


def test_percentile_and_vector_helpers_against_numpy():
    v = RNG.normal(size=101)
    exact = vector_stats(v)
    for q in (0, 25, 50, 75, 100):
        assert exact.percentiles[q] == pytest.approx(np.percentile(v, q), rel=1e-12)
    assert vector_stats(np.array([np.nan, 1.0, 3.0])).as_dict()["nonfinite"] == 1.0

    x = RNG.uniform(-1.0, 1.0, 20000)
    edges = np.linspace(-1.0, 1.0, 41)
    counts = np.histogram(x, edges)[0]
    pct = histogram_percentiles(edges, counts, (10, 50, 90), x.min(), x.max())
    for q, value in pct.items():
        assert abs(value - np.percentile(x, q)) <= edges[1] - edges[0]

    y = RNG.normal(3.0, 0.5, 5000)  # a second histogram on other edges: the merge spans both
    e2 = np.linspace(y.min(), y.max(), 33)
    both = np.concatenate([x, y])
    merged = merged_percentiles([(edges, counts), (e2, np.histogram(y, e2)[0])], (25, 50, 75), both.min(), both.max())
    for q, value in merged.items():
        assert abs(value - np.percentile(both, q)) <= max(edges[1] - edges[0], e2[1] - e2[0])

    # a conv of 4 channels read flattened (C, H, W = 4 x 5 positions) by a linear: each (channel,
    # position) unit's outgoing term is the sum of the linear's column for that flattened input
    conv = LayerInfo("c", "conv", "conv", (4, 3, 3, 3))
    fc = LayerInfo("fc", "linear", "output", (7, 20))
    w = RNG.normal(size=(7, 20))
    flow = order_flow([conv, fc])
    sums = {"fc": consumer_input_sums(fc, w.sum(axis=0), None)}  # the fc's column sums
    np.testing.assert_allclose(outgoing_terms(flow, conv, sums, {}, False), w.sum(axis=0))


def test_recorder_writes_numpy_runs_tensorboard_reads(tmp_path):
    infos, tensors = conv_mlp()
    rec = Recorder(tmp_path / "run", infos, hparams={"lr": 0.1}, bins=16, framework="numpy")
    rec.log(0, tensors, {"loss": 1.5})
    rec.close()
    sc = tb_read.scalars(tmp_path / "run")
    assert sc["loss"] == [(0, 1.5)]
    assert tb_read.at(sc["weights/fc/mean"], 0) == pytest.approx(float(np.mean(tensors[1].kernel, dtype=np.float64)),
                                                                   rel=1e-6)
    info = json.loads((tmp_path / "run" / "weightwatch.json").read_text())
    assert info["framework"] == "numpy" and [layer["name"] for layer in info["layers"]] == ["conv", "fc", "out"]


def test_the_core_imports_no_framework(tmp_path):
    """In a fresh interpreter (the other tests' imports do not count): import the core, reduce,
    summarize and write a run, then check torch, keras, jax and tensorflow were never imported."""
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import weightwatch
        from weightwatch import LayerInfo, LayerTensors, Recorder
        from weightwatch import ops, stats, summaries, tags, sketch, events  # noqa: F401
        w = np.arange(12, dtype=np.float32).reshape(3, 4)
        rec = Recorder({str(tmp_path / "run")!r}, [LayerInfo("fc", "linear", "output", (3, 4))], bins=8)
        snap = rec.log(0, [LayerTensors(w)], {{"loss": 0.5}})
        rec.close()
        assert abs(snap.layers[0].weights.mean - 5.5) < 1e-12, snap.layers[0].weights
        loaded = sorted(m for m in ("torch", "keras", "jax", "tensorflow") if m in sys.modules)
        print("loaded:", loaded)
        assert not loaded, loaded
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "loaded: []" in proc.stdout


def test_sharded_reductions_equal_the_whole_kernel():
    """weightwatch.distributed on 3 simulated ranks (threads sharing an all-reduce): each holds an
    uneven flat run of a conv kernel, rows split between ranks; the result equals the CPU kernels'."""
    from weightwatch.distributed import ShardPiece, reduce_sharded
    from weightwatch.ops import KernelJob

    w = RNG.normal(size=(7, 3, 2, 2)).astype(np.float32)
    w[2, 1, 0, 0] = np.nan
    bias = RNG.normal(size=7)
    sample = np.array([0, 5, 40, 83])
    cuts = [0, 13, 50, w.size]  # rank r holds flat entries cuts[r] .. cuts[r + 1] - 1
    bias_cuts = [0, 2, 2, 7]  # rank 1 holds no bias entry at all

    def rank(r, all_reduce):
        piece = ShardPiece(w.reshape(-1)[cuts[r]:cuts[r + 1]], cuts[r], w.size)
        b = ShardPiece(bias[bias_cuts[r]:bias_cuts[r + 1]], bias_cuts[r], bias.size)
        return reduce_sharded([KernelJob(piece, 7, 3, b, sample)], 16, all_reduce)[0]

    results = ref.on_simulated_ranks(len(cuts) - 1, rank)
    want = reduce_kernel(w, nodes=7, bins=16, input_units=3)
    for got in results:
        assert (got.count, got.nonfinite, got.min, got.max) == (want.count, want.nonfinite, want.min, want.max)
        np.testing.assert_array_equal(got.counts, want.counts)
        np.testing.assert_array_equal(got.edges, want.edges)
        for field in ("row_sum", "row_abs", "col_sum"):
            np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=1e-9, atol=1e-12)
        assert got.total == pytest.approx(want.total, rel=1e-9) and got.total_sq == pytest.approx(want.total_sq)
        np.testing.assert_array_equal(got.bias, bias)
        np.testing.assert_array_equal(got.sample, w.reshape(-1)[sample])


def _union_cdf_percentile(hists, q):
    """By the definition: the sum of every histogram's piecewise-linear CDF, evaluated on a fine
    grid that holds every edge, inverted at q% of the mass."""
    grid = np.unique(np.concatenate([np.concatenate([e for e, _ in hists]),
                                     np.linspace(min(e[0] for e, _ in hists), max(e[-1] for e, _ in hists), 20001)]))
    cdf = sum(np.interp(grid, e, np.concatenate([[0.0], np.cumsum(c)])) for e, c in hists)
    return float(np.interp(q / 100.0 * cdf[-1], cdf, grid))


def test_merged_percentiles_of_many_histograms_equal_the_summed_cdf():
    """Hundreds of layers' histograms on their own edges (the network-wide percentiles of a deep
    model): the same percentiles as inverting the sum of their CDFs."""
    rng = np.random.default_rng(8)
    hists = []
    for _ in range(300):
        lo, width, bins = rng.normal(), rng.exponential() + 0.01, int(rng.integers(1, 65))
        hists.append((np.linspace(lo, lo + width, bins + 1), rng.integers(0, 40, bins)))
    lo, hi = min(e[0] for e, _ in hists), max(e[-1] for e, _ in hists)
    merged = merged_percentiles(hists, (0, 10, 25, 50, 75, 90, 100), lo, hi)
    assert merged[0] == lo and merged[100] == hi
    for q in (10, 25, 50, 75, 90):
        assert merged[q] == pytest.approx(_union_cdf_percentile(hists, q), abs=1e-9)


def test_merged_percentiles_with_a_zero_width_bin():
    """A bin whose edges coincide is all its count at one point: the CDF steps there. By hand:
    10 values uniform on [0, 1] and 10 at 0.5; CDF 10x below 0.5, 15 at it, 10x + 10 above."""
    hists = [(np.array([0.0, 1.0]), np.array([10])), (np.array([0.5, 0.5]), np.array([10]))]
    merged = merged_percentiles(hists, (10, 25, 50, 75, 90), 0.0, 1.0)
    assert merged == pytest.approx({10: 0.2, 25: 0.5, 50: 0.5, 75: 0.5, 90: 0.8})
