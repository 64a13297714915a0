"""Tiny real runs written fast: weightwatch's own Recorder fed numpy weights (no training).

Each run has two or three linear layers (an MLP, ``DNN (fc, output)`` / ``DNN (fc×2, output)``),
``steps`` log calls with ``val_accuracy`` and ``loss``, and everything a callback writes
(event file, weightwatch.json, weight sketch). ``accuracy`` fixes the run's final metric,
so tests know every run's group without training anything.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

import numpy as np

from weightwatch.layers import LayerInfo, LayerTensors
from weightwatch.recorder import Recorder


def tiny_run(path: Path, accuracy: float | None, *, seed: int = 0, steps: int = 3, width: int = 8,
             hidden: int = 1, metric: str = "val_accuracy") -> Path:
    """Write one run into ``path``; ``accuracy`` None leaves the metric out (loss only)."""
    rng = np.random.default_rng(seed)
    shapes = [(width, 6)] + [(width, width)] * (hidden - 1) + [(3, width)]
    layers = [LayerInfo(f"fc{i}", "linear", "fc", s, has_bias=True) for i, s in enumerate(shapes[:-1])]
    layers.append(LayerInfo("out", "linear", "output", shapes[-1], has_bias=True))
    scale = 0.1 + (1.0 - (accuracy or 0.5))  # better runs: smaller weights, a tighter group
    rec = Recorder(path, layers, hparams={"seed": seed, "width": width}, framework="numpy")
    try:
        for step in range(steps):
            tensors = [LayerTensors(rng.normal(0, scale, s).astype(np.float32), np.zeros(s[0], np.float32))
                       for s in shapes]
            metrics = {"loss": 2.0 / (step + 1)}
            if accuracy is not None:
                metrics[metric] = accuracy * (step + 1) / steps
            rec.log(step, tensors, metrics)
    finally:
        rec.close()
    return path


def population(root: Path, n: int = 12, **kw) -> dict[str, float]:
    """``n`` runs named ``run00``.. in ``root``, final val_accuracy spread over 0.3 .. 0.95; returns name -> it."""
    out = {}
    for i in range(n):
        acc = round(0.3 + 0.65 * i / max(n - 1, 1), 4)
        tiny_run(root / f"run{i:02d}", acc, seed=i, **kw)
        out[f"run{i:02d}"] = acc
    return out


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path below ``root`` (links not followed) -> (size, mtime_ns): equal before and after
    means nothing was written, created or removed there."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size if not stat.S_ISDIR(st.st_mode) else 0, st.st_mtime_ns)
    return out


def event_file(run_dir: Path) -> Path:
    (path,) = [p for p in run_dir.iterdir() if "tfevents" in p.name]
    return path


def write_info(run_dir: Path, text: str) -> None:
    (run_dir / "weightwatch.json").write_text(text)


def info(run_dir: Path) -> dict:
    return json.loads((run_dir / "weightwatch.json").read_text())


def compare_json(capsys, *args: str) -> tuple[int, dict, str]:
    """``weightwatch compare ARGS --json``: (exit code, the JSON, stderr)."""
    from weightwatch.cli import main

    code = main(["compare", *args, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def world_readable_tmp() -> Path:
    """A fresh directory under the system temp dir that other users can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="weightwatch-ro-"))
    os.chmod(path, 0o755)
    return path
