"""The PyTorch integration: layer discovery, roles, schedules and errors users will hit."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from weightwatch.integrations.torch import WeightWatch, every_n

ROOT = Path(__file__).resolve().parents[1]


def scalar_steps(path, tag):
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def layers_of(model, tmp_path, **kw):
    ww = WeightWatch(model, tmp_path / "run", **kw)
    ww.close()
    return {layer.name: layer for layer in ww.layers}


def test_transformer_layers_and_roles(tmp_path):
    model = nn.Sequential()
    model.add_module("embed", nn.Embedding(50, 16))
    model.add_module("encoder", nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 4, 32), num_layers=2,
                                                       enable_nested_tensor=False))
    model.add_module("head", nn.Linear(16, 5))
    layers = layers_of(model, tmp_path)
    assert layers["embed"].role == "embed"
    block = "encoder.layers.0"
    for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
        assert layers[f"{block}.self_attn.{proj}"].role == "attn"
        assert layers[f"{block}.self_attn.{proj}"].kind == "attention"
    assert layers[f"{block}.self_attn.q_proj"].heads == 4
    assert layers[f"{block}.linear1"].role == "mlp" and layers[f"{block}.linear2"].role == "mlp"
    assert layers[f"{block}.norm1"].role == "norm"
    assert layers["head"].role == "output"
    assert f"{block}.self_attn" not in layers  # the MHA is split into its projections


def test_conv_net_roles_and_frozen_layers_are_watched(tmp_path):
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.Conv3d(4, 4, 1), nn.Flatten(), nn.Linear(8, 8),
                          nn.Linear(8, 2))
    model[0].weight.requires_grad_(False)
    layers = layers_of(model, tmp_path)
    assert [(n, layer.role) for n, layer in layers.items()] == [
        ("0", "conv"), ("1", "norm"), ("2", "conv"), ("4", "fc"), ("5", "output")]


def test_shared_parameters_are_logged_once(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(20, 8)
            self.hidden = nn.Linear(8, 8)
            self.out = nn.Linear(8, 20, bias=False)
            self.out.weight = self.embed.weight  # weight tying, as in language models

    layers = layers_of(Tied(), tmp_path)
    assert list(layers) == ["embed", "hidden"]


def test_include_exclude_and_role_overrides(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    assert list(layers_of(model, tmp_path, include=["0", "2"])) == ["0", "2"]
    assert list(layers_of(model, tmp_path, exclude=["1"])) == ["0", "2"]
    assert layers_of(model, tmp_path, roles={"1": "mlp"})["1"].role == "mlp"
    with pytest.raises(ValueError, match="leave no layer"):
        WeightWatch(model, tmp_path / "x", include=["nothing*"])
    with pytest.raises(ValueError, match="not one of"):
        WeightWatch(model, tmp_path / "x", roles={"1": "banana"})


def test_model_without_known_layers_names_what_it_found(tmp_path):
    with pytest.raises(ValueError, match=r"found no layer.*ReLU"):
        WeightWatch(nn.Sequential(nn.ReLU(), nn.Dropout()), tmp_path / "run")


def real_error(path) -> OSError:
    """What the OS itself says when asked to create ``path``."""
    try:
        os.makedirs(path)
    except OSError as exc:
        return exc
    raise AssertionError(f"{path} could be created")


def test_unwritable_log_dir_fails_at_construction():
    # /proc refuses new directories even to root, so this holds wherever the tests run
    want = real_error("/proc/weightwatch/run")
    with pytest.raises(OSError, match="cannot write event files to log_dir '/proc/weightwatch/run'") as info:
        WeightWatch(nn.Linear(2, 2), "/proc/weightwatch/run")
    assert type(info.value) is type(want) and info.value.errno == want.errno  # the real error, not a PermissionError


def test_log_dir_that_is_a_file_fails_at_construction(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(NotADirectoryError, match="cannot write event files to log_dir .*file.*Not a directory") as info:
        WeightWatch(nn.Linear(2, 2), blocker / "run")
    assert info.value.errno == real_error(blocker / "run").errno == errno.ENOTDIR


def test_logging_after_close_is_a_clear_error(tmp_path):
    ww = WeightWatch(nn.Linear(2, 2), tmp_path / "run")
    ww.log(0)
    ww.close()
    ww.close()  # idempotent
    with pytest.raises(RuntimeError, match="is closed"):
        ww.log(1)


def test_bad_metrics_and_steps(tmp_path):
    ww = WeightWatch(nn.Linear(2, 2), tmp_path / "run")
    with pytest.raises(TypeError, match="metric 'acc' must be a number"):
        ww.log(0, acc="high")
    with pytest.raises(ValueError, match="step must be a non-negative integer"):
        ww.log(-1)
    ww.log(0, loss=torch.tensor(0.5))  # 0-d tensors are numbers
    ww.close()
    assert scalar_steps(tmp_path / "run", "loss") == [0]


def test_schedule_int_and_callable(tmp_path):
    model = nn.Linear(3, 2)
    with WeightWatch(model, tmp_path / "every3", schedule=3) as ww:
        recorded = [ww.log(step, loss=1.0) for step in range(8)]
    assert recorded == [True, False, False, True, False, False, True, False]
    assert scalar_steps(tmp_path / "every3", "weights/linear/mean") == [0, 3, 6]
    assert scalar_steps(tmp_path / "every3", "loss") == list(range(8))  # metrics at every call
    with WeightWatch(model, tmp_path / "custom", schedule=lambda s: s in (1, 4)) as ww:
        for step in range(6):
            ww.log(step)
    assert scalar_steps(tmp_path / "custom", "weights/linear/mean") == [1, 4]
    with pytest.raises(ValueError):
        every_n(0)


def test_exception_inside_with_block_marks_the_run_failed(tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    with pytest.raises(KeyError):
        with WeightWatch(nn.Linear(2, 2), tmp_path / "run", hparams={"a": 1}) as ww:
            ww.log(0, loss=1.0)
            raise KeyError("boom")
    acc = EventAccumulator(str(tmp_path / "run"))
    acc.Reload()
    end = plugin_data_pb2.HParamsPluginData.FromString(acc.PluginTagToContent("hparams")["_hparams_/session_end_info"])
    assert end.session_end_info.status == 2  # STATUS_FAILURE


def test_example_plain_loop_runs(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "torch_digits.py"), "--runs", "1", "--epochs", "2",
                          "--hidden", "8", "--log-dir", str(tmp_path)], capture_output=True, text=True, check=True)
    assert "tensorboard --logdir" in out.stdout
    assert scalar_steps(tmp_path / "seed0", "val_accuracy") == [0, 1]
    assert scalar_steps(tmp_path / "seed0", "weights/2/std") == [0, 1]


def test_core_imports_no_framework():
    code = ("import sys, weightwatch, weightwatch.recorder, weightwatch.integrations; "
            "bad = [m for m in ('torch', 'keras', 'lightning', 'transformers', 'tensorflow', 'jax') if m in sys.modules];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_torch_names_the_extra():
    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import weightwatch.integrations.torch\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'weightwatch[torch]'" in out


def test_a_step_logged_twice_records_the_weights_once(tmp_path):
    with WeightWatch(nn.Linear(3, 2), tmp_path / "run") as ww:
        assert ww.log(0, loss=1.0) is True
        assert ww.log(0, accuracy=0.5) is False  # metrics only: the weights of step 0 are written
        assert ww.log(1) is True
    assert scalar_steps(tmp_path / "run", "weights/linear/mean") == [0, 1]
    assert scalar_steps(tmp_path / "run", "accuracy") == [0]
