"""WatchOptions: one validated options object shared by every integration's callback."""

from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

import tb_read
from weightwatch.integrations.options import WatchOptions
from weightwatch.integrations.torch import WeightWatch

CALLBACKS = ["keras", "lightning", "hf"]


@pytest.mark.parametrize(("bad", "error", "message"), [
    ({"bins": 1}, ValueError, "bins must be an integer >= 2"),
    ({"bins": 2.5}, ValueError, "bins must be an integer >= 2"),
    ({"include": "fc*"}, TypeError, r"write include=\['fc\*'\]"),
    ({"exclude": [1]}, TypeError, "exclude must be a list of glob patterns"),
    ({"roles": {"fc*": "banana"}}, ValueError, r"roles\['fc\*'\]: 'banana' is not one of"),
    ({"roles": ["fc"]}, TypeError, "roles must be a mapping"),
    ({"hparams": [("lr", 1)]}, TypeError, "hparams must be a mapping"),
    ({"schedule": "often"}, TypeError, "schedule must be a callable"),
    ({"schedule": 0}, ValueError, "schedule must be a positive integer"),
    ({"stop": 0.3}, ValueError, "stop= needs reference="),
])
def test_bad_options_are_named(bad, error, message):
    with pytest.raises(error, match=message):
        WatchOptions(**bad)
    with pytest.raises(error, match=message):  # the same check behind every constructor's keywords
        WeightWatch(nn.Linear(2, 2), "unused", **bad)


def test_unknown_keyword_names_the_callback_and_suggests_the_option():
    with pytest.raises(TypeError, match=r"WeightWatch got an unknown option 'bin' \(did you mean 'bins'\?\)"):
        WeightWatch(nn.Linear(2, 2), "unused", bin=8)
    with pytest.raises(TypeError, match="options must be a WatchOptions, got dict"):
        WeightWatch(nn.Linear(2, 2), "unused", options={"bins": 8})


@pytest.mark.parametrize("framework", CALLBACKS)
def test_every_callback_takes_the_options_and_checks_keywords(framework):
    module = importlib.import_module(f"weightwatch.integrations.{framework}")
    opts = WatchOptions(schedule=2, bins=8, exclude=["*norm*"])
    cb = module.WeightWatchCallback(options=opts, bins=16)
    assert cb.options.bins == 16 and cb.options.exclude == ("*norm*",) and opts.bins == 8
    assert [e for e in range(5) if cb.options.records(e)] == [0, 2, 4]
    with pytest.raises(TypeError, match=r"WeightWatchCallback got an unknown option 'shedule'"):
        module.WeightWatchCallback(shedule=2)


def train(ww: WeightWatch, model: nn.Module, epochs: int = 3) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)
    for epoch in range(epochs):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ww.log(epoch, loss=loss.item())
    ww.close()


def test_an_options_object_logs_what_the_same_keywords_log(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    opts = WatchOptions(schedule=2, exclude=["1"], bins=12, hparams={"lr": 0.1})
    train(WeightWatch(model, tmp_path / "object", options=opts), model)
    model.load_state_dict(start)
    train(WeightWatch(model, tmp_path / "keywords", schedule=2, exclude=["1"], bins=12, hparams={"lr": 0.1}), model)
    a, b = tb_read.scalars(tmp_path / "object"), tb_read.scalars(tmp_path / "keywords")
    assert a == b
    assert [s for s, _ in a["weights/0/mean"]] == [0, 2] and "weights/1/mean" not in a
    hist = tb_read.load(tmp_path / "object").Histograms("weights/0")
    assert len(hist[0].histogram_value.bucket_limit) == 12
