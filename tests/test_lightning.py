"""The PyTorch Lightning callback.

References: Lightning's own TensorBoardLogger output in the same run
directory (same steps, same metric values), the module's parameters through
the slow numpy statistics of tests/reference.py, and a real two-process DDP
run on the CPU (gloo).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import reference as ref
import tb_read
from weightwatch.integrations.lightning import WeightWatchCallback, run_dir


class Digits(pl.LightningModule):
    def __init__(self, hidden: int = 16, lr: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, hidden)
        self.out = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc(torch.relu(self.conv(x)).flatten(1))))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_accuracy", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def loaders(n: int = 600, batch: int = 50) -> tuple[DataLoader, DataLoader]:
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x[:n] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(y[:n])
    cut = n * 3 // 4
    return (DataLoader(TensorDataset(x[:cut], y[:cut]), batch_size=batch, shuffle=True),
            DataLoader(TensorDataset(x[cut:], y[cut:]), batch_size=batch))


def trainer(tmp_path, callback, **kw) -> pl.Trainer:
    kw.setdefault("logger", pl.loggers.TensorBoardLogger(tmp_path, name="digits"))
    kw.setdefault("max_epochs", 2)
    return pl.Trainer(accelerator="cpu", callbacks=[callback], enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path, **kw)


@pytest.fixture(autouse=True)
def _seed():
    pl.seed_everything(0, verbose=False)


def test_fit_two_epochs_on_digits_beside_lightnings_own_logs(tmp_path):
    model = Digits()
    cb = WeightWatchCallback()
    tr = trainer(tmp_path, cb, log_every_n_steps=3)
    tr.fit(model, *loaders())  # 450 / 50 = 9 steps per epoch, after a 2-batch sanity check
    run = tmp_path / "digits" / "version_0"
    assert run == Path(tr.logger.log_dir) and cb.run.log_dir == run
    ours = tb_read.scalars(tb_read.weightwatch_file(run))
    (theirs_file,) = tb_read.other_files(run)
    theirs = tb_read.scalars(theirs_file)
    # the epoch-end metrics sit on the points Lightning logged for them, with the same values
    for metric in ("val_loss", "val_accuracy", "train_loss_epoch"):
        assert [s for s, _ in ours[metric]] == [8, 17]
        for step, value in ours[metric]:
            assert value == pytest.approx(tb_read.at(theirs[metric], step), rel=1e-6)
    assert ours["epoch"] == [(8, 0.0), (17, 1.0)]
    assert {v for s, v in theirs["epoch"] if s in (8, 17)} == {0.0, 1.0}
    assert [s for s, _ in ours["weights/fc/mean"]] == [8, 17]  # no sanity-check entry
    for name, module in (("conv", model.conv), ("fc", model.fc), ("out", model.out)):
        want = ref.weight_stats(module.weight.detach().double().numpy())
        for stat in ("mean", "std", "min", "max", "l2"):
            assert tb_read.at(ours[f"weights/{name}/{stat}"], 17) == pytest.approx(want[stat], rel=1e-5, abs=1e-7)
        s, _, _ = ref.in_strength(module.weight.detach().numpy())
        assert tb_read.at(ours[f"node_strength/{name}/mean"], 17) == pytest.approx(s.mean(), rel=1e-5)
    info = json.loads((run / "weightwatch.json").read_text())
    assert info["framework"] == "lightning" and info["hparams"] == {"hidden": 16, "lr": 3e-3}
    assert [layer["role"] for layer in info["layers"]] == ["conv", "fc", "output"]
    assert cb.run.recorder.closed


def test_every_n_steps_records_where_lightning_logs_steps(tmp_path):
    cb = WeightWatchCallback(every_n_steps=4, schedule=2)
    tr = trainer(tmp_path, cb, log_every_n_steps=4, max_epochs=3)
    tr.fit(Digits(), *loaders())
    run = tr.logger.log_dir
    ours = tb_read.scalars(tb_read.weightwatch_file(run))
    theirs = tb_read.scalars(tb_read.other_files(run)[0])
    lightning_steps = [s for s, _ in theirs["train_loss_step"]]  # 3, 7, 11, ...: after steps 4, 8, 12
    epoch_ends = [8, 26]  # epochs 0 and 2 (schedule=2); epoch 1 ends at 17 with metrics only
    assert [s for s, _ in ours["weights/out/mean"]] == sorted(set(lightning_steps) | set(epoch_ends))
    assert [s for s, _ in ours["val_loss"]] == [8, 17, 26]


def test_accumulated_gradients_record_once_per_optimizer_step(tmp_path):
    cb = WeightWatchCallback(every_n_steps=2)
    tr = trainer(tmp_path, cb, accumulate_grad_batches=3, max_epochs=1, log_every_n_steps=2)
    tr.fit(Digits(), *loaders())  # 9 batches: optimizer steps 1, 2, 3
    ours = tb_read.scalars(tb_read.weightwatch_file(tr.logger.log_dir))
    theirs = tb_read.scalars(tb_read.other_files(tr.logger.log_dir)[0])
    assert [s for s, _ in ours["weights/out/mean"]] == [1, 2]  # after optimizer step 2, and at the epoch end
    assert [s for s, _ in theirs["train_loss_step"]] == [1]


def test_run_directory_choice(tmp_path):
    explicit = WeightWatchCallback(tmp_path / "mine", hparams={"a": 1})
    trainer(tmp_path, explicit, max_epochs=1).fit(Digits(), *loaders(200))
    assert tb_read.weightwatch_file(tmp_path / "mine").exists()
    assert json.loads((tmp_path / "mine" / "weightwatch.json").read_text())["hparams"] == {"a": 1}
    no_logger = trainer(tmp_path / "root", WeightWatchCallback(), max_epochs=1, logger=False)
    assert run_dir(no_logger, None) == tmp_path / "root" / "weightwatch"
    no_logger.fit(Digits(), *loaders(200))
    assert tb_read.weightwatch_file(tmp_path / "root" / "weightwatch").exists()


def test_bad_options():
    for bad in ({"every_n_steps": -1}, {"schedule": 0}, {"bins": 1.5}):
        with pytest.raises((TypeError, ValueError)):
            WeightWatchCallback(**bad)


def test_example_under_ddp_with_two_processes_only_rank_zero_writes(tmp_path):
    proc = tb_read.run_example("lightning_digits.py", tmp_path, "--epochs", "2", "--devices", "2")
    lines = re.findall(r"rank (\d) of 2 \(pid (\d+)\): steps (\d+)", proc.stdout)
    pids = {rank: pid for rank, pid, _ in lines}
    steps = {int(step) for _, _, step in lines}
    assert set(pids) == {"0", "1"} and len(steps) == 1, proc.stdout
    runs = sorted(p.parent for p in tmp_path.rglob("weightwatch.json"))
    assert len(runs) == 1, runs  # rank 1 wrote nothing, anywhere
    ours = tb_read.weightwatch_file(runs[0])
    assert ours.name.split(".")[-2] == pids["0"]  # events.out.tfevents.<time>.<host>.<pid>.<n>
    sc = tb_read.scalars(ours)
    (total,) = steps  # each rank trains on half the data: steps per epoch = ceil(1347 / 2 / 64) = 11
    assert [s for s, _ in sc["weights/fc/mean"]] == [total // 2 - 1, total - 1]
    theirs = tb_read.scalars(tb_read.other_files(runs[0])[0])
    assert sc["val_accuracy"] == [(s, pytest.approx(v, rel=1e-6)) for s, v in theirs["val_accuracy"]]
