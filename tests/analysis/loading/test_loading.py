"""The loader against TensorBoard's own reader, on real runs; damaged files; the cache."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.compat.proto import event_pb2, summary_pb2

import populations
from weightwatch.analysis.loading import loader as load_mod
from weightwatch.analysis.loading.find import POPULATION_MARKER, find_runs
from weightwatch.analysis.loading.loader import load_runs
from weightwatch.analysis.loading.metric import final_metric
from weightwatch.events import EventFileWriter, frame_record


@pytest.fixture(scope="session")
def population(tmp_path_factory):
    return populations.shared_population(tmp_path_factory)


@pytest.fixture
def fresh(population, tmp_path):
    """A private copy of the population, free to damage."""
    root, truth = population
    dst = tmp_path / "runs"
    shutil.copytree(root, dst, ignore=shutil.ignore_patterns(".weightwatch-cache", "weightwatch-population"))
    return dst, truth


def accumulator(run_dir: Path) -> ea.EventAccumulator:
    acc = ea.EventAccumulator(str(run_dir), size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.TENSORS: 0})
    acc.Reload()
    return acc


def event_file(run_dir: Path) -> Path:
    (path,) = [p for p in run_dir.iterdir() if "tfevents" in p.name]
    return path


def assert_same_as_tensorboard(run, run_dir: Path) -> None:
    acc = accumulator(run_dir)
    tags = acc.Tags()
    assert set(run.scalars) == set(tags["scalars"])
    for tag in tags["scalars"]:
        events = acc.Scalars(tag)
        np.testing.assert_array_equal(run.scalars[tag].steps, [e.step for e in events], err_msg=tag)
        np.testing.assert_array_equal(run.scalars[tag].values, [e.value for e in events], err_msg=tag)
    assert set(run.histograms) == set(tags["histograms"])
    for tag in tags["histograms"]:
        events = acc.Histograms(tag)
        h = run.histograms[tag]
        np.testing.assert_array_equal(h.steps, [e.step for e in events], err_msg=tag)
        for i, e in enumerate(events):
            v = e.histogram_value
            k = len(v.bucket)  # other writers' bucket counts vary: the loader pads with empty bins
            want = np.minimum([min(v.min, v.bucket_limit[0]), *v.bucket_limit], v.max)
            np.testing.assert_array_equal(h.edges[i, :k + 1], want, err_msg=tag)
            np.testing.assert_array_equal(h.edges[i, k + 1:], want[-1], err_msg=tag)
            np.testing.assert_array_equal(h.counts[i, :k], v.bucket, err_msg=tag)
            assert not h.counts[i, k:].any()


def test_finds_every_run_and_its_final_metric(population):
    root, truth = population
    result = load_runs(root, cache=False, progress=False)
    assert result.problems == {}
    assert [run.name for run in result.runs] == sorted(truth)
    for run in result.runs:
        tag, value = final_metric(run)
        assert tag == "val_accuracy"
        assert value == pytest.approx(truth[run.name].val_accuracy, rel=1e-6)
        assert final_metric(run, "loss")[1] == pytest.approx(truth[run.name].loss[-1], rel=1e-6)
        assert run.architecture and run.layers and run.problems == []


def test_numbers_equal_tensorboards_event_accumulator(population):
    root, _ = population
    result = load_runs(root, cache=False, progress=False)
    for run in result.runs[:6]:
        assert_same_as_tensorboard(run, run.path)


def test_parallel_load_equals_serial(population, monkeypatch):
    root, _ = population
    monkeypatch.setattr(load_mod, "PARALLEL_MIN_BYTES", 0)
    serial = load_runs(root, cache=False, progress=False, workers=1)
    parallel = load_runs(root, cache=False, progress=False, workers=2)
    assert parallel.stats.workers == 2
    for a, b in zip(serial.runs, parallel.runs, strict=True):
        assert a.name == b.name and a.scalars.keys() == b.scalars.keys()
        for tag in a.scalars:
            np.testing.assert_array_equal(a.scalars[tag].values, b.scalars[tag].values)
        for tag in a.histograms:
            np.testing.assert_array_equal(a.histograms[tag].counts, b.histograms[tag].counts)


def test_histogram_modes(population):
    root, _ = population
    everything = load_runs(root, cache=False, progress=False).runs[0]
    last = load_runs(root, cache=False, progress=False, histograms="last").runs[0]
    none = load_runs(root, cache=False, progress=False, histograms=False).runs[0]
    assert none.histograms == {} and none.scalars.keys() == everything.scalars.keys()
    assert last.histograms.keys() == everything.histograms.keys()
    for tag, h in everything.histograms.items():
        assert last.histograms[tag].steps.tolist() == [h.steps[-1]]
        np.testing.assert_array_equal(last.histograms[tag].edges[0], h.edges[-1])
        np.testing.assert_array_equal(last.histograms[tag].counts[0], h.counts[-1])
    only_histograms = load_runs(root, cache=False, progress=False, scalars=False).runs[0]
    assert only_histograms.scalars == {} and only_histograms.histograms.keys() == everything.histograms.keys()
    with pytest.raises(ValueError, match="histograms must be"):
        load_runs(root, histograms="some")


def test_truncated_final_record_keeps_everything_before_it(fresh):
    root, truth = fresh
    name = sorted(truth)[0]
    path = event_file(root / name)
    whole = load_runs(root, cache=False, progress=False).runs[0]
    data = path.read_bytes()
    path.write_bytes(data[:-37])  # a crash in the middle of the last record
    result = load_runs(root, cache=False, progress=False)
    run = next(r for r in result.runs if r.name == name)
    assert result.problems == {}
    assert len(run.problems) == 1 and "incomplete record" in run.problems[0] and path.name in run.problems[0]
    assert run.scalars["val_accuracy"].steps.tolist() == whole.scalars["val_accuracy"].steps.tolist()
    assert_same_as_tensorboard(run, run.path)


def test_bad_checksum_skips_the_record_and_bad_header_stops(fresh):
    root, truth = fresh
    a, b = sorted(truth)[:2]
    # data checksum: flip a byte inside the last record's data
    path = event_file(root / a)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    # header checksum: corrupt the length of the second record
    path_b = event_file(root / b)
    data = bytearray(path_b.read_bytes())
    (first_len,) = struct.unpack_from("<Q", data, 0)
    second = 12 + first_len + 4
    data[second] ^= 0x01
    path_b.write_bytes(bytes(data))
    result = load_runs(root, cache=False, progress=False)
    runs = {r.name: r for r in result.runs}
    assert any("fails its data checksum" in p for p in runs[a].problems)
    assert runs[a].scalars["val_accuracy"].values.size > 0
    assert b in result.problems or any("corrupt record header" in p for p in runs[b].problems)


def test_unreadable_runs_are_named_not_raised(tmp_path):
    (tmp_path / "good").mkdir()
    writer = EventFileWriter(tmp_path / "good")
    writer.write_summary(summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="accuracy", simple_value=0.5)]), 1)
    writer.close()
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "events.out.tfevents.1.x").write_bytes(b"not a tfrecord at all, just text" * 3)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "events.out.tfevents.1.y").write_bytes(b"")
    result = load_runs(tmp_path, progress=False)
    assert [r.name for r in result.runs] == ["good"]
    assert final_metric(result.runs[0]) == ("accuracy", 0.5)
    assert set(result.problems) == {"garbage", "empty"}
    assert "corrupt record header" in result.problems["garbage"][0]
    assert "no readable record" in result.problems["empty"][0]
    with pytest.raises(FileNotFoundError):
        load_runs(tmp_path / "nowhere")


def test_cache_second_load_reads_only_new_bytes(fresh):
    root, truth = fresh
    first = load_runs(root, progress=False)
    assert first.stats.bytes_read > 0 and first.stats.runs_from_cache == 0
    again = load_runs(root, progress=False)
    assert again.stats.bytes_read == 0 and again.stats.records == 0 and again.stats.runs_from_cache == len(truth)
    # the cached runs are the same runs
    for a, b in zip(first.runs, again.runs, strict=True):
        for tag in a.scalars:
            np.testing.assert_array_equal(a.scalars[tag].values, b.scalars[tag].values)
        for tag in a.histograms:
            np.testing.assert_array_equal(a.histograms[tag].edges, b.histograms[tag].edges)
    # grow one run by an epoch: only those bytes are parsed
    name = sorted(truth)[3]
    path = event_file(root / name)
    value = summary_pb2.Summary.Value(tag="val_accuracy", simple_value=0.25)
    record = frame_record(event_pb2.Event(step=99, summary=summary_pb2.Summary(value=[value])).SerializeToString())
    with open(path, "ab") as fh:
        fh.write(record)
    grown = load_runs(root, progress=False)
    assert grown.stats.bytes_read == len(record) and grown.stats.records == 1
    assert grown.stats.runs_from_cache == len(truth) - 1
    run = next(r for r in grown.runs if r.name == name)
    assert final_metric(run) == ("val_accuracy", 0.25)
    assert run.scalars["val_accuracy"].steps[-1] == 99
    assert_same_as_tensorboard(run, run.path)


def test_cache_resumes_a_record_written_in_two_parts(fresh):
    root, truth = fresh
    name = sorted(truth)[0]
    path = event_file(root / name)
    load_runs(root, progress=False)
    value = summary_pb2.Summary.Value(tag="val_accuracy", simple_value=0.75)
    record = frame_record(event_pb2.Event(step=7, summary=summary_pb2.Summary(value=[value])).SerializeToString())
    with open(path, "ab") as fh:
        fh.write(record[:10])
    half = load_runs(root, progress=False)
    run = next(r for r in half.runs if r.name == name)
    assert any("incomplete record" in p for p in run.problems)
    assert run.scalars["val_accuracy"].steps[-1] != 7
    with open(path, "ab") as fh:
        fh.write(record[10:])
    whole = load_runs(root, progress=False)
    run = next(r for r in whole.runs if r.name == name)
    assert run.problems == [] and final_metric(run) == ("val_accuracy", 0.75)
    assert whole.stats.bytes_read == len(record)


def test_cache_covers_what_was_asked(fresh):
    root, _ = fresh
    load_runs(root, progress=False, histograms=False)
    more = load_runs(root, progress=False, histograms="last")
    assert more.stats.bytes_read > 0 and all(r.histograms for r in more.runs)
    less = load_runs(root, progress=False, histograms=False)
    assert less.stats.bytes_read == 0 and all(not r.histograms for r in less.runs)


def test_runs_written_by_other_writers(tmp_path):
    """torch's SummaryWriter (what Lightning and HF use) and TensorFlow-2 style tensor summaries."""
    from tensorboard.plugins.histogram import summary_v2 as histogram_v2
    from tensorboard.plugins.scalar import summary_v2 as scalar_v2
    from torch.utils.tensorboard import SummaryWriter

    rng = np.random.default_rng(0)
    writer = SummaryWriter(str(tmp_path / "deep" / "er" / "torch"))
    for step in range(3):
        writer.add_scalar("acc", 0.1 * step, step)
        writer.add_histogram("w", rng.normal(size=100 + step), step)
    writer.close()
    tf2 = EventFileWriter(tmp_path / "tf2")
    for step in range(3):
        tf2.write_summary(scalar_v2.scalar_pb("val_accuracy", 0.5 + 0.1 * step), step)
        tf2.write_summary(histogram_v2.histogram_pb("weights/dense", rng.normal(size=50), buckets=7), step)
    tf2.close()
    result = load_runs(tmp_path, progress=False)
    assert [r.name for r in result.runs] == ["deep/er/torch", "tf2"] and result.problems == {}
    torch_run, tf2_run = result.runs
    assert_same_as_tensorboard(torch_run, torch_run.path)
    assert final_metric(torch_run) == ("acc", pytest.approx(0.2))
    assert final_metric(tf2_run)[1] == pytest.approx(0.7)
    h = tf2_run.histograms["weights/dense"]
    assert h.steps.tolist() == [0, 1, 2] and h.counts.shape == (3, 7) and (h.counts.sum(axis=1) == 50).all()
    assert (np.diff(h.edges, axis=1) >= 0).all()


