"""The Hugging Face transformers callback, on a tiny BERT built from a config (no downloads).

References: the Trainer's own ``state.log_history`` and the event file of
transformers' own TensorBoardCallback in the same directory, and the model's
parameters through the slow numpy statistics of tests/reference.py.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timedelta
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments  # noqa: E402

import reference as ref  # noqa: E402
import tb_read  # noqa: E402
from weightwatch.integrations.hf import WeightWatchCallback, run_dir  # noqa: E402

transformers.logging.set_verbosity_error()


class Tokens(torch.utils.data.Dataset):
    """Digits as 64 tokens (pixel intensities 0..16)."""

    def __init__(self, n: int, offset: int = 0) -> None:
        x, y = load_digits(return_X_y=True)
        self.ids = torch.tensor(x[offset:offset + n], dtype=torch.long)
        self.labels = torch.tensor(y[offset:offset + n])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=17, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, num_labels=10))


def accuracy(p) -> dict[str, float]:
    return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}


def train(tmp_path, callback, epochs: int = 2, **kw) -> Trainer:
    settings = dict(output_dir=str(tmp_path / "out"), num_train_epochs=epochs, per_device_train_batch_size=32,
                    learning_rate=3e-3, eval_strategy="epoch", logging_strategy="epoch", save_strategy="no",
                    report_to=["tensorboard"], use_cpu=True, disable_tqdm=True)
    args = TrainingArguments(**{**settings, **kw})
    trainer = Trainer(model=tiny_bert(), args=args, train_dataset=Tokens(256), eval_dataset=Tokens(64, 256),
                      compute_metrics=accuracy, callbacks=[callback])
    trainer.train()
    return trainer


def test_train_two_epochs_on_digits_beside_transformers_own_logs(tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    cb = WeightWatchCallback()
    trainer = train(tmp_path, cb)  # 256 / 32 = 8 steps per epoch
    ours = tb_read.scalars(tb_read.weightwatch_file(tmp_path / "tb"))
    (theirs_file,) = tb_read.other_files(tmp_path / "tb")
    theirs = tb_read.scalars(theirs_file)
    history = trainer.state.log_history
    assert [s for s, _ in ours["eval_accuracy"]] == [8, 16]
    for entry in history:  # every number the Trainer logged, at its own step
        for key, value in entry.items():
            if key != "step" and isinstance(value, (int, float)):
                assert value == pytest.approx(tb_read.at(ours[key], entry["step"]), rel=1e-6), key
    for step, value in ours["eval_loss"]:  # the same points as transformers' TensorBoardCallback
        assert value == pytest.approx(tb_read.at(theirs["eval/loss"], step), rel=1e-6)
    model = trainer.model
    watched = {
        "bert.embeddings.word_embeddings": model.bert.embeddings.word_embeddings.weight,
        "bert.encoder.layer.0.attention.self.query": model.bert.encoder.layer[0].attention.self.query.weight,
        "bert.encoder.layer.0.intermediate.dense": model.bert.encoder.layer[0].intermediate.dense.weight,
        "classifier": model.classifier.weight,
    }
    for name, weight in watched.items():
        assert [s for s, _ in ours[f"weights/{name}/mean"]] == [8, 16]
        want = ref.weight_stats(weight.detach().double().numpy())
        for stat in ("mean", "std", "min", "max", "l2"):
            assert tb_read.at(ours[f"weights/{name}/{stat}"], 16) == pytest.approx(want[stat], rel=1e-5, abs=1e-7)
    s, _, _ = ref.in_strength(model.classifier.weight.detach().numpy())
    assert tb_read.at(ours["node_strength/classifier/mean"], 16) == pytest.approx(s.mean(), rel=1e-5)
    info = json.loads((tmp_path / "tb" / "weightwatch.json").read_text())
    roles = {layer["name"]: layer["role"] for layer in info["layers"]}
    assert info["framework"] == "hf" and info["hparams"]["learning_rate"] == 3e-3
    assert roles["bert.encoder.layer.0.attention.self.query"] == "attn" and roles["classifier"] == "output"
    assert roles["bert.encoder.layer.0.intermediate.dense"] == "mlp" and roles["bert.embeddings.LayerNorm"] == "norm"
    assert cb.run.recorder.closed


def test_without_the_variable_it_follows_transformers_default_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    cb = WeightWatchCallback(every_n_steps=3, schedule=2)
    train(tmp_path, cb, epochs=3, logging_steps=3, logging_strategy="steps")
    (run,) = (tmp_path / "out" / "runs").iterdir()  # transformers' own run directory, and ours
    assert cb.run.log_dir == run
    ours = tb_read.scalars(tb_read.weightwatch_file(run))
    # steps 3, 6, ... 24 (every 3), and the ends of epochs 0 and 2 (schedule=2) at 8 and 24
    assert [s for s, _ in ours["weights/classifier/mean"]] == [3, 6, 8, 9, 12, 15, 18, 21, 24]
    theirs = tb_read.scalars(tb_read.other_files(run)[0])
    assert [s for s, _ in ours["loss"]] == [s for s, _ in theirs["train/loss"]] == [3, 6, 9, 12, 15, 18, 21, 24]


def test_run_directory_order(tmp_path, monkeypatch):
    args = SimpleNamespace(output_dir=str(tmp_path), logging_dir=str(tmp_path / "old-style"))
    assert run_dir(args, tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", "~/tb")
    assert run_dir(args) == tmp_path.home() / "tb"
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR")
    assert run_dir(args) == tmp_path / "old-style"  # transformers < 5
    args.logging_dir = None
    # the clock just passed a second after transformers created its directory
    stamp = (datetime.now() - timedelta(seconds=1)).strftime("%b%d_%H-%M-%S")
    made = tmp_path / "runs" / f"{stamp}_{socket.gethostname()}"
    made.mkdir(parents=True)
    assert run_dir(args) == made


def test_example_script(tmp_path):
    tb_read.run_example("hf_tiny.py", tmp_path, "--epochs", "2", "--train-size", "128")
    run = tmp_path / "run"
    ours = tb_read.scalars(tb_read.weightwatch_file(run))
    theirs = tb_read.scalars(tb_read.other_files(run)[0])
    assert [s for s, _ in ours["eval_accuracy"]] == [4, 8] == [s for s, _ in ours["weights/classifier/mean"]]
    for step, value in ours["eval_accuracy"]:
        assert value == pytest.approx(tb_read.at(theirs["eval/accuracy"], step), rel=1e-6)
