"""Complex-network node strength on traced PyTorch models, against a hand-wired unrolled graph.

Each test builds the architecture's graph edge by edge (tests/graph_reference.py, networkx),
logs one record with WeightWatch, reads every node_strength scalar back with TensorBoard's
EventAccumulator and compares; the traced consumers must be the graph's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tb_read
import torch
import torch.nn.functional as F
from graph_reference import Unrolled, compare, expected_tags, grid, neurons, np_of
from torch import nn

from weightwatch.integrations.torch import WeightWatch, discover_layers

TOL = 2e-5  # event files store float32


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def logged(model, tmp_path, example, **kw):
    ww = WeightWatch(model, tmp_path / "run", example_input=example, **kw)
    ww.log(0)
    ww.close()
    return ww, tb_read.scalars(tb_read.weightwatch_file(tmp_path / "run"))


def check(ww, graph, read, expected, label):
    for layer in expected:
        assert set(ww.flow.pairs().get(layer, [])) == graph.consumers(layer), layer
    worst = compare(read, expected)
    print(f"max abs diff {label}: {worst:.2e} (flow traced by {ww.flow.method})")
    assert worst < TOL
    return worst


def test_mlp_with_an_excluded_layer_keeps_its_neighbours_numbers(tmp_path):
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    g = Unrolled()
    g.dense(neurons("0", 8), "2", model[2].weight)
    g.dense(neurons("2", 8), "4", model[4].weight)
    ww, read = logged(model, tmp_path, torch.randn(3, 12), exclude=["2"])
    assert ww.flow.pairs() == {"0": ["2"], "2": ["4"]}
    expected = {n: expected_tags(g, n, model[int(n)].weight, model[int(n)].bias) for n in ("0", "4")}
    check(ww, g, read, expected, "MLP, layer 2 excluded")


def test_cnn_stride_padding_dilation_into_linear(tmp_path):
    model = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(3, 4, 3, padding=2, dilation=2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 5), nn.ReLU(), nn.Linear(5, 3))
    g = Unrolled()
    oh, ow = g.conv(grid("x", 2, 7, 7), "0", model[0].weight, stride=2, padding=1)
    assert (oh, ow) == (4, 4)
    g.conv(grid("0", 3, 4, 4), "2", model[2].weight, stride=1, padding=2, dilation=2)
    flat = [("2", c, y, x) for c in range(4) for y in range(4) for x in range(4)]  # torch flattens C, H, W
    g.dense(flat, "5", model[5].weight)
    g.dense(neurons("5", 5), "7", model[7].weight)
    ww, read = logged(model, tmp_path, torch.randn(2, 2, 7, 7))
    expected = {"0": expected_tags(g, "0", model[0].weight, model[0].bias, grid("0", 3, 4, 4)),
                "2": expected_tags(g, "2", model[2].weight, model[2].bias, grid("2", 4, 4, 4)),
                "5": expected_tags(g, "5", model[5].weight, model[5].bias),
                "7": expected_tags(g, "7", model[7].weight, model[7].bias)}
    check(ww, g, read, expected, "CNN stride 2 padding 1 (+ dilated conv) -> Linear")


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.enc(x).mean(dim=1))


def _feed(g, stream, consumer, weight):
    """Every node in the residual stream feature f (with its scale) feeds column f of ``consumer``."""
    w = np_of(weight)
    for f, entries in enumerate(stream):
        for node, scale in entries:
            for j in range(w.shape[0]):
                g.g.add_edge(node, (consumer, j), weight=w[j, f] * scale)


def _scaled(stream, gamma, fold):
    return [[(node, s * (float(gamma[f]) if fold else 1.0)) for node, s in entries] for f, entries in enumerate(stream)]


@pytest.mark.parametrize("fold", [False, True])
def test_transformer_encoder_residual_stream_and_norm_scale(tmp_path, fold):
    model = Encoder()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 2.0)
    g = Unrolled()
    stream: list[list] = [[] for _ in range(8)]
    expected = {}
    for i, layer in enumerate(model.enc.layers):
        p = f"enc.layers.{i}"
        att = layer.self_attn
        for k, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            w, b = att.in_proj_weight[8 * k:8 * (k + 1)], att.in_proj_bias[8 * k:8 * (k + 1)]
            _feed(g, stream, f"{p}.self_attn.{proj}", w)
            expected[f"{p}.self_attn.{proj}"] = (w, b, 2)
        g.dense(neurons(f"{p}.self_attn.v_proj", 8), f"{p}.self_attn.out_proj", att.out_proj.weight)
        stream = [s + [((f"{p}.self_attn.out_proj", f), 1.0)] for f, s in enumerate(stream)]
        stream = _scaled(stream, np_of(layer.norm1.weight), fold)
        _feed(g, stream, f"{p}.linear1", layer.linear1.weight)
        g.dense(neurons(f"{p}.linear1", 16), f"{p}.linear2", layer.linear2.weight)
        stream = [s + [((f"{p}.linear2", f), 1.0)] for f, s in enumerate(stream)]
        stream = _scaled(stream, np_of(layer.norm2.weight), fold)
        expected.update({f"{p}.self_attn.out_proj": (att.out_proj.weight, att.out_proj.bias, 1),
                         f"{p}.linear1": (layer.linear1.weight, layer.linear1.bias, 1),
                         f"{p}.linear2": (layer.linear2.weight, layer.linear2.bias, 1)})
    _feed(g, stream, "head", model.head.weight)
    expected["head"] = (model.head.weight, model.head.bias, 1)
    ww, read = logged(model, tmp_path, torch.randn(2, 5, 8), fold_norm_scale=fold)
    assert ww.flow.method == "hooks"  # fx cannot trace TransformerEncoderLayer's fast-path checks
    want = {n: expected_tags(g, n, w, b, heads=h) for n, (w, b, h) in expected.items()}
    check(ww, g, read, want, f"TransformerEncoder x2 + head, fold_norm_scale={fold}")


class SelfAttention(nn.Module):
    """The Hugging Face / BERT pattern: separate query, key, value Linear layers."""

    def __init__(self, e=16, heads=4, declare=True):
        super().__init__()
        if declare:
            self.num_attention_heads = heads
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(e, e), nn.Linear(e, e), nn.Linear(e, e)

    def forward(self, x):
        b, t, e = x.shape

        def split(y):
            return y.view(b, t, self.heads, e // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        probs = (q @ k.transpose(-1, -2) / math.sqrt(e // self.heads)).softmax(dim=-1)
        return (probs @ v).transpose(1, 2).reshape(b, t, e)


class HFBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn, self.out, self.ln = SelfAttention(), nn.Linear(16, 16), nn.LayerNorm(16)
        self.fc1, self.fc2, self.head = nn.Linear(16, 32), nn.Linear(32, 16), nn.Linear(16, 3)

    def forward(self, x):
        h = self.ln(x + self.out(self.attn(x)))
        y = h + self.fc2(F.gelu(self.fc1(h)))
        return self.head(y[:, 0])


def test_hugging_face_style_attention_four_heads(tmp_path):
    model = HFBlock()
    g = Unrolled()
    g.dense(neurons("attn.value", 16), "out", model.out.weight)  # attention mixes tokens, not features
    g.dense(neurons("out", 16), "fc1", model.fc1.weight)
    g.dense(neurons("fc1", 32), "fc2", model.fc2.weight)
    g.dense(neurons("out", 16), "head", model.head.weight)
    g.dense(neurons("fc2", 16), "head", model.head.weight)
    ww, read = logged(model, tmp_path, torch.randn(2, 5, 16))
    heads = {"attn.query": 4, "attn.key": 4, "attn.value": 4}
    want = {n: expected_tags(g, n, m.weight, m.bias, heads=heads.get(n, 1)) for n, m in model.named_modules()
            if isinstance(m, nn.Linear)}
    check(ww, g, read, want, "HF-style attention, 4 heads")
    # q and k feed only the score product: no weighted consumer
    assert "attn.query" not in ww.flow.pairs() and "attn.key" not in ww.flow.pairs()


def test_heads_override_when_the_module_declares_none():
    model = nn.Sequential(SelfAttention(declare=False))
    assert {i.name: i.heads for i, _ in discover_layers(model)}["0.query"] == 1
    got = {i.name: i.heads for i, _ in discover_layers(model, heads={"0.*": 4})}
    assert got == {"0.query": 4, "0.key": 4, "0.value": 4}
    with pytest.raises(ValueError, match="not divisible into 3 heads"):
        discover_layers(model, heads={"0.query": 3})


def test_bert_layer_pairs_follow_the_data_flow(tmp_path):
    transformers = pytest.importorskip("transformers")
    from transformers.models.bert.modeling_bert import BertLayer

    config = transformers.BertConfig(hidden_size=16, num_attention_heads=4, intermediate_size=32,
                                     attn_implementation="eager")
    ww = WeightWatch(BertLayer(config), tmp_path / "bert", example_input=torch.randn(2, 5, 16))
    ww.close()
    assert ww.flow.pairs() == {"attention.self.value": ["attention.output.dense"],
                               "attention.output.dense": ["intermediate.dense"],
                               "intermediate.dense": ["output.dense"]}
    assert {i.name: i.heads for i in ww.run.layers}["attention.self.key"] == 4


class ResNetish(nn.Module):
    def __init__(self):
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        down = nn.Sequential(nn.Conv2d(4, 6, 1, stride=2), nn.BatchNorm2d(6))
        self.block = BasicBlock(4, 6, stride=2, downsample=down)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))


def test_resnet_basic_block_with_downsample(tmp_path):
    pytest.importorskip("torchvision")
    model = ResNetish()
    blk = model.block
    g = Unrolled()
    g.conv(grid("stem", 4, 6, 6), "block.conv1", blk.conv1.weight, stride=2, padding=1)
    g.conv(grid("stem", 4, 6, 6), "block.downsample.0", blk.downsample[0].weight, stride=2, padding=0)
    g.conv(grid("block.conv1", 6, 3, 3), "block.conv2", blk.conv2.weight, stride=1, padding=1)
    # the residual sum is pooled over positions: every position of channel c reads fc's column c
    for layer in ("block.conv2", "block.downsample.0"):
        for c in range(6):
            for y in range(3):
                for x in range(3):
                    for j in range(3):
                        g.g.add_edge((layer, c, y, x), ("fc", j), weight=float(np_of(model.fc.weight)[j, c]))
    ww, read = logged(model, tmp_path, torch.randn(2, 2, 6, 6))
    convs = {"stem": (model.stem, (4, 6, 6)), "block.conv1": (blk.conv1, (6, 3, 3)),
             "block.conv2": (blk.conv2, (6, 3, 3)), "block.downsample.0": (blk.downsample[0], (6, 3, 3))}
    want = {n: expected_tags(g, n, m.weight, m.bias, grid(n, *shape)) for n, (m, shape) in convs.items()}
    want["fc"] = expected_tags(g, "fc", model.fc.weight, model.fc.bias)
    check(ww, g, read, want, "ResNet BasicBlock with downsample")


class Towers(nn.Module):
    def __init__(self):
        super().__init__()
        self.a1, self.a2, self.b1, self.b2 = nn.Linear(6, 5), nn.Linear(5, 4), nn.Linear(3, 4), nn.Linear(4, 2)
        self.head = nn.Linear(6, 3)

    def forward(self, xa, xb):
        a = F.relu(self.a2(F.relu(self.a1(xa))))
        b = self.b2(torch.tanh(self.b1(xb)))
        return self.head(torch.cat([a, b], dim=1))


def test_two_towers_concatenated_late(tmp_path):
    model = Towers()
    g = Unrolled()
    g.dense(neurons("a1", 5), "a2", model.a2.weight)
    g.dense(neurons("b1", 4), "b2", model.b2.weight)
    g.dense(neurons("a2", 4) + neurons("b2", 2), "head", model.head.weight)  # each tower its slice
    ww, read = logged(model, tmp_path, (torch.randn(3, 6), torch.randn(3, 3)))
    assert ww.flow.method == "fx"
    want = {n: expected_tags(g, n, m.weight, m.bias) for n, m in model.named_children()}
    check(ww, g, read, want, "two towers concatenated late")


def test_flow_traced_on_the_first_forward_pass(tmp_path):
    model = Towers()
    ww = WeightWatch(model, tmp_path / "run")
    assert ww.flow is None
    model(torch.randn(4, 6), torch.randn(4, 3))
    assert ww.flow is not None and ww.flow.pairs()["a2"] == ["head"]
    assert ww.run.recorder.flow is ww.flow
    ww.close()


def test_untraceable_model_falls_back_with_one_warning_naming_it(tmp_path):
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(3, 2)

        def forward(self, x):
            raise RuntimeError("no forward for you")

    with pytest.warns(RuntimeWarning, match="data flow of Broken") as record:
        ww = WeightWatch(Broken(), tmp_path / "run", example_input=torch.randn(2, 4))
    assert len([w for w in record if "data flow" in str(w.message)]) == 1
    assert ww.flow.method == "order" and ww.flow.pairs() == {"a": ["b"]}
    ww.close()
