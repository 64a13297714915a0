"""Event files written by weightwatch, read back by TensorBoard's own loader and by tbparse."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2
from torch import nn

import reference as ref
from weightwatch.events import EventFileWriter, masked_crc32c
from weightwatch.integrations.torch import WeightWatch
from weightwatch.stats import STRENGTH_STATS, WEIGHT_STATS

EVERYTHING = {"scalars": 0, "histograms": 0, "tensors": 0}


def accumulate(path) -> EventAccumulator:
    acc = EventAccumulator(str(path), size_guidance=EVERYTHING)
    acc.Reload()
    return acc


def test_masked_crc32c_matches_tensorboards_pure_python_one():
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tb_masked

    for data in (b"", b"a", b"weightwatch" * 100, bytes(range(256))):
        assert masked_crc32c(data) == tb_masked(data)


def test_record_framing_is_valid_tfrecord(tmp_path):
    writer = EventFileWriter(tmp_path)
    writer.write(event_pb2.Event(step=7, wall_time=1.5))
    writer.close()
    raw = writer.path.read_bytes()
    events = []
    offset = 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<Q", raw, offset)
        (len_crc,) = struct.unpack_from("<I", raw, offset + 8)
        assert len_crc == masked_crc32c(raw[offset:offset + 8])
        data = raw[offset + 12:offset + 12 + length]
        (data_crc,) = struct.unpack_from("<I", raw, offset + 12 + length)
        assert data_crc == masked_crc32c(data)
        events.append(event_pb2.Event.FromString(data))
        offset += 16 + length
    assert events[0].file_version == "brain.Event:2"
    assert events[1].step == 7 and events[1].wall_time == 1.5
    assert "tfevents" in writer.path.name


def _train_tiny(tmp_path, epochs=3):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 8), nn.ReLU(),
                          nn.Linear(8, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 4, (32,))
    kept = []
    with WeightWatch(model, tmp_path / "run", hparams={"lr": 0.1, "opt": "sgd"}, bins=16) as ww:
        for epoch in range(epochs):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            ww.log(epoch, loss=loss.item(), accuracy=0.25 + epoch / 10)
            kept.append({n: p.detach().clone() for n, p in model.named_parameters()})
    return model, kept


def test_scalars_and_histograms_read_back_by_tensorboard(tmp_path):
    model, kept = _train_tiny(tmp_path)
    acc = accumulate(tmp_path / "run")
    tags = set(acc.Tags()["scalars"])
    for layer in ("0", "3", "5"):
        assert {f"weights/{layer}/{s}" for s in WEIGHT_STATS} <= tags
        assert {f"node_strength/{layer}/{s}" for s in STRENGTH_STATS} <= tags
        assert f"bias/{layer}/mean" in tags
    assert {f"weights/all/{s}" for s in WEIGHT_STATS} <= tags
    assert {"loss", "accuracy"} <= tags
    assert set(acc.Tags()["histograms"]) == {f"{kind}/{layer}" for kind in ("weights", "node_strength")
                                            for layer in ("0", "3", "5")}
    for epoch, params in enumerate(kept):
        for layer in ("0", "3", "5"):
            w = params[f"{layer}.weight"].numpy()
            want = ref.weight_stats(w)
            for stat in ("mean", "std", "min", "max", "l2"):
                got = acc.Scalars(f"weights/{layer}/{stat}")[epoch]
                assert got.step == epoch
                assert got.value == pytest.approx(want[stat], rel=1e-5, abs=1e-7)
            s, _, _ = ref.in_strength(w)
            assert acc.Scalars(f"node_strength/{layer}/mean")[epoch].value == pytest.approx(s.mean(), rel=1e-5)
            histo = acc.Histograms(f"weights/{layer}")[epoch].histogram_value
            edges = np.concatenate([[histo.min], histo.bucket_limit])
            np.testing.assert_array_equal(np.array(histo.bucket), ref.histogram(w, edges))
            assert histo.num == w.size
    assert [e.value for e in acc.Scalars("accuracy")] == pytest.approx([0.25, 0.35, 0.45])


def test_tbparse_reads_the_same_values(tmp_path):
    from tbparse import SummaryReader

    model, kept = _train_tiny(tmp_path)
    scalars = SummaryReader(str(tmp_path / "run")).scalars
    mean = scalars[scalars.tag == "weights/3/mean"].sort_values("step")
    assert list(mean.step) == [0, 1, 2]
    want = [kept[e]["3.weight"].double().mean().item() for e in range(3)]
    np.testing.assert_allclose(mean.value.to_numpy(), want, rtol=1e-5)
    hist = SummaryReader(str(tmp_path / "run"), pivot=False).histograms
    assert set(hist.tag) >= {"weights/0", "node_strength/0"}


def test_hparams_and_custom_scalars_are_written(tmp_path):
    from tensorboard.plugins.custom_scalar import layout_pb2
    from tensorboard.plugins.hparams import plugin_data_pb2

    _train_tiny(tmp_path)
    acc = accumulate(tmp_path / "run")
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["lr"].number_value == pytest.approx(0.1)
    assert start.session_start_info.hparams["opt"].string_value == "sgd"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["loss", "accuracy"]
    end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"])
    assert end.session_end_info.status == 1  # STATUS_SUCCESS
    layout_tensor = acc.Tensors("custom_scalars__config__")[0].tensor_proto
    layout = layout_pb2.Layout.FromString(layout_tensor.string_val[0])
    charts = {c.title: list(c.multiline.tag) for c in layout.category[0].chart}
    assert charts["3"] == [r"^weights/3/(mean|std)$"]


def test_every_earlier_log_call_is_on_disk_when_one_returns(tmp_path):
    model = nn.Sequential(nn.Linear(4, 2))
    ww = WeightWatch(model, tmp_path / "run")
    ww.log(0, loss=1.0)
    ww.log(1, loss=0.5)
    # not closed: a crash now must still leave epoch 0 readable (epoch 1 may be in flight)
    acc = accumulate(tmp_path / "run")
    assert [e.step for e in acc.Scalars("weights/0/mean")][:1] == [0]
    ww.recorder.flush()  # waits for the one in flight
    acc = accumulate(tmp_path / "run")
    assert [e.step for e in acc.Scalars("weights/0/mean")] == [0, 1]
    assert [e.value for e in acc.Scalars("loss")] == [1.0, 0.5]
    assert [e.step for e in acc.Histograms("weights/0")] == [0, 1]
    ww.close()