"""The histogram written to the event file is exactly numpy's histogram over its own edges.

Weights are built to lie on (and next to) the bin edges, where a binning rule
that differs from the written edges by one rounding puts a value in the
neighbouring bin. The reference is ``numpy.histogram(weights, bins=edges)``
with the edges read back by TensorBoard's EventAccumulator.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tb_read import load, weightwatch_file
from weightwatch.integrations.torch import WeightWatch
from weightwatch.ops import reduce_jobs
from weightwatch.ops.cpu import reduce_kernel
from weightwatch.ops.raw import bin_edges
from weightwatch.ops.torch_device import KernelJob

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
PATHS = [pytest.param(None, id="cpu-kernels"), pytest.param(True, id="torch-ops")]


def on_the_edges(lo: float, hi: float, bins: int, dtype: np.dtype, repeat: int = 3) -> np.ndarray:
    """Each float64 edge of [lo, hi] rounded to ``dtype`` and its two neighbours, lo and hi themselves."""
    edges = bin_edges(lo, hi, bins).astype(dtype)
    below = np.nextafter(edges, np.asarray(-np.inf, dtype))
    above = np.nextafter(edges, np.asarray(np.inf, dtype))
    values = np.concatenate([edges, below, above]).astype(np.float64)
    values = values[(values >= lo) & (values <= hi)]
    return np.tile(np.concatenate([values, [lo, hi]]), repeat)


def torch_weights(dtype: torch.dtype, bins: int, rows: int = 8) -> torch.Tensor:
    """A (rows, -1) kernel of values on the edges of [min, max], representable in ``dtype``."""
    lo, hi = -0.75, 1.25  # float16 and bfloat16 hold both
    base = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    values = torch.from_numpy(on_the_edges(lo, hi, bins, np.float32 if base == torch.float32 else np.float64))
    values = values.to(dtype)  # half precisions: rounded once more, lo and hi kept
    pad = (-values.numel()) % rows
    values = torch.cat([values, values[:pad]])
    return values[torch.randperm(values.numel(), generator=torch.Generator().manual_seed(0))].reshape(rows, -1)


@pytest.mark.parametrize("numpy_dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("bins", [7, 10, 64, 100])
def test_cpu_kernel_counts_equal_numpy_on_the_written_edges(numpy_dtype, bins):
    for lo, hi in ((-1.0, 1.0), (0.1, 0.3), (-3e-3, 7e-2), (1000.0, 1000.5)):
        w = on_the_edges(lo, hi, bins, numpy_dtype).astype(numpy_dtype).reshape(-1, 1)
        w = np.tile(w, (1, 70))  # over PARALLEL_FROM entries for some: the threaded path too
        raw = reduce_kernel(w, w.shape[0], bins)
        want, _ = np.histogram(w.astype(np.float64), bins=raw.edges)
        np.testing.assert_array_equal(raw.counts, want, err_msg=f"{numpy_dtype.__name__} [{lo}, {hi}] {bins} bins")
        assert raw.edges[0] == w.min() and raw.edges[-1] == w.max()


@pytest.mark.parametrize("on_device", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_written_histogram_equals_numpy_over_its_edges(tmp_path, dtype, on_device):
    bins = 10  # k/10 is not a float32: every edge is rounded
    weight = torch_weights(dtype, bins)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
    ww = WeightWatch(nn.Sequential(layer), tmp_path / "run", bins=bins)
    snap = ww.recorder.compute(0, ww.tensors(), on_device=on_device)
    ww.log(0)
    ww.close()
    values = weight.double().numpy().reshape(-1)
    np.testing.assert_array_equal(snap.layers[0].counts, np.histogram(values, bins=snap.layers[0].edges)[0])
    histo = load(weightwatch_file(tmp_path / "run")).Histograms("weights/0")[0].histogram_value
    edges = np.array([histo.min, *histo.bucket_limit])
    want, _ = np.histogram(values, bins=edges)
    np.testing.assert_array_equal(np.array(histo.bucket), want)
    assert histo.num == values.size


def test_device_path_and_cpu_kernels_agree_on_edge_values():
    weight = torch_weights(torch.float32, 64, rows=16)
    jobs = [KernelJob(kernel=weight, nodes=16)]
    cpu, = reduce_jobs(jobs, 64)
    dev, = reduce_jobs(jobs, 64, on_device=True)
    np.testing.assert_array_equal(cpu.edges, dev.edges)
    np.testing.assert_array_equal(cpu.counts, dev.counts)
    np.testing.assert_array_equal(cpu.counts, np.histogram(weight.double().numpy(), bins=cpu.edges)[0])


@pytest.mark.parametrize("numpy_dtype", [np.float32, np.float64])
def test_cpu_kernel_counts_equal_numpy_on_random_ranges(numpy_dtype):
    """Offsets far from zero against narrow spreads (where the estimate's rounding is largest, in
    bins), wide spreads, 2 to 1000 bins; random values plus the edges and their neighbours."""
    rng = np.random.default_rng(7)
    for case in range(60):
        centre = float(rng.choice([0.0, 1.0, -3.0, 1e3, -2e5, 1e-6])) * float(rng.uniform(0.5, 2))
        spread = 10.0 ** float(rng.uniform(-4, 2)) * (abs(centre) if centre and rng.random() < 0.5 else 1.0)
        bins = int(rng.choice([2, 3, 30, 64, 257, 1000]))
        values = centre + spread * rng.standard_normal(5000)
        lo, hi = float(values.min()), float(values.max())
        w = np.concatenate([values, on_the_edges(lo, hi, bins, numpy_dtype, repeat=1)]).astype(numpy_dtype)
        w = rng.permutation(w).reshape(-1, 1)
        raw = reduce_kernel(w, w.shape[0], bins)
        want, _ = np.histogram(w.astype(np.float64), bins=raw.edges)
        np.testing.assert_array_equal(raw.counts, want, err_msg=f"case {case}: {centre} ± {spread}, {bins} bins")


@pytest.mark.parametrize("numpy_dtype", [np.float32, np.float64])
def test_sortable_keys_order_like_the_floats_and_map_back(numpy_dtype):
    from weightwatch.ops.cpu import key_to_float, sortable_keys

    info = np.finfo(numpy_dtype)
    special = np.array([0.0, -0.0, np.inf, -np.inf, info.tiny, -info.tiny, info.smallest_subnormal,
                        -info.smallest_subnormal, info.max, -info.max, 1.0, -1.0], numpy_dtype)
    w = np.concatenate([special, np.random.default_rng(0).standard_normal(1000).astype(numpy_dtype)])
    bits, shift, mask = sortable_keys(w)
    keys = bits ^ ((bits >> shift) & mask)
    order = np.argsort(keys, kind="stable")
    assert np.all(np.diff(w[order]) >= 0)  # ascending as floats (-0.0 before 0.0 counts as equal)
    assert [key_to_float(k, w.dtype) for k in keys[:4]] == [0.0, -0.0, np.inf, -np.inf]
    assert np.signbit(key_to_float(keys[1], w.dtype))
    nan_bits = np.array([np.nan, -np.nan], numpy_dtype)
    nb, _, _ = sortable_keys(nan_bits)
    nan_keys = nb ^ ((nb >> shift) & mask)
    assert not np.signbit(nan_bits[0]) and np.signbit(nan_bits[1])
    assert nan_keys[0] > keys[2] and nan_keys[1] < keys[3]  # beyond +inf and -inf
    assert all(np.isnan(key_to_float(k, w.dtype)) for k in nan_keys)


def test_the_strength_histogram_is_numpys():
    """The node-strength histograms (small vectors, binned on the host) have numpy.histogram's edges
    and counts, values on the edges, integer-valued and constant vectors included."""
    from weightwatch.tags import small_histogram

    rng = np.random.default_rng(12)
    for t in range(400):
        n, bins = int(rng.integers(1, 300)), int(rng.integers(1, 70))
        values = [rng.normal(size=n), np.round(rng.normal(size=n), 1), np.full(n, rng.normal()),
                  rng.integers(-3, 4, n).astype(float)][t % 4]
        counts, edges = small_histogram(values, bins)
        want_counts, want_edges = np.histogram(values, bins=bins)
        np.testing.assert_array_equal(edges, want_edges)
        np.testing.assert_array_equal(counts, want_counts)