def test_find_runs_skips_hidden_dirs_and_compare_output(tmp_path):
    for d in ("a", ".hidden", "out"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "events.out.tfevents.1.h").write_bytes(b"")
    (tmp_path / "out" / POPULATION_MARKER).write_text("{}")
    assert find_runs(tmp_path) == [tmp_path / "a"]


@pytest.mark.parametrize("module", ["records", "wire", "columns", "lazy", "cache", "metric"])
def test_doctests(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"weightwatch.analysis.loading.{module}")
    assert doctest.testmod(mod, optionflags=doctest.ELLIPSIS).failed == 0


def test_garbage_records_with_valid_checksums_never_crash(tmp_path):
    rng = np.random.default_rng(1)
    good = event_pb2.Event(step=3, summary=summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag="acc", simple_value=0.5)])).SerializeToString()
    for i in range(30):
        run = tmp_path / f"r{i}"
        run.mkdir()
        records = [frame_record(good)]
        for _ in range(5):
            junk = bytearray(good * 3)
            flips = rng.integers(0, len(junk), size=rng.integers(1, 8))
            for f in flips:
                junk[f] = rng.integers(0, 256)
            records.append(frame_record(bytes(junk[:rng.integers(1, len(junk))])))
        (run / "events.out.tfevents.1.fuzz").write_bytes(b"".join(records))
    result = load_runs(tmp_path, progress=False, cache=False)
    assert len(result.runs) == 30  # the first record of each is fine
    for run in result.runs:
        assert 3 in run.scalars["acc"].steps.tolist() or run.problems


