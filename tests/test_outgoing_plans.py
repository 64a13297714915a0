"""The planned outgoing terms (index maps worked out once, compiled loops) against the definition:
for every unit of a consumer that reads the producer, its input sum, times the scales of the norms
on the way, added to the producer unit it reads (a pooled edge: the channel mean, at every position)."""

from __future__ import annotations

import numpy as np
import pytest

from weightwatch.flow import Edge, Flow, consumer_input_sums
from weightwatch.outgoing import OutgoingTerms, outgoing_terms
from weightwatch.layers import LayerInfo


def by_definition(flow: Flow, producer: LayerInfo, sums, scales, fold: bool) -> np.ndarray:
    positions = flow.positions.get(producer.name, 1)
    units = producer.nodes * positions
    total = np.zeros(units)
    for edge in flow.consumers(producer.name):
        read = edge.units.reshape(-1)
        w = np.asarray(sums[edge.consumer], dtype=np.float64).reshape(-1)
        w = np.tile(w, read.size // w.size)
        for i in range(read.size):
            if read[i] < 0:
                continue
            value = w[i]
            if fold:
                for norm, index in edge.norms:
                    k = index.reshape(-1)[i]
                    value *= scales[norm][k] if k >= 0 else 1.0
            if edge.pooled:
                continue
            total[read[i]] += value
        if edge.pooled:
            ok = read >= 0
            vals = np.array([w[i] * (np.prod([scales[n][ix.reshape(-1)[i]] if ix.reshape(-1)[i] >= 0 else 1.0
                                              for n, ix in edge.norms]) if fold else 1.0)
                             for i in np.flatnonzero(ok)])
            channel_sum = np.zeros(producer.nodes)
            channel_n = np.zeros(producer.nodes)
            np.add.at(channel_sum, read[ok], vals)
            np.add.at(channel_n, read[ok], 1)
            total += np.repeat(channel_sum / np.maximum(channel_n, 1), positions)
    return total


def conv(name: str, channels: int) -> LayerInfo:
    return LayerInfo(name=name, kind="conv", role="conv", shape=(channels, 2, 3, 3))


def linear(name: str, out: int, inputs: int) -> LayerInfo:
    return LayerInfo(name=name, kind="linear", role="fc", shape=(out, inputs))


def case(rng: np.random.Generator):
    """A producer of 4 channels x 6 positions read by five consumers of every kind of edge."""
    c, p = 4, 6
    producer = conv("prod", c)
    flow = Flow(positions={"prod": p})
    unit = np.arange(c * p)
    sums, scales = {}, {"bn": rng.normal(size=c), "ln": rng.normal(size=c * p), "ln2": rng.normal(size=9)}
    # identity, through a per-channel norm (a conv -> bn -> conv)
    flow.edges.append(Edge("prod", "a", unit.reshape(c, p), norms=(("bn", np.repeat(np.arange(c), p)),)))
    sums["a"] = rng.normal(size=c * p)
    # identity without a norm, and a second norm on the same path
    flow.edges.append(Edge("prod", "b", unit.copy(), norms=(("bn", np.repeat(np.arange(c), p)),
                                                             ("ln", np.arange(c * p)))))
    sums["b"] = rng.normal(size=c * p)
    # a conv map read as a sequence: token 0 (a class token) from elsewhere, tokens 1.. read position t - 1
    tokens = np.full((p + 1, c), -1)
    tokens[1:] = np.arange(c)[None, :] * p + np.arange(p)[:, None]
    index = np.tile(np.arange(c), (p + 1, 1))
    flow.edges.append(Edge("prod", "seq", tokens, norms=(("bn", index),)))
    sums["seq"] = rng.normal(size=c)
    # a pooled path (global average pool -> linear), some inputs fed by something else
    # (each channel read twice: pooled to 2 x 2, flattened into the head's 8 inputs)
    pooled = np.concatenate([np.arange(c), np.arange(c)[::-1], [-1]])
    flow.edges.append(Edge("prod", "head", pooled, pooled=True, norms=(("ln2", np.arange(9)),)))
    sums["head"] = rng.normal(size=9)
    # a conv map max-pooled into a conv: each of its (C, 3 positions) inputs reads its channel, through a bn
    flow.edges.append(Edge("prod", "pool2", np.repeat(np.arange(c), 3).reshape(c, 3), pooled=True,
                           norms=(("bn", np.repeat(np.arange(c), 3)),)))
    sums["pool2"] = rng.normal(size=c * 3)
    # every token reads the same units (a broadcast): folded into one row counted per token
    same = np.tile(np.concatenate([unit[::3], [-1]]), (3, 1))
    flow.edges.append(Edge("prod", "bcast", same))
    sums["bcast"] = rng.normal(size=same.shape[1])
    # a per-token norm index that varies by token (an odd case: kept per unit)
    odd = np.stack([np.roll(np.arange(c * p), t) for t in range(2)])
    flow.edges.append(Edge("prod", "odd", odd, norms=(("ln", np.stack([np.arange(c * p), np.zeros(c * p, int)])),)))
    sums["odd"] = rng.normal(size=c * p)
    return flow, producer, sums, scales


@pytest.mark.parametrize("fold", [True, False])
def test_planned_outgoing_terms_equal_the_definition(fold):
    rng = np.random.default_rng(3)
    flow, producer, sums, scales = case(rng)
    for _ in range(3):  # the plans are made on the first call and reused; new values every log
        got = outgoing_terms(flow, producer, sums, scales, fold)
        np.testing.assert_allclose(got, by_definition(flow, producer, sums, scales, fold), rtol=1e-12, atol=1e-12)
        sums = {k: rng.normal(size=v.shape) for k, v in sums.items()}
        scales = {k: rng.normal(size=v.shape) for k, v in scales.items()}


@pytest.mark.parametrize("which", ["a", "seq", "head", "pool2", "bcast", "odd"])
def test_each_edge_kind_alone_and_first(which):
    """Each kind of edge as a producer's only (hence first) edge: it writes the total, nothing stale."""
    rng = np.random.default_rng(5)
    flow, producer, sums, scales = case(rng)
    flow = Flow(edges=[e for e in flow.edges if e.consumer == which], positions=flow.positions)
    for _ in range(2):
        np.testing.assert_allclose(outgoing_terms(flow, producer, sums, scales, True),
                                   by_definition(flow, producer, sums, scales, True), rtol=1e-12, atol=1e-12)


def test_a_plan_is_remade_when_the_edges_change():
    rng = np.random.default_rng(7)
    flow, producer, sums, scales = case(rng)
    outgoing_terms(flow, producer, sums, scales, True)
    flow.edges[:] = flow.edges[:2]  # include / exclude rebuilt the list
    np.testing.assert_allclose(outgoing_terms(flow, producer, sums, scales, True),
                               by_definition(flow, producer, sums, scales, True), rtol=1e-12, atol=1e-12)
    assert outgoing_terms(Flow(), producer, sums, scales, True) is None


def test_lazy_terms_equal_the_eager_ones_and_release_the_sums():
    """Two producers feeding one consumer (a residual add) and one of them a second: each term as
    outgoing_terms gives it, computed when asked, and no consumer's sums kept once all are read."""


    rng = np.random.default_rng(11)
    a, b = linear("a", 3, 2), linear("b", 3, 2)
    infos = {"c": linear("c", 4, 3), "d": linear("d", 2, 3)}
    # a reads d twice (two paths into one consumer): its sums still go once a is done
    flow = Flow(edges=[Edge("a", "c", np.arange(3)), Edge("b", "c", np.arange(3)), Edge("a", "d", np.arange(3)),
                       Edge("a", "d", np.arange(3))])
    columns = {"c": rng.normal(size=3), "d": rng.normal(size=3)}
    sums = {n: consumer_input_sums(infos[n], columns[n], None) for n in infos}
    terms = OutgoingTerms(flow, {0: a, 5: b}, columns, infos, {}, False)
    assert sorted(terms) == [0, 5] and len(terms) == 2
    np.testing.assert_allclose(terms[5], outgoing_terms(flow, b, sums, {}, False))
    assert "c" in terms._sums  # still needed by a
    np.testing.assert_allclose(terms[0], columns["c"] + 2 * columns["d"])
    assert not terms._sums
    moved = terms.renumbered({5: 1})
    assert list(moved) == [1]
    np.testing.assert_allclose(moved[1], columns["c"])
