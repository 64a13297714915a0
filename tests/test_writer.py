"""The background writer: what a crash, an exit without close() and a full disk leave behind.

Each crash test runs a real training-like child process, kills it with
SIGKILL right after a log call returns, and reads the run back with
TensorBoard's EventAccumulator and with weightwatch's loader.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from torch import nn

from tb_read import ROOT, load
from weightwatch.analysis import load_runs
from weightwatch.events import BackgroundWriter, EventFileWriter
from weightwatch.integrations.torch import WeightWatch

LOGS = 5  # the child logs steps 0 .. LOGS - 1, then is killed

CHILD = textwrap.dedent("""
    import sys, time
    import torch
    from torch import nn
    import weightwatch.summaries as summaries
    from weightwatch.integrations.torch import WeightWatch

    log_dir, logs, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "slow-disk":  # the last log's batch hangs on the writer thread before reaching the OS
        log_event, calls = summaries.log_event, []
        def slow_log_event(*args, **kwargs):
            calls.append(1)
            if len(calls) == logs:
                time.sleep(600)
            return log_event(*args, **kwargs)
        summaries.log_event = slow_log_event
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 4))
    ww = WeightWatch(model, log_dir)
    for step in range(logs):
        with torch.no_grad():
            model[0].weight.add_(0.01 * torch.randn_like(model[0].weight))
        ww.log(step, loss=1.0 / (step + 1))
        print(step, repr(ww.recorder.last_snapshot.layers[0].weights.mean), flush=True)
    if mode == "exit":
        sys.exit(0)  # no close(): the interpreter's exit must still write what is pending
    time.sleep(600)
""")


def printed_then_killed(script: str, args: list[str], lines: int, exits: bool = False) -> list[str]:
    """Run ``script`` with ``args``, read ``lines`` lines of its output, then SIGKILL it (or, with
    ``exits``, wait for it to exit 0); returns those lines."""
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        got = [line for _, line in zip(range(lines), proc.stdout)]
        if exits:
            assert proc.wait(timeout=120) == 0
        else:
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(got) == lines, "the child died before logging"
    return got


def run_child(log_dir, mode: str) -> dict[int, float]:
    """Start the child, wait for its LOGS log calls to return, SIGKILL it (unless it exits)."""
    lines = printed_then_killed(CHILD, [str(log_dir), str(LOGS), mode], LOGS, exits=mode == "exit")
    return {int(step): float(mean) for step, mean in (line.split() for line in lines)}


@pytest.mark.parametrize("mode", ["kill", "slow-disk", "exit"])
def test_a_crash_loses_at_most_the_log_in_flight(tmp_path, mode):
    run = tmp_path / "runs" / "child"
    means = run_child(run, mode)
    acc = load(run)
    steps = [e.step for e in acc.Scalars("weights/0/mean")]
    if mode == "exit":
        assert steps == list(range(LOGS))
    elif mode == "slow-disk":
        assert steps == list(range(LOGS - 1))  # the last one never reached the OS
    else:
        assert steps[:LOGS - 1] == list(range(LOGS - 1)) and len(steps) in (LOGS - 1, LOGS)
    for event in acc.Scalars("weights/0/mean"):
        assert event.value == pytest.approx(means[event.step], rel=1e-6)
    assert [e.step for e in acc.Histograms("weights/0")] == steps
    for event in acc.Histograms("weights/0"):
        assert sum(event.histogram_value.bucket) == 30 * 20
    assert [e.step for e in acc.Scalars("loss")] == steps

    loaded = load_runs(tmp_path / "runs", workers=1, cache=False, progress=False)
    [got] = loaded.runs
    np.testing.assert_array_equal(got.scalars["weights/0/mean"].steps, steps)
    np.testing.assert_allclose(got.scalars["weights/0/mean"].values, [means[s] for s in steps], rtol=1e-6)
    np.testing.assert_array_equal(got.histograms["weights/0"].steps, steps)


def test_a_full_disk_is_raised_as_itself_naming_the_file(tmp_path):
    ww = WeightWatch(nn.Sequential(nn.Linear(4, 3)), tmp_path / "run")
    ww.log(0)
    ww.recorder.flush()
    path = ww.recorder.writer.path
    real = ww.recorder.writer._file
    full = open("/dev/full", "wb", buffering=0)  # noqa: SIM115 - every write fails with ENOSPC

    class DiskFull:  # the event file whose writes now go to /dev/full (the same file object otherwise)
        def write(self, data):
            return full.write(data)

        def __getattr__(self, name):
            return getattr(real, name)

    ww.recorder.writer._file = DiskFull()
    ww.log(1)  # handed to the writer thread, which fails
    with pytest.raises(OSError, match=f"could not write to the event file '{path}'.*No space left") as info:
        ww.log(2)  # log 1's error; log 2 is queued all the same (the disk might have room again)
    assert info.value.errno == errno.ENOSPC and isinstance(info.value.__cause__, OSError)
    with pytest.raises(OSError, match="No space left"):
        ww.recorder.flush()  # log 2 met the full disk too
    ww.recorder.writer._file = real  # the disk has room again
    full.close()
    ww.log(3)
    ww.close()
    assert [e.step for e in load(path).Scalars("weights/0/mean")] == [0, 3]

def test_background_writer_writes_batches_in_order_and_close_drains(tmp_path):
    from tensorboard.compat.proto import event_pb2, summary_pb2

    writer = BackgroundWriter(EventFileWriter(tmp_path))
    for step in range(20):
        value = summary_pb2.Summary.Value(tag="x", simple_value=float(step))
        writer.submit(lambda step=step, value=value: [event_pb2.Event(step=step, summary=summary_pb2.Summary(
            value=[value]))])
    writer.close()
    assert writer.closed
    assert [(e.step, e.value) for e in load(writer.writer.path).Scalars("x")] == [(s, float(s)) for s in range(20)]
    with pytest.raises(RuntimeError, match="already closed"):
        writer.submit(lambda: [])


METRICS_CHILD = textwrap.dedent("""
    import sys, time
    from torch import nn
    from weightwatch.integrations.torch import WeightWatch

    log_dir, logs = sys.argv[1], int(sys.argv[2])
    ww = WeightWatch(nn.Sequential(nn.Linear(4, 3)), log_dir, schedule=10**6)  # weights at step 0 only
    for step in range(logs):
        ww.log(step, loss=1.0 / (step + 1))
        print(step, flush=True)
    time.sleep(600)