def test_many_tiny_scalars_in_one_record(tmp_path):
    """More values than the decoder's first guess of room: it counts, then decodes."""
    values = [summary_pb2.Summary.Value(tag=chr(97 + i % 26), simple_value=float(i)) for i in range(3000)]
    writer = EventFileWriter(tmp_path / "run")
    writer.write(event_pb2.Event(step=5, summary=summary_pb2.Summary(value=values)))
    writer.close()
    (run,) = load_runs(tmp_path, progress=False, cache=False).runs
    assert len(run.scalars) == 26 and run.scalars["a"].steps.tolist() == [5]
    assert run.scalars["a"].values.tolist() == [2990.0]  # the last write of a (tag, step) wins


def test_run_maps_behave_like_dicts_and_pickle(population):
    import pickle

    root, _ = population
    run = load_runs(root, progress=False, cache=False).runs[0]
    copy = pickle.loads(pickle.dumps(run))
    assert list(copy.scalars) == list(run.scalars) and len(copy.histograms) == len(run.histograms)
    np.testing.assert_array_equal(copy.scalars["loss"].values, run.scalars["loss"].values)
    run.scalars["extra"] = run.scalars["loss"]
    del run.scalars["loss"]
    assert "loss" not in run.scalars and "extra" in run.scalars and list(run.scalars)[-1] == "extra"
    with pytest.raises(KeyError):
        run.scalars["loss"]
    assert dict(run.histograms).keys() == run.histograms.keys()


