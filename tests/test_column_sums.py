"""The consumers' outgoing weights (column sums) come out of the fused per-layer pass, on every path.

The signed node strength's outgoing term reads, for every consumer of a watched
layer, the signed sum of its kernel over output units per input unit (per channel
group for a grouped convolution). These tests check that sum against numpy by
hand on every reduction path (numba CPU kernels, torch / jax / tensorflow ops,
the sharded FSDP reduction), the convolution geometry on top of it against the
brute-force unrolled graph (tests/graph_reference.py), the node strengths logged
end to end for grouped / strided / dilated convolutions and a per-token linear
consumer, and that each consumer's kernel is read once per log.
"""

from __future__ import annotations

import numpy as np
import pytest
import tb_read
from graph_reference import Unrolled, compare, expected_tags, grid

import reference as ref
from weightwatch import LayerInfo, LayerTensors, Recorder
from weightwatch.distributed import ShardPiece, reduce_sharded
from weightwatch.flow import ConvGeometry, column_request, consumer_input_sums, kernel_rows
from weightwatch.ops import KernelJob, reduce_jobs

RNG = np.random.default_rng(11)
TOL = 2e-5  # event files store float32


def by_hand(w: np.ndarray, kind: str, groups: int = 1) -> np.ndarray:
    """numpy: (in,) for a linear (out, in) kernel; (C_in, *k) for a conv (C_out, C_in / groups, *k)
    kernel, each group's output channels summed apart; non-finite weights left out."""
    w = np.where(np.isfinite(w), w, 0.0).astype(np.float64)
    if kind != "conv":
        return w.sum(axis=0)
    per = w.shape[0] // groups
    return np.concatenate([w[g * per:(g + 1) * per].sum(axis=0) for g in range(groups)])


def geometry(groups: int) -> ConvGeometry:
    """Only ``groups`` matters to the column sums; the spatial part is checked below."""
    return ConvGeometry((1, 1), (1, 1), (0, 0), groups, (5, 5), (3, 3))


#: (kind, kernel shape, groups): linear, conv, grouped conv, depthwise conv, grouped 1-d conv
CASES = [("linear", (20, 12), 1), ("conv", (8, 3, 3, 3), 1), ("conv", (8, 3, 3, 3), 2),
         ("conv", (6, 1, 3, 3), 6), ("conv", (6, 2, 5), 3)]


def case_kernel(shape: tuple[int, ...]) -> np.ndarray:
    w = RNG.normal(size=shape).astype(np.float32)
    w.reshape(-1)[[3, 17]] = [np.nan, np.inf]  # left out of the sums, as in every statistic
    return w


def job_for(info: LayerInfo, kernel, groups: int) -> KernelJob:
    input_units, col_groups = column_request(info, geometry(groups) if info.kind == "conv" else None)
    return KernelJob(kernel, kernel_rows(info), input_units, col_groups=col_groups)


def framework_array(path: str, w: np.ndarray):
    if path == "torch":
        return pytest.importorskip("torch").from_numpy(w)
    if path == "jax":
        return pytest.importorskip("jax", reason="jax is not installed in this venv").numpy.asarray(w)
    if path == "tensorflow":
        return pytest.importorskip("tensorflow", reason="tensorflow is not installed in this venv").constant(w)
    return w


