"""After construction, weightwatch never raises into the training loop: one warning, skip, go on.

Each situation runs a real training loop (SGD on random data) with
``strict=False`` (the suite's default is strict, see conftest.py) and reads
the run back with TensorBoard's own reader.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import tb_read
from weightwatch.integrations._guard import WeightWatchWarning
from weightwatch.integrations.torch import WeightWatch

EPOCHS = 4


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def train(model: nn.Module, ww: WeightWatch, epochs: int = EPOCHS, before_log=None, metrics=None) -> list:
    """SGD for ``epochs``; ``before_log(epoch)`` may break things; returns the weightwatch warnings."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1) if params else None
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(epochs):
            loss = nn.functional.cross_entropy(model(x), y)
            if opt is not None:
                opt.zero_grad()
                loss.backward()
                opt.step()
            if before_log is not None:
                before_log(epoch)
            ww.log(epoch, loss=loss.item(), **(metrics(epoch) if metrics else {}))
        ww.close()
    return [str(w.message) for w in caught if issubclass(w.category, WeightWatchWarning)]


def steps(run, tag="weights/0/mean") -> list[int]:
    return [s for s, _ in tb_read.scalars(run).get(tag, [])]


def test_log_dir_deleted_mid_run_is_made_again(tmp_path):
    import shutil

    model, run = mlp(), tmp_path / "run"
    ww = WeightWatch(model, run, strict=False)
    said = train(model, ww, before_log=lambda e: shutil.rmtree(run) if e == 2 else None)
    assert len(said) == 1 and "was deleted" in said[0] and str(run) in said[0]
    assert steps(run) == [2, 3]  # logging went on in the directory made again
    assert json.loads((run / "weightwatch.json").read_text())["layers"]


