"""The Keras callback on the backend that KERAS_BACKEND names, with no torch import of its own.

The main venv runs these on the torch backend; ``make test-backends`` runs them
again in .venv-jax (jax, no torch installed) and .venv-tf (tensorflow).
References: numpy on the kernels (tests/reference.py), Keras' own History and
batch logs, TensorBoard's EventAccumulator, and weightwatch's CPU kernels for
the backend's device path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers
from sklearn.datasets import load_digits

import reference as ref
import tb_read
from weightwatch import ops
from weightwatch.integrations.keras import WeightWatchCallback

BACKEND = keras.backend.backend()
DEVICE_MODULE = {"jax": "jax_device", "tensorflow": "tf_device", "torch": "torch_device"}[BACKEND]


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


def np_of(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def digits(n: int | None = None) -> tuple[np.ndarray, ...]:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32").reshape(-1, 8, 8, 1)[:n]
    cut = len(x) * 3 // 4
    return x[:cut], y[:cut], x[cut:], y[cut:len(x)]


def digits_cnn() -> keras.Model:
    model = keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(4, 3, activation="relu", name="conv"),
                              layers.Flatten(), layers.Dense(16, activation="relu", name="fc"),
                              layers.Dense(10, name="out")], name="cnn")
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


class DeviceCalls:
    """Counts the kernels handed to the backend's device module."""

    def __init__(self, monkeypatch):
        module = __import__(f"weightwatch.ops.{DEVICE_MODULE}", fromlist=["reduce_on_device"])
        real = module.reduce_on_device
        self.kinds: list[str] = []

        def spy(jobs, bins):
            self.kinds += [ops.framework_of(job.kernel) for job in jobs]
            return real(jobs, bins)
        monkeypatch.setattr(module, "reduce_on_device", spy)


def test_fit_logs_numpy_statistics_of_the_kernels_with_keras_metric_names(tmp_path, monkeypatch):
    calls = DeviceCalls(monkeypatch)
    xtr, ytr, xva, yva = digits()
    model = digits_cnn()
    watch = WeightWatchCallback(tmp_path)
    history = model.fit(xtr, ytr, validation_data=(xva, yva), epochs=2, batch_size=128, verbose=0,
                        callbacks=[watch]).history
    path = tb_read.weightwatch_file(tmp_path)
    sc = tb_read.scalars(path)
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):  # Keras' names, Keras' values
        np.testing.assert_allclose([v for _, v in sc[metric]], history[metric], rtol=1e-6)
        assert [s for s, _ in sc[metric]] == [0, 1]
    hists = tb_read.histograms(path)
    for name in ("conv", "fc", "out"):
        kernel = np_of(model.get_layer(name).kernel)  # the weights after the last epoch, Keras layout
        for stat, value in ref.weight_stats(kernel).items():
            assert tb_read.at(sc[f"weights/{name}/{stat}"], 1) == pytest.approx(value, rel=1e-5, abs=1e-7)
        strength = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)  # per output unit
        assert tb_read.at(sc[f"node_strength/{name}/mean"], 1) == pytest.approx(strength.mean(), rel=1e-5)
        limits, counts = hists[f"weights/{name}"][-1][1:]
        edges = np.concatenate([[kernel.min()], limits])
        np.testing.assert_array_equal(counts, np.histogram(kernel.astype(np.float32), edges.astype(np.float32))[0])
    # conv -> Flatten -> fc: the conv's signed strength groups the fc inputs channel-major, as torch does
    conv, fc = (np_of(model.get_layer(n).kernel) for n in ("conv", "fc"))
    fc_torch = fc.reshape(6, 6, 4, 16).transpose(3, 2, 0, 1).reshape(16, -1)
    signed = ref.cnt_strength(conv.transpose(3, 2, 0, 1), np_of(model.get_layer("conv").bias), fc_torch)
    last = {layer.info.name: layer for layer in watch.run.recorder.last_snapshot.layers}
    np.testing.assert_allclose(last["conv"].strength.signed, signed, rtol=1e-5, atol=1e-6)
    if BACKEND == "tensorflow":  # TensorFlow's own ops did the maths, on its own tensors
        assert calls.kinds == [BACKEND] * 6
    else:  # torch / jax CPU arrays: the numba kernels on zero-copy views (accelerators: the backend's ops)
        assert calls.kinds == []