@pytest.mark.parametrize("path", ["numba", "torch", "jax", "tensorflow"])
@pytest.mark.parametrize("kind, shape, groups", CASES)
def test_column_sums_of_every_path_equal_numpy(path, kind, shape, groups):
    w = case_kernel(shape)
    info = LayerInfo("c", kind, kind if kind == "conv" else "fc", shape)
    raw = reduce_jobs([job_for(info, framework_array(path, w), groups)], 16, on_device=path != "numba")[0]
    want = by_hand(w, kind, groups)
    np.testing.assert_allclose(raw.col_sum.reshape(want.shape), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind, shape, groups", CASES)
def test_sharded_column_sums_add_up_over_the_ranks(kind, shape, groups):
    """3 simulated ranks, each an uneven flat run of the kernel (rows and row blocks split
    between ranks): the sum all-reduce adds every rank's part, as for the row sums."""
    w = case_kernel(shape)
    info = LayerInfo("c", kind, kind if kind == "conv" else "fc", shape)
    cuts = [0, 7, w.size // 2 + 1, w.size]

    def rank(r, all_reduce):
        piece = ShardPiece(w.reshape(-1)[cuts[r]:cuts[r + 1]], cuts[r], w.size)
        return reduce_sharded([job_for(info, piece, groups)], 16, all_reduce)[0]

    want = by_hand(w, kind, groups)
    for got in ref.on_simulated_ranks(len(cuts) - 1, rank):
        np.testing.assert_allclose(got.col_sum.reshape(want.shape), want, rtol=1e-9, atol=1e-9)


def test_conv_geometry_on_the_column_sums_equals_the_unrolled_graph():
    """consumer_input_sums (stride 2, padding 1, dilation 2, 2 groups) from the fused pass's column
    sums: the weight leaving each input unit, as the out-degree of its node in the brute-force graph."""
    c_in, h, groups = 4, 7, 2
    w = RNG.normal(size=(6, c_in // groups, 3, 3))
    g = Unrolled()
    oh, ow = g.conv(grid("x", c_in, h, h), "conv", w, stride=2, padding=1, dilation=2, groups=groups)
    geo = ConvGeometry((2, 2), (2, 2), (1, 1), groups, (h, h), (oh, ow))
    info = LayerInfo("conv", "conv", "conv", w.shape)
    input_units, col_groups = column_request(info, geo)
    raw = reduce_jobs([KernelJob(w, 6, input_units, col_groups=col_groups)], 8)[0]
    got = consumer_input_sums(info, raw.col_sum, geo)
    want = np.vectorize(g.out_term, otypes=[float])(grid("x", c_in, h, h))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# -- end to end: the node strengths logged from a traced torch model ---------------------------
def logged(model, tmp_path, example, **kw):
    from weightwatch.integrations.torch import WeightWatch

    ww = WeightWatch(model, tmp_path / "run", example_input=example, **kw)
    ww.log(0)
    ww.close()
    return ww, tb_read.scalars(tb_read.weightwatch_file(tmp_path / "run"))


@pytest.mark.parametrize("exclude", [None, ["2"]])
def test_grouped_strided_dilated_convs_end_to_end(tmp_path, exclude):
    """conv -> grouped conv (stride 2, padding 1, dilation 2) -> depthwise conv -> flatten -> linear.
    Excluding the grouped conv makes it an unwatched consumer: its sums come from the fused pass too."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2), nn.ReLU(),
                          nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.Flatten(), nn.Linear(24, 3))
    g = Unrolled()
    g.conv(grid("0", 4, 6, 6), "2", model[2].weight, stride=2, padding=1, dilation=2, groups=2)
    g.conv(grid("2", 6, 2, 2), "4", model[4].weight, stride=1, padding=1, groups=6)
    g.dense([("4", c, y, x) for c in range(6) for y in range(2) for x in range(2)], "6", model[6].weight)
    ww, read = logged(model, tmp_path, torch.randn(2, 2, 6, 6), exclude=exclude)
    shapes = {"0": (4, 6, 6), "2": (6, 2, 2), "4": (6, 2, 2), "6": None}
    want = {n: expected_tags(g, n, model[int(n)].weight, model[int(n)].bias, shape and grid(n, *shape))
            for n, shape in shapes.items() if n not in (exclude or [])}
    assert compare(read, want) < TOL


class PatchTokens:
    """A ViT-style stem: a patch conv, its map read as tokens by a per-token linear layer."""

    @staticmethod
    def build():
        torch = pytest.importorskip("torch")

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv, self.fc = torch.nn.Conv2d(3, 8, 2, stride=2), torch.nn.Linear(8, 5)

            def forward(self, x):
                return self.fc(self.conv(x).flatten(2).transpose(1, 2))  # (B, tokens, 8) -> (B, tokens, 5)

        torch.manual_seed(1)
        return Net()


@pytest.mark.parametrize("include", [None, ["conv"]])
def test_per_token_linear_consumer_end_to_end(tmp_path, include):
    """Unit (c, y, x) of the conv is feature c of token y * 2 + x: the linear's column c, once per token.
    With only the conv watched, the linear is an unwatched consumer (fused pass, context job)."""
    torch = pytest.importorskip("torch")
    model = PatchTokens.build()
    w = model.fc.weight.detach().double().numpy()
    g = Unrolled()
    for c in range(8):
        for y in range(2):
            for x in range(2):
                for j in range(5):
                    g.g.add_edge(("conv", c, y, x), ("fc", y * 2 + x, j), weight=float(w[j, c]))
    ww, read = logged(model, tmp_path, torch.randn(2, 3, 4, 4), include=include)
    assert ww.flow.pairs()["conv"] == ["fc"]
    want = {"conv": expected_tags(g, "conv", model.conv.weight, model.conv.bias, grid("conv", 8, 2, 2))}
    if include is None:
        want["fc"] = expected_tags(g, "fc", model.fc.weight, model.fc.bias)
    assert compare(read, want) < TOL


def test_node_strengths_of_the_torch_ops_path_equal_the_cpu_kernels(tmp_path):
    """The same log reduced with torch ops (on_device=True) and with the numba kernels."""
    torch = pytest.importorskip("torch")
    from weightwatch.integrations.torch import WeightWatch

    model = PatchTokens.build()
    ww = WeightWatch(model, tmp_path / "run", example_input=torch.randn(2, 3, 4, 4), include=["conv"])
    tensors, context = ww.run.tensors(), ww.run._context_tensors()
    device, host = (ww.recorder.compute(0, tensors, on_device=flag, context=context) for flag in (True, False))
    for a, b in zip(device.layers, host.layers):
        np.testing.assert_allclose(a.strength.signed, b.strength.signed, rtol=1e-9, atol=1e-9)
    ww.close()


# -- each consumer kernel read once per log ------------------------------------------------------
class CountedReads:
    """A numpy-protocol array that counts how often its values are taken (each ``np.asarray``)."""

    def __init__(self, a: np.ndarray) -> None:
        self.a, self.reads = a, 0

    @property
    def shape(self) -> tuple[int, ...]:
        return self.a.shape

    def __array__(self, dtype=None, copy=None):
        self.reads += 1
        return self.a if dtype is None else self.a.astype(dtype)


def test_every_kernel_is_read_once_per_log():
    """conv -> flatten -> fc -> out, with ``out`` unwatched (a context consumer): over two logs each
    kernel, consumers included, is taken from its array exactly twice (once per log)."""
    kernels = {"conv": RNG.normal(size=(8, 3, 3, 3)), "fc": RNG.normal(size=(20, 128)), "out": RNG.normal(size=(5, 20))}
    infos = {name: LayerInfo(name, "linear" if name != "conv" else "conv", "fc", w.shape)
             for name, w in kernels.items()}
    counted = {name: CountedReads(w) for name, w in kernels.items()}
    from weightwatch.flow import order_flow

    rec = Recorder(None, [infos["conv"], infos["fc"]], flow=order_flow(list(infos.values())),
                   context=[infos["out"]])
    for step in range(2):
        snap = rec.compute(step, [LayerTensors(counted["conv"]), LayerTensors(counted["fc"])],
                           context={"out": LayerTensors(counted["out"])})
    assert {name: c.reads for name, c in counted.items()} == {"conv": 2, "fc": 2, "out": 2}
    np.testing.assert_allclose(snap.layers[1].strength.signed,  # fc: its rows plus out's columns
                               kernels["fc"].sum(axis=1) + kernels["out"].sum(axis=0), rtol=1e-12)
    rec.close()


def test_torch_ops_path_makes_one_host_transfer_per_log(monkeypatch):
    """With torch ops (the accelerator path), the consumers' sums ride in the one packed vector."""
    torch = pytest.importorskip("torch")
    from weightwatch.flow import order_flow

    shapes = {"a": (6, 4), "b": (5, 6), "c": (3, 5)}
    infos = [LayerInfo(n, "linear", "fc", s) for n, s in shapes.items()]
    tensors = [LayerTensors(torch.randn(*s)) for s in shapes.values()]
    rec = Recorder(None, infos, flow=order_flow(infos))
    transfers = []
    numpy = torch.Tensor.numpy
    monkeypatch.setattr(torch.Tensor, "numpy", lambda self, *a, **k: transfers.append(1) or numpy(self, *a, **k))
    rec.compute(0, tensors, on_device=True)
    assert len(transfers) == 1
    rec.close()
