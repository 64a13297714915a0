"""The Keras 3 callback (on the torch backend here; jax in a subprocess when installed).

References: what Keras itself computes (a kernel in the core's layout, fed to
torch's own functional ops, must give the Keras layer's output), Keras'
History, and the slow numpy statistics in tests/reference.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import torch
from keras import layers
from sklearn.datasets import load_digits
from torch.nn import functional as F

import reference as ref
import tb_read
from weightwatch.integrations.keras import WeightWatchCallback, discover_layers
from weightwatch.recorder import Recorder

@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


def np_of(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x).astype(np.float64)


def single(layer: layers.Layer, shape: tuple[int, ...]) -> keras.Model:
    inp = keras.Input(shape)
    return keras.Model(inp, layer(inp), name="single")


def found(model: keras.Model, **kw) -> dict:
    return {info.name: (info, source) for info, source in discover_layers(model, **kw)}


LAYERS = [
    pytest.param(lambda: layers.Dense(5, name="layer"), (7,), F.linear, id="dense"),
    pytest.param(lambda: layers.Conv1D(4, 3, name="layer"), (9, 3), F.conv1d, id="conv1d"),
    pytest.param(lambda: layers.Conv2D(4, (3, 2), name="layer"), (6, 5, 3), F.conv2d, id="conv2d"),
    pytest.param(lambda: layers.Conv2D(4, 3, groups=2, name="layer"), (6, 6, 4), F.conv2d, id="conv2d-groups"),
    pytest.param(lambda: layers.Conv3D(2, 2, name="layer"), (4, 4, 4, 3), F.conv3d, id="conv3d"),
]


@pytest.mark.parametrize("make, shape, op", LAYERS)
def test_kernels_in_torch_layout_compute_what_keras_computes(make, shape, op):
    layer = make()
    info, source = found(single(layer, shape))["layer"]
    t = source.tensors()
    assert isinstance(t.kernel, torch.Tensor) and tuple(t.kernel.shape) == info.shape and info.has_bias
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype("float32")
    want = np_of(layer(x))
    xt = torch.from_numpy(x)
    if op is F.linear:
        assert info.kind == "linear"
        got = F.linear(xt, t.kernel, t.bias)
    else:  # torch convolves channels-first inputs
        assert info.kind == "conv"
        channels_first = xt.permute(0, -1, *range(1, xt.dim() - 1))
        got = op(channels_first, t.kernel, t.bias, groups=layer.groups).permute(0, *range(2, xt.dim()), 1)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-5, atol=1e-5)


def test_kernels_are_views_of_the_variables():
    model = keras.Sequential([keras.Input((6, 6, 2)), layers.Conv2D(3, 3, name="conv"),
                              layers.GlobalAveragePooling2D(), layers.Dense(4, name="fc")])
    for info, source in discover_layers(model):
        layer = model.get_layer(info.name)
        kernel = source.tensors().kernel
        assert kernel.untyped_storage().data_ptr() == layer.kernel.value.untyped_storage().data_ptr()
        layer.kernel.assign(np.zeros(layer.kernel.shape, "float32"))
        assert float(source.tensors().kernel.abs().sum()) == 0.0  # read live, not a copy taken at discovery


def test_attention_projections_match_torch_multihead_attention():
    e, heads = 8, 2
    mha = layers.MultiHeadAttention(num_heads=heads, key_dim=e // heads, name="mha")
    x = np.random.default_rng(1).normal(size=(2, 5, e)).astype("float32")
    want = np_of(mha(x, x))
    layers_ = found(keras.Sequential([mha]))
    assert list(layers_) == ["mha.q_proj", "mha.k_proj", "mha.v_proj", "mha.out_proj"]
    t = {name.split(".")[-1]: source.tensors() for name, (_, source) in layers_.items()}
    for name, (info, _) in layers_.items():
        assert info.kind == "attention" and info.role == "attn" and info.shape == (e, e)
        assert info.heads == (1 if name.endswith("out_proj") else heads)
    torch_mha = torch.nn.MultiheadAttention(e, heads, batch_first=True)
    with torch.no_grad():
        torch_mha.in_proj_weight.copy_(torch.cat([t[p].kernel for p in ("q_proj", "k_proj", "v_proj")]))
        torch_mha.in_proj_bias.copy_(torch.cat([t[p].bias for p in ("q_proj", "k_proj", "v_proj")]))
        torch_mha.out_proj.weight.copy_(t["out_proj"].kernel)
        torch_mha.out_proj.bias.copy_(t["out_proj"].bias)
        xt = torch.from_numpy(x)
        got = torch_mha(xt, xt, xt, need_weights=False)[0]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_attention_node_strength_per_head_from_keras_layout(tmp_path):
    """key_dim != E / heads: the projection has heads * key_dim output units."""
    mha = layers.MultiHeadAttention(num_heads=3, key_dim=5, value_dim=2, name="mha")
    x = np.zeros((1, 4, 6), "float32")
    mha(x, x)
    model = keras.Sequential([mha])
    pairs = discover_layers(model)
    infos = {info.name: info for info, _ in pairs}
    assert infos["mha.q_proj"].shape == (15, 6) and infos["mha.v_proj"].shape == (6, 6)
    assert infos["mha.out_proj"].shape == (6, 6)
    rec = Recorder(tmp_path, [i for i, _ in pairs])
    snap = {s.info.name: s for s in rec.compute(0, [src.tensors() for _, src in pairs]).layers}
    q = np_of(mha.query_dense.kernel)  # (E, heads, key_dim)
    s = np.array([[sum(abs(q[i, h, d]) for i in range(6)) for d in range(5)] for h in range(3)])
    np.testing.assert_allclose(snap["mha.q_proj"].strength.strength, s.reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(snap["mha.q_proj"].strength.head_means, s.mean(axis=1), rtol=1e-6)
    o = np_of(mha.output_dense.kernel)  # (heads, value_dim, E)
    np.testing.assert_allclose(snap["mha.out_proj"].strength.strength, np.abs(o).sum(axis=(0, 1)), rtol=1e-6)
    rec.close()


def test_dense_after_channels_last_conv_reads_channel_major(tmp_path):
    """Conv2D -> Flatten -> Dense: the Dense kernel is what a torch Linear after nn.Flatten holds,
    so the conv's signed strength sums the right inputs."""
    conv, dense = layers.Conv2D(3, 3, name="conv"), layers.Dense(4, name="fc")
    model = keras.Sequential([keras.Input((5, 5, 2)), conv, layers.BatchNormalization(name="bn"),
                              layers.Flatten(), dense])
    pairs = discover_layers(model)
    t = {info.name: source.tensors() for info, source in pairs}
    assert [info.name for info, _ in pairs] == ["conv", "bn", "fc"]
    x = np.random.default_rng(2).normal(size=(2, 5, 5, 2)).astype("float32")
    hidden = conv(x)  # (2, 3, 3, 3) channels last
    want = np_of(dense(keras.ops.reshape(hidden, (2, -1))))
    torch_flat = hidden.detach().permute(0, 3, 1, 2).reshape(2, -1)  # what nn.Flatten sees in torch
    np.testing.assert_allclose(F.linear(torch_flat, t["fc"].kernel, t["fc"].bias).numpy(), want, rtol=1e-5,
                               atol=1e-5)
    rec = Recorder(tmp_path, [i for i, _ in pairs])
    snap = {s.info.name: s for s in rec.compute(0, [src.tensors() for _, src in pairs]).layers}
    w_conv = np_of(conv.kernel).transpose(3, 2, 0, 1)
    np.testing.assert_allclose(snap["conv"].strength.signed,
                               ref.cnt_strength(w_conv, np_of(conv.bias), t["fc"].kernel.double().numpy()),
                               rtol=1e-6, atol=1e-9)
    rec.close()