def test_cache_grows_by_segments_and_survives_damage(fresh):
    from weightwatch.analysis.loading.cache import MAX_SEGMENTS, cache_file, cache_key, default_cache_dir, \
        load_cache

    root, truth = fresh
    name = sorted(truth)[2]
    path = event_file(root / name)
    key = cache_key(root / name)
    cache_path = cache_file(default_cache_dir(), key)
    load_runs(root, progress=False)

    def grow(step: int) -> None:
        value = summary_pb2.Summary.Value(tag="val_accuracy", simple_value=step / 100)
        with open(path, "ab") as fh:
            fh.write(frame_record(event_pb2.Event(step=step, summary=summary_pb2.Summary(
                value=[value])).SerializeToString()))

    for i in range(MAX_SEGMENTS - 1):
        grow(100 + i)
        load_runs(root, progress=False)
    cached = load_cache(cache_path, key)
    assert cached.segments == MAX_SEGMENTS and cached.sound  # appended, not rewritten
    grow(200)
    run = next(r for r in load_runs(root, progress=False).runs if r.name == name)
    assert load_cache(cache_path, key).segments == 1  # compacted
    assert_same_as_tensorboard(run, run.path)
    # a cache cut short (a crash while appending) is ignored past the damage, then rewritten
    grow(201)
    load_runs(root, progress=False)
    with open(cache_path, "r+b") as fh:
        fh.truncate(cache_path.stat().st_size - 20)
    assert not load_cache(cache_path, key).sound
    run = next(r for r in load_runs(root, progress=False).runs if r.name == name)
    assert_same_as_tensorboard(run, run.path)
    assert load_cache(cache_path, key).sound


