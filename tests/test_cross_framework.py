"""The same network in Keras and in PyTorch, with identical weights, gives identical records
through the four integrations (torch, Keras, Lightning, Hugging Face).

The weights are copied from the torch network into the Keras one by the
test's own conversion (below), checked first by comparing the two networks'
outputs on real digits; then every scalar, histogram and sketch value
written by each integration is compared with the plain PyTorch integration's.
Training runs at learning rate 0, so the weights stay the ones compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import keras  # noqa: E402
import lightning.pytorch as pl  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from torch import nn  # noqa: E402

import tb_read  # noqa: E402
from weightwatch.integrations import hf, lightning  # noqa: E402
from weightwatch.integrations import keras as ww_keras  # noqa: E402
from weightwatch.integrations.torch import WeightWatch  # noqa: E402
from weightwatch.sketch import read_sketch  # noqa: E402

transformers.logging.set_verbosity_error()
CHANNELS, HEADS, SIDE = 4, 2, 6  # conv channels = attention width; 8x8 images -> 6x6 maps


class Net(nn.Module):
    """conv -> (attention over the 36 positions, layer norm) -> flatten -> fc -> out.

    With ``attention=False``: conv -> flatten -> fc -> out, where fc reads the
    conv's channel-major flattening.
    """

    def __init__(self, attention: bool = True) -> None:
        super().__init__()
        self.attention = attention
        self.conv = nn.Conv2d(1, CHANNELS, 3)
        if attention:
            self.attn = nn.MultiheadAttention(CHANNELS, HEADS, batch_first=True)
            self.ln = nn.LayerNorm(CHANNELS)
        self.fc = nn.Linear(CHANNELS * SIDE * SIDE, 16)
        self.out = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (n, 1, 8, 8)
        h = self.conv(x)
        if self.attention:
            seq = h.flatten(2).transpose(1, 2)  # (n, 36, C), position-major like Keras
            h = self.ln(seq + self.attn(seq, seq, seq, need_weights=False)[0])
        return self.out(torch.relu(self.fc(h.flatten(1))))


def keras_twin(net: Net) -> keras.Model:
    """The Keras network computing what ``net`` computes, its weights copied and transposed."""
    inp = keras.Input((8, 8, 1))
    conv = keras.layers.Conv2D(CHANNELS, 3, name="conv")
    h = conv(inp)
    if net.attention:
        attn = keras.layers.MultiHeadAttention(HEADS, CHANNELS // HEADS, name="attn")
        ln = keras.layers.LayerNormalization(epsilon=1e-5, name="ln")
        seq = keras.layers.Reshape((SIDE * SIDE, CHANNELS))(h)
        h = ln(seq + attn(seq, seq))
    fc, out = keras.layers.Dense(16, activation="relu", name="fc"), keras.layers.Dense(10, name="out")
    model = keras.Model(inp, out(fc(keras.layers.Flatten()(h))))
    t = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    conv.set_weights([t["conv.weight"].transpose(2, 3, 1, 0), t["conv.bias"]])
    w_fc = t["fc.weight"]
    if not net.attention:  # Keras flattens (H, W, C); torch flattens (C, H, W)
        w_fc = w_fc.reshape(16, CHANNELS, SIDE * SIDE).transpose(0, 2, 1).reshape(16, -1)
    fc.set_weights([w_fc.T, t["fc.bias"]])
    out.set_weights([t["out.weight"].T, t["out.bias"]])
    if net.attention:
        e, d = CHANNELS, CHANNELS // HEADS
        qkv, qkv_bias = np.split(t["attn.in_proj_weight"], 3), np.split(t["attn.in_proj_bias"], 3)
        weights = []
        for w, b in zip(qkv, qkv_bias):
            weights += [w.T.reshape(e, HEADS, d), b.reshape(HEADS, d)]
        weights += [t["attn.out_proj.weight"].T.reshape(HEADS, d, e), t["attn.out_proj.bias"]]
        attn.set_weights(weights)
        ln.set_weights([t["ln.weight"], t["ln.bias"]])
    return model


def digits(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return (x[:n] / 16.0).astype("float32").reshape(-1, 1, 8, 8), y[:n]


class LitNet(Net, pl.LightningModule):
    """The same module as a LightningModule (same attribute names, so the same layer names)."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


class HFNet(Net):
    """The same module with the forward transformers' Trainer calls."""

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        logits = super().forward(pixel_values)
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


class Pixels(torch.utils.data.Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = torch.tensor(x), torch.tensor(y)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.x[i], "labels": self.y[i]}