""")


def test_a_kill_after_metrics_only_calls_loses_none_of_them(tmp_path):
    """The scalars-only calls written on the caller's thread are in the OS when each returns."""
    run = tmp_path / "run"
    returned = [int(line) for line in printed_then_killed(METRICS_CHILD, [str(run), "200"], 200)]
    assert returned == list(range(200))
    acc = load(run)
    assert [e.step for e in acc.Scalars("loss")] == list(range(200))  # not even the last one lost
    assert [e.value for e in acc.Scalars("loss")] == pytest.approx([1.0 / (s + 1) for s in range(200)])


def test_a_full_disk_on_a_metrics_only_call_is_raised_by_that_call(tmp_path, monkeypatch):
    import weightwatch.events as events

    monkeypatch.setattr(events, "SYNC_EVERY_S", 3600.0)  # no fsync due after the first: the inline path
    ww = WeightWatch(nn.Sequential(nn.Linear(4, 3)), tmp_path / "run", schedule=10**6)
    ww.log(0, loss=1.0)  # weights: the writer thread, which fsyncs (the first time)
    ww.recorder.flush()
    ww.log(1, loss=0.5)  # scalars only: written here
    path, real = ww.recorder.writer.path, ww.recorder.writer._file
    full = open("/dev/full", "wb", buffering=0)  # noqa: SIM115 - every write fails with ENOSPC

    class DiskFull:
        def write(self, data):
            return full.write(data)

        def __getattr__(self, name):
            return getattr(real, name)

    ww.recorder.writer._file = DiskFull()
    with pytest.raises(OSError, match=f"'{path}'.*No space left.*This log call is lost") as info:
        ww.log(2, loss=0.25)
    assert info.value.errno == errno.ENOSPC
    ww.recorder.writer._file = real
    full.close()
    ww.log(3, loss=0.125)
    ww.close()
    assert [(e.step, e.value) for e in load(path).Scalars("loss")] == [(0, 1.0), (1, 0.5), (3, 0.125)]


def test_threads_logging_at_once_leave_a_whole_file(tmp_path):
    """Scalars-only calls (written by the caller) and weight logs (by the writer thread) from several
    threads: every record whole and every value there, as TensorBoard reads it."""
    import threading

    ww = WeightWatch(nn.Sequential(nn.Linear(8, 4)), tmp_path / "run", schedule=10)

    def worker(k: int) -> None:
        for i in range(150):
            step = 10 * (1000 * (k + 1) + i) + 1 + k  # never a multiple of 10: scalars only
            ww.log(step, **{f"loss_{k}": float(i)})

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for step in range(0, 200, 10):
        ww.log(step)  # weights, through the writer thread
    for t in threads:
        t.join()
    path = ww.recorder.writer.path
    ww.close()
    acc = load(path)
    for k in range(4):
        assert sorted(e.value for e in acc.Scalars(f"loss_{k}")) == [float(i) for i in range(150)]
    assert [e.step for e in acc.Histograms("weights/0")] == list(range(0, 200, 10))


def test_object_storage_flushes_stay_on_the_writer_thread(tmp_path):
    """A flush to a bucket is an upload: scalars-only batches still go through the writer thread."""
    import threading

    from weightwatch.object_events import ObjectEventWriter

    flushed_on = []

    class Recording(ObjectEventWriter):  # only what BackgroundWriter calls, without a bucket
        def __init__(self):
            self.done, self.path = False, tmp_path / "events"

        @property
        def closed(self):
            return self.done

        def write_many(self, events):
            pass

        def flush(self):
            flushed_on.append(threading.current_thread().name)

        def sync(self):
            pass

        def close(self):
            self.done = True

    writer = BackgroundWriter(Recording())
    for _ in range(3):
        writer.submit(lambda: [], inline=True)
    writer.close()
    assert flushed_on and all(name.startswith("weightwatch-writer") for name in flushed_on)