def test_full_disk_drops_that_log_and_resumes(tmp_path, monkeypatch):
    model, run = mlp(), tmp_path / "run"
    ww = WeightWatch(model, run, strict=False)
    real_write = ww.recorder.writer._file.write

    def flaky(epoch):  # ENOSPC for epoch 1's write, after half of it reached the disk: a torn record
        if epoch != 1:
            return
        ww.recorder.flush()  # epoch 0 is on disk before the file is swapped (its write may still be queued)
        failed = []

        def write(data):  # fails once (the writer thread writes epoch 1 after log(1) returned), then heals
            if failed:
                return real_write(data)
            failed.append(True)
            real_write(bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device", str(ww.recorder.writer.path))
        monkeypatch.setattr(ww.recorder.writer, "_file", _FileWith(ww.recorder.writer._file, write))
    said = train(model, ww, before_log=flaky)
    assert len(said) == 1 and "No space left" in said[0] and "resumes" in said[0]
    assert steps(run) == [0, 2, 3]  # epoch 1 lost, nothing torn: TensorBoard reads every later record
    assert steps(run, "loss") == [0, 2, 3]


class _FileWith:
    """A file object whose write() is replaced (the rest is the real file)."""

    def __init__(self, real, write):
        self._real, self.write = real, write

    def __getattr__(self, name):
        return getattr(self._real, name)


def test_read_only_directory_skips_the_sketch_and_keeps_the_scalars(tmp_path, monkeypatch):
    import weightwatch.recorder as recorder_module

    model, run = mlp(), tmp_path / "run"
    ww = WeightWatch(model, run, strict=False)
    real = recorder_module.write_sketch

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system", str(run / "weightwatch_sketch.npz.tmp"))
    monkeypatch.setattr(recorder_module, "write_sketch", read_only)
    said = train(model, ww, epochs=2)
    monkeypatch.setattr(recorder_module, "write_sketch", real)
    assert len(said) == 1 and "Read-only file system" in said[0] and "weightwatch_sketch.npz" in said[0]
    assert steps(run) == [0, 1] and not (run / "weightwatch_sketch.npz").exists()


def test_sigkill_after_epoch_k_reads_back_complete(tmp_path):
    tb_read.train_and_kill(str(tmp_path / "killed"), epoch=2)
    run = tmp_path / "killed"
    sc = tb_read.scalars(run)
    assert [s for s, _ in sc["weights/0/mean"]] == [0, 1, 2] and [s for s, _ in sc["val_accuracy"]] == [0, 1, 2]
    assert len(tb_read.load(run).Histograms("weights/0")) == 3
    out = subprocess.run([sys.executable, "-m", "weightwatch.cli", "compare", str(tmp_path), "--json", "--no-figures",
                          "--no-tensorboard", "--no-cache", "--workers", "1", "--out", str(tmp_path / "report")],
                         capture_output=True, text=True, timeout=300)
    report = json.loads(out.stdout)
    assert report["runs"]["killed"]["value"] == pytest.approx(0.7, rel=1e-6), out.stderr[-2000:]  # epoch 2's


def test_two_runs_into_one_log_dir_overwrite_nothing(tmp_path):
    a, b = mlp(), nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    with pytest.warns(RuntimeWarning, match="another run is writing"):
        wa, wb = WeightWatch(a, tmp_path / "run", strict=False), WeightWatch(b, tmp_path / "run", strict=False)
    assert wb.log_dir == tmp_path / "run_2"
    train(a, wa, epochs=2)
    train(b, wb, epochs=2)
    for run, width in ((tmp_path / "run", 8), (tmp_path / "run_2", 5)):
        assert steps(run) == [0, 1]
        assert json.loads((run / "weightwatch.json").read_text())["layers"][0]["shape"] == [width, 6]
    with WeightWatch(mlp(), tmp_path / "run") as again:  # the lock went with the first run
        assert again.log_dir == tmp_path / "run"


def test_nonfinite_weights_are_counted_and_training_goes_on(tmp_path):
    model = mlp()

    def poison(epoch):
        if epoch == 1:
            with torch.no_grad():
                model[0].weight[0, 0], model[0].weight[1, 1] = float("nan"), float("inf")
    said = train(model, WeightWatch(model, tmp_path / "run", strict=False), before_log=poison, epochs=2)
    assert not said
    sc = tb_read.scalars(tmp_path / "run")
    assert tb_read.at(sc["weights/0/nonfinite"], 1) >= 2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_types_log_their_values(tmp_path, dtype):
    model = mlp().to(dtype)
    with WeightWatch(model, tmp_path / "run", strict=True) as ww:
        ww.log(0)
    w = model[0].weight.detach().double().numpy()
    assert tb_read.at(tb_read.scalars(tmp_path / "run")["weights/0/mean"], 0) == pytest.approx(w.mean(), rel=1e-6)


def test_size_zero_and_one_parameters(tmp_path):
    model = nn.Sequential(nn.Linear(1, 1), nn.Linear(1, 0))
    ww = WeightWatch(model, tmp_path / "run", strict=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ww.log(0)
        ww.close()
    said = [str(w.message) for w in caught if issubclass(w.category, WeightWatchWarning)]
    sc = tb_read.scalars(tmp_path / "run")
    assert tb_read.at(sc["weights/0/mean"], 0) == pytest.approx(model[0].weight.item())
    assert tb_read.at(sc["weights/0/std"], 0) == 0.0
    assert said == [] or all("'1'" in s for s in said)  # the empty layer is logged or skipped with its name


def test_tied_weights_are_logged_once(tmp_path):
    enc, dec = nn.Linear(6, 6, bias=False), nn.Linear(6, 6, bias=False)
    dec.weight = enc.weight
    model = nn.Sequential(enc, nn.Tanh(), dec)
    ww = WeightWatch(model, tmp_path / "run", strict=True)
    assert [layer.name for layer in ww.layers] == ["0"]
    ww.close()


def test_weight_norm_and_parametrized_layers_log_the_effective_weight(tmp_path):
    from torch.nn.utils import parametrize
    from torch.nn.utils.parametrizations import weight_norm

    class Doubled(nn.Module):
        def forward(self, w):
            return 2 * w

    torch.manual_seed(0)
    model = nn.Sequential(weight_norm(nn.Linear(6, 8)), nn.ReLU(), nn.Linear(8, 3))
    parametrize.register_parametrization(model[2], "weight", Doubled())
    said = train(model, WeightWatch(model, tmp_path / "run", strict=False), epochs=2)
    assert not said
    sc = tb_read.scalars(tmp_path / "run")
    for name, module in (("0", model[0]), ("2", model[2])):
        w = module.weight.detach().double().numpy()  # what forward uses, after the last step
        assert tb_read.at(sc[f"weights/{name}/mean"], 1) == pytest.approx(w.mean(), rel=1e-5)
        assert tb_read.at(sc[f"weights/{name}/l2"], 1) == pytest.approx(np.sqrt((w * w).sum()), rel=1e-5)


def test_meta_parameters_are_skipped_until_materialised(tmp_path):
    with torch.device("meta"):
        model = mlp()
    ww = WeightWatch(model, tmp_path / "run", strict=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ww.log(0)
        model.to_empty(device="cpu")
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(0.5)
        ww.log(1)
        ww.close()
    said = [str(w.message) for w in caught if issubclass(w.category, WeightWatchWarning)]
    assert len(said) == 2 and all("meta device" in s for s in said)  # one per layer, said once
    assert steps(tmp_path / "run") == [1] and tb_read.at(tb_read.scalars(tmp_path / "run")["weights/0/mean"], 1) == 0.5


def test_compiled_model_has_the_users_names(tmp_path):
    model = mlp()
    compiled = torch.compile(model, backend="eager")
    said = train(compiled, WeightWatch(compiled, tmp_path / "run", strict=False), epochs=2)
    assert not said and steps(tmp_path / "run") == [0, 1]
    assert not any("_orig_mod" in tag for tag in tb_read.scalars(tmp_path / "run"))


def test_replaced_parameters_and_added_layers(tmp_path):
    model = mlp()
    ww = WeightWatch(model, tmp_path / "run", strict=False)

    def change(epoch):
        if epoch == 1:  # a new parameter object, as some fine-tuning code does
            model[0].weight = nn.Parameter(torch.full((8, 6), 0.25))
        if epoch == 2:
            model.append(nn.Linear(3, 3))
        if epoch == 3:
            model[2].weight = nn.Parameter(torch.zeros(4, 8))  # another shape: skipped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(EPOCHS):
            change(epoch)
            ww.log(epoch)
        ww.close()
    said = [str(w.message) for w in caught if issubclass(w.category, WeightWatchWarning)]
    sc = tb_read.scalars(tmp_path / "run")
    assert tb_read.at(sc["weights/0/mean"], 1) == 0.25  # the parameter in the model now
    assert len(said) == 2 and "did not have when the WeightWatch was made" in said[0] and "shape (4, 8)" in said[1]
    assert [s for s, _ in sc["weights/2/mean"]] == [0, 1, 2]


def test_frozen_model_logs_the_same_numbers(tmp_path):
    model = mlp().requires_grad_(False)
    said = train(model, WeightWatch(model, tmp_path / "run", strict=False), epochs=3)
    values = [v for _, v in tb_read.scalars(tmp_path / "run")["weights/0/std"]]
    assert not said and len(values) == 3 and len(set(values)) == 1


def test_odd_metrics_and_hparams(tmp_path):
    model = mlp()
    hparams = {"lr": torch.tensor(0.1), "layers": [8, 3], "opt": None, "beta": np.float32(0.9), 3: "x"}
    ww = WeightWatch(model, tmp_path / "run", hparams=hparams, strict=False)
    said = train(model, ww, epochs=2, metrics=lambda e: {
        "t": torch.tensor(1.5), "np": np.float64(2.5), "none": None, "name": "resnet",
        "weights/0/mean": 99.0, "vec": torch.ones(3)})
    sc = tb_read.scalars(tmp_path / "run")
    assert sc["t"] == [(0, 1.5), (1, 1.5)] and sc["np"] == [(0, 2.5), (1, 2.5)]
    assert all(v != 99.0 for _, v in sc["weights/0/mean"])  # the weight statistic is not overwritten
    assert sorted(s.split("'")[1] for s in said) == ["name", "none", "vec", "weights/0/mean"]  # one each
    saved = json.loads((tmp_path / "run" / "weightwatch.json").read_text())["hparams"]
    assert saved["beta"] == pytest.approx(0.9) and saved["3"] == "x"


@pytest.mark.parametrize("problem", ["missing", "damaged"])
def test_unusable_reference_is_one_warning(tmp_path, problem):
    ref = tmp_path / "reference.ww"
    if problem == "damaged":
        ref.write_bytes(b"not a reference")
    model = mlp()
    with pytest.warns(WeightWatchWarning, match="cannot be read"):
        ww = WeightWatch(model, tmp_path / "run", reference=ref, strict=False)
    said = train(model, ww, epochs=2)
    assert not said and steps(tmp_path / "run") == [0, 1]
    assert not list((tmp_path / "run").glob("*.tmp"))
