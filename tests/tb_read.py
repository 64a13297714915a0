"""Helpers for the integration tests: read runs back with TensorBoard's own loader
(EventAccumulator), and run examples/ as a user would.

A run directory may also hold the framework's own event file (Lightning's
logger, transformers' TensorBoardCallback); :func:`weightwatch_file` picks the
one weightwatch wrote, :func:`other_files` the rest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
KEEP_ALL = {"scalars": 0, "histograms": 0, "tensors": 0}


def load(path: str | Path) -> EventAccumulator:
    """One event file (or a whole directory) loaded with nothing sampled away."""
    acc = EventAccumulator(str(path), size_guidance=KEEP_ALL)
    acc.Reload()
    return acc


def event_files(run_dir: str | Path) -> list[Path]:
    return sorted(Path(run_dir).glob("events.out.tfevents.*"))


def weightwatch_file(run_dir: str | Path) -> Path:
    """The one event file in ``run_dir`` holding weightwatch's ``weights/all/mean``."""
    ours = [f for f in event_files(run_dir) if "weights/all/mean" in load(f).Tags()["scalars"]]
    assert len(ours) == 1, f"expected one weightwatch event file in {run_dir}, found {ours}"
    return ours[0]


def other_files(run_dir: str | Path) -> list[Path]:
    ours = weightwatch_file(run_dir)
    return [f for f in event_files(run_dir) if f != ours]


def scalars(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value), ...] in the order written."""
    acc = load(path)
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def histograms(path: str | Path) -> dict[str, list[tuple[int, np.ndarray, np.ndarray]]]:
    """tag -> [(step, right bin edges (k,), counts (k,)), ...]."""
    acc = load(path)
    out = {}
    for tag in acc.Tags()["histograms"]:
        out[tag] = [(e.step, np.array(e.histogram_value.bucket_limit), np.array(e.histogram_value.bucket))
                    for e in acc.Histograms(tag)]
    return out


def at(series: list[tuple[int, float]], step: int) -> float:
    """The value written at ``step`` (exactly one)."""
    values = [v for s, v in series if s == step]
    assert len(values) == 1, f"expected one value at step {step}, got {series}"
    return values[0]


def run_example(script: str, tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run one of examples/ with tiny settings, as a user would."""
    full_env = {**os.environ, "MPLBACKEND": "agg", "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--log-dir", str(tmp_path), *args],
                          capture_output=True, text=True, env=full_env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def train_and_kill(log_dir: str, epoch: int, timeout: float = 60) -> None:
    """Train a small model logged into ``log_dir`` (a path or URL) in a child process, and SIGKILL it
    once epoch ``epoch`` is readable (it logs epoch e with val_accuracy 0.5 + e / 10, then waits)."""
    script = textwrap.dedent(f"""
        import time, torch
        from torch import nn
        from weightwatch.integrations.torch import WeightWatch
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        ww = WeightWatch(model, {str(log_dir)!r}, hparams={{"lr": 0.1}})
        for epoch in range(100):
            with torch.no_grad():
                model[0].weight.mul_(0.9)
            ww.log(epoch, loss=1.0 / (epoch + 1), val_accuracy=0.5 + epoch / 10)
            print("logged", epoch, flush=True)
            if epoch == {epoch}:
                time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == f"logged {epoch}":
                break
        # log k is handed to the writer thread when ww.log returns (every earlier log is written by
        # then); the kill comes once it is readable too, as in training that went on after it
        deadline = time.time() + timeout
        while time.time() < deadline and epoch not in [s for s, _ in scalars(log_dir).get("weights/0/mean", [])]:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
