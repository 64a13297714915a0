"""Read the logged runs back with TensorBoard's own reader (EventAccumulator), independently of weightwatch.

Each run gives a :class:`LoggedRun`: its hyperparameters and layers (from the
``weightwatch.json`` the callbacks write), every scalar's last value, each
weight histogram's last record, and its weight sketch (``weightwatch_sketch.npz``,
read with numpy as its format documents).
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# scalars: keep all (they are few); histograms / tensors: only the latest record (the reservoir keeps the last)
SIZE_GUIDANCE = {"scalars": 0, "histograms": 1, "tensors": 1, "images": 1, "compressedHistograms": 1}


@dataclass
class LoggedRun:
    """One run as logged. ``final``: tag -> value at the last step; ``series``: tag -> (steps, values)."""

    name: str  # path relative to the runs root, e.g. dnn/mixed/dnn-w20-std1-s0
    hparams: dict
    layers: list[dict]  # name, kind, role, shape, heads (weightwatch.json)
    framework: str
    final: dict[str, float] = field(default_factory=dict)
    series: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    histograms: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # tag -> (edges (k+1,), counts (k,))
    sketch: np.ndarray | None = None

    @property
    def family(self) -> str:
        return self.name.split("/")[0]

    @property
    def population(self) -> str:
        return self.name.split("/")[1]

    def layer_names(self, role: str | None = None) -> list[str]:
        return [layer["name"] for layer in self.layers if role is None or layer["role"] == role]


def read_run(root: Path, run: Path) -> LoggedRun:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    info = json.loads((run / "weightwatch.json").read_text())
    acc = EventAccumulator(str(run), size_guidance=SIZE_GUIDANCE)
    acc.Reload()
    out = LoggedRun(run.relative_to(root).as_posix(), info.get("hparams", {}), info["layers"],
                    info.get("framework", ""))
    for tag in acc.Tags()["scalars"]:
        events = acc.Scalars(tag)
        out.series[tag] = (np.array([e.step for e in events]), np.array([e.value for e in events]))
        out.final[tag] = float(events[-1].value)
    for tag in acc.Tags()["histograms"]:
        h = acc.Histograms(tag)[-1].histogram_value
        # bucket_limit holds the right edges; the first bin starts at the histogram's min
        out.histograms[tag] = (np.concatenate([[h.min], np.array(h.bucket_limit)]), np.array(h.bucket))
    sketch = run / "weightwatch_sketch.npz"
    if sketch.exists():
        with np.load(sketch, allow_pickle=False) as z:
            out.sketch = np.asarray(z["values"], dtype=np.float64)
    return out


def read_runs(root: Path, workers: int = 2) -> list[LoggedRun]:
    """Every run directory (holding weightwatch.json) under ``root``, read in ``workers`` processes."""
    root = Path(root)
    runs = sorted(p.parent for p in root.rglob("weightwatch.json"))
    if workers <= 1 or len(runs) < 8:
        return [read_run(root, r) for r in runs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(read_run, [root] * len(runs), runs, chunksize=8))