def test_packed_histograms_round_trip_exactly():
    from weightwatch.analysis.loading.columns import pack_histograms, unpack_histograms
    from weightwatch.ops.raw import bin_edges

    rng = np.random.default_rng(5)
    bins = np.array([64, 3, 0, 64, 7])
    edges = [bin_edges(-1.5, 2.0, 64), np.array([-3.0, -1.0, 0.5, 9.0]), np.array([0.25]),
             bin_edges(0.1, 0.1000001, 64), np.sort(rng.normal(size=8))]
    counts = [rng.integers(0, 50, k).astype(float) for k in bins]
    counts[1] = np.array([0.5, 1.0, 2.0])  # not integral: stays float64
    e, c = np.concatenate(edges), np.concatenate(counts)
    packed = pack_histograms(bins, e, c)
    assert packed["uniform"].tolist() == [True, False, True, True, False]
    e2, c2 = unpack_histograms(bins, packed)
    assert e2.tobytes() == e.tobytes() and c2.tobytes() == c.tobytes()


def test_progress_bar_on_a_terminal_only(population, monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    root, _ = population
    for stream, shown in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        load_runs(root, cache=False)
        assert ("loading runs" in stream.getvalue()) == shown
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    load_runs(root, cache=False, progress=False)
    assert terminal.getvalue() == ""


def test_hugging_face_eval_accuracy_is_found_before_train_accuracy():
    from weightwatch.analysis.loading.metric import find_metric
    from weightwatch.analysis.loading.run import Run, Series

    s = Series(np.array([0]), np.array([0.5]))
    run = Run("r", Path("r"), scalars={"accuracy": s, "eval_accuracy": s, "loss": s})
    assert find_metric(run) == "eval_accuracy"


@pytest.mark.parametrize("modulus", [1, 3])
def test_tag_hash_collisions_never_mix_two_tags(fresh, monkeypatch, modulus):
    """Every tag's 64-bit hash forced into ``modulus`` values: the loader still reads each tag's own
    points, as TensorBoard does (the bytes of each tag are compared, not trusted to the hash)."""
    from weightwatch.analysis.loading import parse

    real_decode = parse.decode
    forced = []

    def colliding(*args, **kwargs):
        dec = real_decode(*args, **kwargs)
        for hashes in (dec.s_hash, dec.h_hash):
            forced.append(np.unique(hashes).size > modulus)
            hashes %= np.uint64(modulus)
        return dec

    monkeypatch.setattr(parse, "decode", colliding)
    root, _ = fresh
    result = load_runs(root, cache=False, workers=1, progress=False)
    assert any(forced) and result.problems == {}
    for run in result.runs[:3]:
        assert len(run.scalars) > 50
        assert_same_as_tensorboard(run, run.path)