class Block(layers.Layer):
    """A transformer-ish block: attention, a norm and a two-layer MLP."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.attn = layers.MultiHeadAttention(2, 4, name="attn")
        self.ln = layers.LayerNormalization(name="ln")
        self.up = layers.Dense(16, name="up")
        self.down = layers.Dense(8, name="down")

    def call(self, x):
        x = self.ln(x + self.attn(x, x))
        return x + self.down(self.up(x))


def tiny_transformer() -> keras.Model:
    inp = keras.Input((6,), dtype="int32")
    x = layers.Embedding(20, 8, name="embed")(inp)
    x = Block(name="block")(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = keras.Sequential([layers.Dense(6, name="hidden"), layers.Dense(3, name="logits")], name="head")(x)
    return keras.Model(inp, x, name="tiny")


def test_names_roles_and_order_follow_the_torch_integration():
    pairs = discover_layers(tiny_transformer())
    got = [(i.name, i.kind, i.role) for i, _ in pairs]
    assert got == [
        ("embed", "embed", "embed"),
        ("block.attn.q_proj", "attention", "attn"), ("block.attn.k_proj", "attention", "attn"),
        ("block.attn.v_proj", "attention", "attn"), ("block.attn.out_proj", "attention", "attn"),
        ("block.ln", "norm", "norm"), ("block.up", "linear", "mlp"), ("block.down", "linear", "mlp"),
        ("head.hidden", "linear", "fc"), ("head.logits", "linear", "output"),
    ]
    kept = discover_layers(tiny_transformer(), include=["block.*"], exclude=["*_proj"], roles={"block.ln": "mlp"})
    assert [(i.name, i.role) for i, _ in kept] == [("block.ln", "mlp"), ("block.up", "mlp"), ("block.down", "mlp")]


def test_norms_and_embedding_are_read_unchanged():
    inp = keras.Input((4, 6))
    x = layers.LayerNormalization(name="ln")(inp)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.GroupNormalization(groups=2, name="gn")(x)
    x = layers.RMSNormalization(name="rms")(x)
    x = layers.LayerNormalization(scale=False, center=False, name="plain")(x)
    model = keras.Model(inp, layers.Dense(2, name="out")(x))
    pairs = found(model)
    assert list(pairs) == ["ln", "bn", "gn", "rms", "out"]  # nothing learnable in "plain"
    for name in ("ln", "bn", "gn"):
        info, source = pairs[name]
        layer = model.get_layer(name)
        np.testing.assert_array_equal(source.tensors().kernel.numpy(), np_of(layer.gamma))
        np.testing.assert_array_equal(source.tensors().bias.numpy(), np_of(layer.beta))
        assert info.kind == info.role == "norm" and info.shape == (6,)
    assert pairs["rms"][1].tensors().bias is None


def test_no_watchable_layer_and_bad_options():
    model = keras.Sequential([keras.Input((4,)), layers.Activation("relu")])
    with pytest.raises(ValueError, match="no layer it can watch.*Activation"):
        discover_layers(model)
    with pytest.raises(ValueError, match="leave no layer"):
        discover_layers(single(layers.Dense(2), (3,)), include=["nothing*"])
    with pytest.raises(TypeError, match="Keras model"):
        discover_layers(torch.nn.Linear(2, 2))
    for bad in ({"every_n_batches": 0}, {"schedule": "often"}, {"bins": 1}):
        with pytest.raises((TypeError, ValueError)):
            WeightWatchCallback("unused", **bad)


def digits(n: int | None = None) -> tuple[np.ndarray, ...]:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32").reshape(-1, 8, 8, 1)[:n]
    return x[: len(x) * 3 // 4], y[: len(x) * 3 // 4], x[len(x) * 3 // 4:], y[len(x) * 3 // 4:n]


def digits_cnn() -> keras.Model:
    model = keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(4, 3, activation="relu", name="conv"),
                              layers.Flatten(), layers.Dense(16, activation="relu", name="fc"),
                              layers.Dense(10, name="out")], name="cnn")
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def test_fit_two_epochs_on_digits_reads_back_with_tensorboard(tmp_path):
    xtr, ytr, xva, yva = digits()
    model = digits_cnn()
    cb = WeightWatchCallback(tmp_path / "run", hparams={"lr": 3e-3})
    history = model.fit(xtr, ytr, validation_data=(xva, yva), epochs=2, batch_size=128, callbacks=[cb],
                        verbose=0).history
    path = tb_read.weightwatch_file(tmp_path / "run")
    sc = tb_read.scalars(path)
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert [s for s, _ in sc[metric]] == [0, 1]
        np.testing.assert_allclose([v for _, v in sc[metric]], history[metric], rtol=1e-6)
    for name in ("conv", "fc", "out"):
        kernel = np_of(model.get_layer(name).kernel)
        want = ref.weight_stats(kernel)
        for stat in ("mean", "std", "min", "max", "l2"):
            assert tb_read.at(sc[f"weights/{name}/{stat}"], 1) == pytest.approx(want[stat], rel=1e-5, abs=1e-7)
        strength = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)  # per output unit, Keras layout
        assert tb_read.at(sc[f"node_strength/{name}/mean"], 1) == pytest.approx(strength.mean(), rel=1e-5)
        hist = tb_read.histograms(path)[f"weights/{name}"]
        assert [s for s, _, _ in hist] == [0, 1] and hist[-1][2].sum() == kernel.size
    info = json.loads((tmp_path / "run" / "weightwatch.json").read_text())
    assert info["framework"] == "keras" and [layer["name"] for layer in info["layers"]] == ["conv", "fc", "out"]
    assert info["layers"][1]["shape"] == [16, 144] and info["hparams"] == {"lr": 3e-3}
    assert cb.run.recorder.closed


def test_every_n_batches_counts_batches_and_schedule_thins_epochs(tmp_path):
    xtr, ytr, _, _ = digits(400)  # 300 training images, batch 100: 3 batches per epoch
    model = digits_cnn()
    cb = WeightWatchCallback(tmp_path, every_n_batches=2, schedule=2)
    model.fit(xtr, ytr, epochs=3, batch_size=100, callbacks=[cb], verbose=0)
    sc = tb_read.scalars(tb_read.weightwatch_file(tmp_path))
    # batches 2, 4, 6, 8 (every 2); epoch ends at 3, 6, 9, with weights at epochs 0 and 2 (schedule=2)
    assert [s for s, _ in sc["weights/fc/mean"]] == [2, 3, 4, 6, 8, 9]
    assert sc["epoch"] == [(3, 0.0), (6, 1.0), (9, 2.0)]
    assert [s for s, _ in sc["loss"]] == [3, 6, 9]


def test_a_second_fit_opens_a_new_event_file(tmp_path):
    xtr, ytr, _, _ = digits(200)
    model = digits_cnn()
    cb = WeightWatchCallback(tmp_path)
    for _ in range(2):
        model.fit(xtr, ytr, epochs=1, batch_size=150, callbacks=[cb], verbose=0)
    assert len(tb_read.event_files(tmp_path)) == 2


def test_example_script(tmp_path):
    proc = tb_read.run_example("keras_digits.py", tmp_path, "--epochs", "2")
    accuracy = float(proc.stdout.split("val_accuracy")[1].split()[0])
    sc = tb_read.scalars(tb_read.weightwatch_file(tmp_path))
    assert tb_read.at(sc["val_accuracy"], 1) == pytest.approx(accuracy, abs=5e-4)
    assert {"weights/conv/mean", "weights/fc/std", "node_strength/out/fluctuation"} <= set(sc)


JAX_SCRIPT = """
import sys
import keras, numpy as np
from weightwatch.integrations.keras import WeightWatchCallback
keras.utils.set_random_seed(0)
inp = keras.Input((6, 6, 2))
x = keras.layers.Conv2D(3, 3, name="conv")(inp)
x = keras.layers.Reshape((16, 3))(x)
x = keras.layers.MultiHeadAttention(1, 3, name="mha")(x, x)
out = keras.layers.Dense(4, name="out")(keras.layers.Flatten()(x))
model = keras.Model(inp, out)
cb = WeightWatchCallback(sys.argv[1])
cb.set_model(model)
cb.on_train_begin()
cb.on_epoch_end(0, {"loss": 0.5})
cb.on_train_end()
kernels = {w.path.replace("/", "."): keras.ops.convert_to_numpy(w.value) for w in model.weights}
np.savez(sys.argv[2], backend=keras.backend.backend(), **kernels)
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_callback_on_the_jax_backend(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(tmp_path / "run"), str(tmp_path / "w.npz")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w = np.load(tmp_path / "w.npz")
    assert str(w["backend"]) == "jax"
    sc = tb_read.scalars(tb_read.weightwatch_file(tmp_path / "run"))
    q = w["mha.query.kernel"]  # (E, heads, key_dim)
    references = {
        "conv": w["conv.kernel"], "out": w["out.kernel"], "mha.q_proj": q,
        "mha.out_proj": w["mha.attention_output.kernel"],
    }
    for name, kernel in references.items():
        for stat, value in ref.weight_stats(kernel).items():
            assert tb_read.at(sc[f"weights/{name}/{stat}"], 0) == pytest.approx(value, rel=1e-5, abs=1e-7)
    s_q = np.abs(q).sum(axis=0).reshape(-1)  # per (head, unit): the sum over the E inputs
    assert tb_read.at(sc["node_strength/mha.q_proj/mean"], 0) == pytest.approx(s_q.mean(), rel=1e-5)
    assert tb_read.at(sc["node_strength/mha.q_proj/std"], 0) == pytest.approx(s_q.std(), rel=1e-4)
    assert sc["loss"] == [(0, 0.5)]


def test_a_missing_backend_is_named():
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("tensorflow is installed")
    proc = subprocess.run([sys.executable, "-c", "import weightwatch.integrations.keras"], capture_output=True,
                          text=True, env=env, timeout=120)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and last.startswith("ImportError") and "KERAS_BACKEND" in last, proc.stderr
    assert "'tensorflow'" in last