def backend_array(values: np.ndarray, dtype: str):
    return keras.ops.convert_to_tensor(values.astype("float32"), dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_device_path_gives_the_cpu_kernels_numbers_exactly(dtype):
    rng = np.random.default_rng(1)
    kernels = [rng.normal(size=(16, 144)), rng.normal(size=(8, 3, 3, 3)), np.full((4, 5), 0.25),
               rng.normal(size=(6, 10)), np.full((3, 3), np.nan), rng.normal(size=(7,))]
    kernels[3][1, 2], kernels[3][3, 4], kernels[3][0, 0] = np.nan, np.inf, -np.inf
    jobs = [ops.KernelJob(backend_array(k, dtype), k.shape[0] if k.ndim > 1 else 1,
                          k.shape[1] if k.ndim > 2 else 0,
                          bias=backend_array(rng.normal(size=k.shape[0] if k.ndim > 1 else 1), dtype),
                          sample=np.array([0, 3, 5]))
            for k in kernels]
    device = ops.reduce_jobs(jobs, 32, on_device=True)
    cpu = ops.reduce_jobs(jobs, 32, on_device=False)
    for d, c, k, job in zip(device, cpu, kernels, jobs):
        np.testing.assert_array_equal(d.counts, c.counts)
        assert d.counts.sum() == c.count == np.isfinite(k).sum() and d.nonfinite == c.nonfinite
        np.testing.assert_array_equal(d.edges, c.edges)
        np.testing.assert_array_equal([d.min, d.max], [c.min, c.max])
        np.testing.assert_allclose([d.total, d.total_sq], [c.total, c.total_sq], rtol=1e-12, atol=1e-12)
        for part in ("row_sum", "row_abs", "col_sum"):
            if getattr(c, part) is not None:
                np.testing.assert_allclose(getattr(d, part), getattr(c, part), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(d.sample, c.sample)
        np.testing.assert_array_equal(d.bias, c.bias)
        finite = np_of(job.kernel)
        finite = finite[np.isfinite(finite)]
        if finite.size:  # and both are numpy's statistics of the (rounded) weights
            assert d.total == pytest.approx(finite.sum(), rel=1e-9, abs=1e-9)


def test_update_freq_records_every_n_batches_with_keras_batch_logs(tmp_path):
    class BatchLogs(keras.callbacks.Callback):
        seen: list[float] = []

        def on_train_batch_end(self, batch, logs=None):
            self.seen.append(float(logs["loss"]))

    xtr, ytr, _, _ = digits(400)  # 300 training images, batch 100: 3 batches per epoch
    model = digits_cnn()
    logs = BatchLogs()
    model.fit(xtr, ytr, epochs=2, batch_size=100, verbose=0, callbacks=[logs, WeightWatchCallback(tmp_path, update_freq=2)])
    sc = tb_read.scalars(tb_read.weightwatch_file(tmp_path))
    assert [s for s, _ in sc["batch_loss"]] == [2, 4, 6]
    np.testing.assert_allclose([v for _, v in sc["batch_loss"]], [logs.seen[1], logs.seen[3], logs.seen[5]],
                               rtol=1e-6)
    assert [s for s, _ in sc["weights/fc/mean"]] == [2, 3, 4, 6]  # batches 2, 4, 6 and epoch ends 3, 6
    assert sc["epoch"] == [(3, 0.0), (6, 1.0)]
    every = tmp_path / "every"
    digits_cnn().fit(xtr, ytr, epochs=1, batch_size=100, verbose=0, callbacks=[WeightWatchCallback(every, update_freq="batch")])
    assert [s for s, _ in tb_read.scalars(tb_read.weightwatch_file(every))["batch_loss"]] == [1, 2, 3]
    for bad in ("often", 0, -2, 1.5):
        with pytest.raises(ValueError, match="update_freq"):
            WeightWatchCallback(tmp_path, update_freq=bad)
    with pytest.raises(ValueError, match="not both"):
        WeightWatchCallback(tmp_path, update_freq=2, every_n_batches=2)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                    reason="keras.callbacks.TensorBoard writes with tensorflow, which is not installed here")
def test_beside_keras_tensorboard_in_the_same_log_dir(tmp_path):
    from weightwatch.analysis.loading.find import find_runs

    xtr, ytr, xva, yva = digits(600)
    model = digits_cnn()
    run = tmp_path / "run"
    history = model.fit(xtr, ytr, validation_data=(xva, yva), epochs=2, batch_size=100, verbose=0,
                        callbacks=[keras.callbacks.TensorBoard(run, histogram_freq=1),
                                   WeightWatchCallback(run)]).history
    ours = tb_read.scalars(tb_read.weightwatch_file(run))
    np.testing.assert_allclose([v for _, v in ours["val_accuracy"]], history["val_accuracy"], rtol=1e-6)
    assert tb_read.at(ours["weights/out/mean"], 1) == pytest.approx(np_of(model.get_layer("out").kernel).mean(),
                                                                    rel=1e-5, abs=1e-7)
    train, validation = tb_read.load(run / "train"), tb_read.load(run / "validation")  # Keras' own, intact
    assert [e.step for e in train.Tensors("epoch_loss")] == [0, 1]
    keras_val = [float(tensor_value(e)) for e in validation.Tensors("epoch_accuracy")]
    np.testing.assert_allclose(keras_val, history["val_accuracy"], rtol=1e-6)
    assert any(tag.endswith("kernel/histogram") for tag in train.Tags()["tensors"])
    assert find_runs(tmp_path) == [run]  # Keras' train/ and validation/ are not runs of their own


def tensor_value(event) -> np.ndarray:
    from tensorboard.util import tensor_util

    return tensor_util.make_ndarray(event.tensor_proto)


NO_TORCH_SCRIPT = """
import sys
import weightwatch, weightwatch.integrations.keras as wk
sys.path.insert(0, sys.argv[2])
from test_keras_backends import digits, digits_cnn
xtr, ytr, xva, yva = digits(400)
for seed in range(2):
    digits_cnn().fit(xtr, ytr, validation_data=(xva, yva), epochs=2, batch_size=100, verbose=0,
                     callbacks=[wk.WeightWatchCallback(f"{sys.argv[1]}/s{seed}")])
from weightwatch.cli import main
code = main(["compare", sys.argv[1], "--out", sys.argv[1] + "/report", "--no-figures", "--workers", "1"])
print("torch imported:", "torch" in sys.modules, "exit", code)
"""


@pytest.mark.skipif(BACKEND == "torch", reason="the torch backend imports torch itself")
def test_no_torch_import_to_log_and_compare(tmp_path):
    if os.environ.get("WEIGHTWATCH_EXPECT_NO_TORCH"):  # make test-backends: the jax venv has no torch at all
        assert importlib.util.find_spec("torch") is None, "this venv should not have torch installed"
    proc = subprocess.run([sys.executable, "-c", NO_TORCH_SCRIPT, str(tmp_path), str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "torch imported: False exit 0" in proc.stdout, proc.stdout[-2000:]
    assert (tmp_path / "report" / "index.html").is_file()
    assert len(tb_read.event_files(tmp_path / "s1")) == 1


DATA_PARALLEL_SCRIPT = """
import json, sys
import jax, keras, numpy as np
sys.path.insert(0, sys.argv[2])
from test_keras_backends import digits, digits_cnn
import weightwatch.recorder as recorder
from weightwatch.integrations.keras import WeightWatchCallback
assert len(jax.devices()) == 2, jax.devices()
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
devices = []
real = recorder.reduce_jobs
def spy(jobs, bins, **kw):
    devices.extend(len(job.kernel.sharding.device_set) for job in jobs)
    return real(jobs, bins, **kw)
recorder.reduce_jobs = spy
keras.utils.set_random_seed(0)
xtr, ytr, xva, yva = digits(512)
model = digits_cnn()
watch = WeightWatchCallback(sys.argv[1], update_freq=3)
model.fit(xtr, ytr, validation_data=(xva, yva), epochs=2, batch_size=64, verbose=0, callbacks=[watch])
# the jax.numpy path on the replicated arrays, where they live
snap = watch.run.recorder.compute(0, watch.run.tensors(), on_device=True)
print(json.dumps({"devices": sorted(set(devices)),
                  "jnp": {l.info.name: [l.weights.mean, l.weights.std] for l in snap.layers}}))
np.savez(sys.argv[1] + "/../kernels.npz",
         **{n: keras.ops.convert_to_numpy(model.get_layer(n).kernel) for n in ("conv", "fc", "out")})
"""


@pytest.mark.skipif(BACKEND != "jax" or not hasattr(getattr(keras, "distribution", None), "DataParallel"),
                    reason="keras.distribution.DataParallel runs on the jax backend only")
def test_data_parallel_on_two_jax_devices_one_writer_exact_numbers(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", DATA_PARALLEL_SCRIPT, str(run), str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == [2]  # every kernel handed over lives on both devices
    assert len(tb_read.event_files(run)) == 1  # one writer
    sc = tb_read.scalars(tb_read.weightwatch_file(run))
    kernels = np.load(tmp_path / "kernels.npz")
    last = sc["weights/fc/mean"][-1][0]  # the end of epoch 2: 384 images, 6 batches of 64 per epoch
    assert last == 12 and [s for s, _ in sc["batch_loss"]] == [3, 6, 9, 12]
    for name in ("conv", "fc", "out"):
        for stat, value in ref.weight_stats(kernels[name]).items():
            assert tb_read.at(sc[f"weights/{name}/{stat}"], last) == pytest.approx(value, rel=1e-5, abs=1e-7)
        assert out["jnp"][name] == pytest.approx([kernels[name].mean(), kernels[name].std()], rel=1e-6, abs=1e-9)