def record_torch(net: Net, run) -> None:
    # the data flow traced on a batch, as the Keras graph, Lightning's and HF's first forward give it
    with WeightWatch(net, run, example_input=torch.tensor(digits(2)[0])) as ww:
        ww.log(0)


def record_keras(net: Net, run) -> None:
    model = keras_twin(net)
    x, y = digits()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x.transpose(0, 2, 3, 1))),
                               net(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    model.compile(keras.optimizers.SGD(0.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x.transpose(0, 2, 3, 1), y, epochs=1, batch_size=32, verbose=0,
              callbacks=[ww_keras.WeightWatchCallback(run)])


def record_lightning(net: Net, run) -> None:
    lit = LitNet(net.attention)
    lit.load_state_dict(net.state_dict())
    x, y = digits()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y)),
                                         batch_size=32)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False,
                         callbacks=[lightning.WeightWatchCallback(run)])
    trainer.fit(lit, loader)


def record_hf(net: Net, run) -> None:
    model = HFNet(net.attention)
    model.load_state_dict(net.state_dict())
    args = transformers.TrainingArguments(output_dir=str(run.parent / "hf_out"), num_train_epochs=1,
                                          learning_rate=0.0, per_device_train_batch_size=32, report_to=[],
                                          save_strategy="no", use_cpu=True, disable_tqdm=True)
    transformers.Trainer(model=model, args=args, train_dataset=Pixels(*digits()),
                         callbacks=[hf.WeightWatchCallback(run)]).train()


RECORDERS = {"keras": record_keras, "lightning": record_lightning, "hf": record_hf}


def weight_records(run) -> tuple[dict[str, float], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The last weight record of a run: {scalar tag: value}, {histogram tag: (right edges, counts)}."""
    path = tb_read.weightwatch_file(run)
    last = max(s for s, _ in tb_read.scalars(path)["weights/all/mean"])
    scalars = {tag: tb_read.at(series, last) for tag, series in tb_read.scalars(path).items()
               if tag.startswith(("weights/", "bias/", "node_strength/"))}
    hists = {tag: next((e, c) for s, e, c in series if s == last) for tag, series in tb_read.histograms(path).items()}
    return scalars, hists


@pytest.fixture(scope="module", params=[True, False], ids=["attention", "cnn"])
def torch_run(request, tmp_path_factory):
    torch.manual_seed(0)
    net = Net(attention=request.param)
    run = tmp_path_factory.mktemp("cross") / "torch"
    record_torch(net, run)
    return net, run


@pytest.mark.parametrize("framework", list(RECORDERS))
def test_identical_weights_give_identical_records(torch_run, framework, tmp_path):
    net, torch_dir = torch_run
    RECORDERS[framework](net, tmp_path / framework)
    want_scalars, want_hists = weight_records(torch_dir)
    got_scalars, got_hists = weight_records(tmp_path / framework)
    assert set(got_scalars) == set(want_scalars) and set(got_hists) == set(want_hists)
    assert any(tag.startswith("node_strength/conv/fluctuation") for tag in got_scalars)
    for tag, value in want_scalars.items():
        assert got_scalars[tag] == pytest.approx(value, rel=1e-5, abs=1e-6), tag
    for tag, (edges, counts) in want_hists.items():
        np.testing.assert_array_equal(got_hists[tag][1], counts, err_msg=tag)
        np.testing.assert_allclose(got_hists[tag][0], edges, rtol=1e-6, atol=1e-7, err_msg=tag)
    want_info, got_info = (json.loads((d / "weightwatch.json").read_text()) for d in (torch_dir, tmp_path / framework))
    assert got_info["architecture"] == want_info["architecture"] and got_info["framework"] == framework
    assert got_info["layers"] == want_info["layers"]
    _, want_sketch = read_sketch(torch_dir)
    _, got_sketch = read_sketch(tmp_path / framework)
    for name, values in want_sketch.items():
        np.testing.assert_array_equal(got_sketch[name], values, err_msg=name)


@pytest.mark.parametrize("module, blocked, extra", [
    ("keras", "keras", "keras"), ("lightning", "lightning", "lightning"), ("lightning", "torch", "lightning"),
    ("hf", "transformers", "hf"),
])
def test_missing_framework_names_the_extra(module, blocked, extra):
    """The framework made unimportable (None in sys.modules), the real import machinery runs."""
    code = f"import sys; sys.modules[{blocked!r}] = None; import weightwatch.integrations.{module}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError") and f"pip install 'weightwatch[{extra}]'" in last, proc.stderr
