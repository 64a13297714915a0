"""A real ``tensorboard --logdir`` on 127.0.0.1 serves what weightwatch wrote."""

from __future__ import annotations

import json
import urllib.request

import pytest
import torch
from torch import nn

from browser import tensorboard
from weightwatch.integrations.torch import WeightWatch

pytestmark = pytest.mark.slow


def get(base: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("tb")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    with WeightWatch(model, logdir / "exp1", hparams={"lr": 0.01, "hidden": 5}) as ww:
        for epoch in range(3):
            ww.log(epoch, loss=1.0 / (epoch + 1), accuracy=0.3 + 0.1 * epoch)
    def loaded(base: str) -> bool:  # the run's scalars are in, not just its name
        tags = get(base, "/data/plugin/scalars/tags")
        return "exp1" in tags and "loss" in tags["exp1"]

    with tensorboard(logdir, ready=loaded) as base:
        yield base, model


def test_server_lists_scalars_and_values(server):
    base, model = server
    tags = get(base, "/data/plugin/scalars/tags")["exp1"]
    assert {"weights/0/mean", "weights/2/p50", "node_strength/2/fluctuation", "weights/all/std", "loss",
            "accuracy"} <= set(tags)
    points = get(base, "/data/plugin/scalars/scalars?run=exp1&tag=weights/2/std")
    assert [p[1] for p in points] == [0, 1, 2]
    assert points[-1][2] == pytest.approx(model[2].weight.detach().double().std(unbiased=False).item(), rel=1e-5)


def test_server_lists_histograms(server):
    base, model = server
    tags = get(base, "/data/plugin/histograms/tags")["exp1"]
    assert set(tags) == {"weights/0", "weights/2", "node_strength/0", "node_strength/2"}
    hist = get(base, "/data/plugin/histograms/histograms?run=exp1&tag=weights/2")
    assert [h[1] for h in hist] == [0, 1, 2]
    buckets = hist[-1][2]  # [[left, right, count], ...]
    assert sum(b[2] for b in buckets) == pytest.approx(model[2].weight.numel())


def test_server_shows_hparams_and_metrics(server):
    base, _ = server
    experiment = get(base, "/data/plugin/hparams/experiment", {"experimentName": ""})
    assert {h["name"] for h in experiment["hparamInfos"]} == {"lr", "hidden"}
    assert [m["name"]["tag"] for m in experiment["metricInfos"]] == ["loss", "accuracy"]
    groups = get(base, "/data/plugin/hparams/session_groups", {
        "experimentName": "", "startIndex": 0, "sliceSize": 10,
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [{"hparam": "lr"}, {"metric": {"tag": "accuracy", "group": ""}}],
    })
    session = groups["sessionGroups"][0]
    assert session["hparams"]["lr"] == pytest.approx(0.01)
    final = {m["name"]["tag"]: m["value"] for m in session["metricValues"]}
    assert final["accuracy"] == pytest.approx(0.5)


def test_server_has_the_custom_scalars_layout(server):
    base, _ = server
    layout = get(base, "/data/plugin/custom_scalars/layout")
    charts = {c["title"]: c["multiline"]["tag"] for c in layout["category"][0]["chart"]}
    assert charts == {"0": [r"^weights/0/(mean|std)$"], "2": [r"^weights/2/(mean|std)$"]}
