"""The Keras callback's complex-network strength against a hand-wired unrolled graph (KERAS_BACKEND=torch).

Kernels are read in Keras' own layout here (Dense (in, out), Conv2D (kh, kw, in, out),
Flatten in H, W, C order): the graph never goes through weightwatch's conversions.
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
import tb_read
from graph_reference import Unrolled, compare, expected_tags, grid, neurons, np_of
from keras import layers

from weightwatch.integrations.keras import WeightWatchCallback

TOL = 2e-5


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


def fit_one_epoch(model, x, tmp_path, **kw):
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    cb = WeightWatchCallback(tmp_path / "run", **kw)
    model.fit(x, np.zeros((len(x), model.output_shape[-1]), "float32"), epochs=1, batch_size=4, verbose=0,
              callbacks=[cb])
    return cb, tb_read.scalars(tb_read.weightwatch_file(tmp_path / "run"))


def torch_layout(kernel) -> np.ndarray:
    """Only for the in-strength tags: (in, out) -> (out, in), (kh, kw, in, out) -> (out, in, kh, kw)."""
    k = np_of(kernel)
    return k.T if k.ndim == 2 else k.transpose(3, 2, 0, 1)


def test_keras_mlp_with_an_excluded_layer(tmp_path):
    model = keras.Sequential([keras.Input((12,)), layers.Dense(8, activation="relu", name="fc1"),
                              layers.Dense(8, activation="relu", name="fc2"), layers.Dense(4, name="out")])
    cb, read = fit_one_epoch(model, np.random.default_rng(0).normal(size=(8, 12)).astype("float32"), tmp_path,
                             exclude=["fc2"])
    k = {n: model.get_layer(n) for n in ("fc1", "fc2", "out")}
    g = Unrolled()
    g.dense(neurons("fc1", 8), "fc2", np_of(k["fc2"].kernel).T)
    g.dense(neurons("fc2", 8), "out", np_of(k["out"].kernel).T)
    assert cb.run.recorder.flow.pairs() == {"fc1": ["fc2"], "fc2": ["out"]}
    want = {n: expected_tags(g, n, torch_layout(k[n].kernel), k[n].bias) for n in ("fc1", "out")}
    worst = compare(read, want)
    print(f"max abs diff Keras MLP, fc2 excluded: {worst:.2e}")
    assert worst < TOL


def test_keras_cnn_stride_2_same_padding_into_dense(tmp_path):
    """8x8 input, 3x3 kernel, stride 2, 'same': 1 row of padding after, none before (TensorFlow's rule)."""
    model = keras.Sequential([keras.Input((8, 8, 2)), layers.Conv2D(3, 3, strides=2, padding="same", name="c1"),
                              layers.ReLU(), layers.Conv2D(4, 3, padding="same", name="c2"),
                              layers.Flatten(), layers.Dense(5, activation="relu", name="fc"),
                              layers.Dense(3, name="out")])
    cb, read = fit_one_epoch(model, np.random.default_rng(0).normal(size=(8, 8, 8, 2)).astype("float32"), tmp_path)
    c1, c2, fc, out = (model.get_layer(n) for n in ("c1", "c2", "fc", "out"))
    g = Unrolled()
    assert g.conv(grid("x", 2, 8, 8), "c1", torch_layout(c1.kernel), stride=2, padding=0, out=(4, 4)) == (4, 4)
    g.conv(grid("c1", 3, 4, 4), "c2", torch_layout(c2.kernel), stride=1, padding=1)
    dense = np_of(fc.kernel)  # (H*W*C, 5): Keras flattens channels last
    for y, x, c, j in itertools.product(range(4), range(4), range(4), range(5)):
        g.g.add_edge(("c2", c, y, x), ("fc", j), weight=dense[(y * 4 + x) * 4 + c, j])
    g.dense(neurons("fc", 5), "out", np_of(out.kernel).T)
    assert cb.run.recorder.flow.pairs() == {"c1": ["c2"], "c2": ["fc"], "fc": ["out"]}
    want = {"c1": expected_tags(g, "c1", torch_layout(c1.kernel), c1.bias, grid("c1", 3, 4, 4)),
            "c2": expected_tags(g, "c2", torch_layout(c2.kernel), c2.bias, grid("c2", 4, 4, 4)),
            "fc": expected_tags(g, "fc", torch_layout(fc.kernel), fc.bias),
            "out": expected_tags(g, "out", torch_layout(out.kernel), out.bias)}
    worst = compare(read, want)
    print(f"max abs diff Keras CNN stride 2 'same' -> Dense: {worst:.2e}")
    assert worst < TOL
