"""Per-epoch overhead of the Keras callback on each backend, beside keras.callbacks.TensorBoard.

One model (Conv2D 32 -> Conv2D 64 -> Flatten -> Dense 512 -> Dense 10, 4.7 M
weights) trains on random 16x16x3 images for ``--epochs`` epochs of 8 batches,
on the CPU. The time spent inside each callback's hooks (every ``on_*``
method Keras calls) is measured per epoch, for:

- weightwatch's ``WeightWatchCallback`` (statistics, node strengths, exact
  histograms, written and flushed) on every backend given;
- ``keras.callbacks.TensorBoard(histogram_freq=1)`` (per-weight histograms
  and the epoch's metrics) on the tensorflow backend, where it runs.

Each callback trains its own model (the same seed), so one never waits on the
other. After training, one record's reductions are also timed both ways
(``Recorder.compute`` with the backend's own ops and with weightwatch's CPU
kernels), the figures behind which one the callback picks on the CPU. The first epoch (compilation, tracing) is reported apart; then the
median of the other epochs. Each backend runs in its own interpreter:

    python benchmarks/keras_backends.py --pythons "jax=.venv-jax/bin/python tensorflow=.venv-tf/bin/python"

(``make bench-keras`` creates those venvs and runs this). This interpreter
runs the torch backend. Results go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _results import update_section  # noqa: E402

HOOKS = ("on_train_begin", "on_epoch_begin", "on_train_batch_begin", "on_train_batch_end", "on_epoch_end",
         "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end", "on_train_end")


def timed(callback, per_epoch: list[float]):
    """``callback`` with every hook's wall time added to ``per_epoch[-1]`` (a new entry per epoch).

    Hooks the callback does not define stay Keras' defaults, so Keras still skips them
    (it calls batch hooks only where a callback has them)."""
    for name in HOOKS:
        hook = getattr(callback, name)
        if getattr(hook, "_is_default", False) and name != "on_epoch_begin":
            continue

        def wrapper(*args, _hook=hook, _name=name, **kwargs):
            if _name == "on_epoch_begin":
                per_epoch.append(0.0)
            start = time.perf_counter()
            _hook(*args, **kwargs)
            if per_epoch:
                per_epoch[-1] += time.perf_counter() - start
        setattr(callback, name, wrapper)
    return callback


def worker(epochs: int) -> dict:
    """Run in the backend's interpreter: the hook times of each callback, in seconds."""
    import keras
    import numpy as np

    from weightwatch.integrations.keras import WeightWatchCallback

    def model() -> keras.Model:
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(32, 3, activation="relu", name="c1"),
                              keras.layers.Conv2D(64, 3, activation="relu", name="c2"), keras.layers.Flatten(),
                              keras.layers.Dense(512, activation="relu", name="fc"), keras.layers.Dense(10, name="out")])
        m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        return m

    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 10, 512)
    makers = {"weightwatch": lambda d: WeightWatchCallback(d)}
    if keras.backend.backend() == "tensorflow":
        makers["keras TensorBoard(histogram_freq=1)"] = lambda d: keras.callbacks.TensorBoard(d, histogram_freq=1)
    out = {"backend": keras.backend.backend(), "keras": keras.__version__, "params": 0, "callbacks": {}}
    for label, make in makers.items():
        with tempfile.TemporaryDirectory() as tmp:
            per_epoch: list[float] = []
            m = model()
            callback = make(tmp)
            m.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=[timed(callback, per_epoch)])
            out["params"] = int(sum(np.prod(w.shape) for w in m.weights))
            out["callbacks"][label] = per_epoch
            if label == "weightwatch":
                out["reduce"] = {str(on): reduce_time(callback.run, on) for on in (True, False)}
    return out


def reduce_time(run, on_device: bool, repeats: int = 5) -> float:
    """Median seconds of one record's reductions (no writing), with the backend's ops or the CPU kernels."""
    run.recorder.compute(0, run.tensors(), on_device=on_device)  # compile / trace first
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run.recorder.compute(0, run.tensors(), on_device=on_device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_backend(backend: str, python: str, epochs: int) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([python, __file__, "--worker", "--epochs", str(epochs)], capture_output=True, text=True,
                          env=env, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{backend} ({python}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: list[dict]) -> str:
    rows = ["| backend | callback | first epoch (ms) | later epochs, median (ms) | one record's reductions: "
            "backend ops / CPU kernels (ms) |", "| --- | --- | ---: | ---: | ---: |"]
    for r in results:
        for label, times in r["callbacks"].items():
            later = statistics.median(times[1:]) if len(times) > 1 else float("nan")
            reduce = (f"{r['reduce']['True'] * 1e3:.0f} / {r['reduce']['False'] * 1e3:.0f}"
                      if label == "weightwatch" else "")
            rows.append(f"| {r['backend']} | {label} | {times[0] * 1e3:.0f} | {later * 1e3:.1f} | {reduce} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pythons", default="", help="backend=python pairs for the other backends")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.epochs)))
        return 0
    pythons = {"torch": sys.executable}
    for item in args.pythons.split():
        backend, _, python = item.partition("=")
        pythons[backend] = python
    load = os.getloadavg()[0]
    results = [run_backend(b, p, args.epochs) for b, p in pythons.items()]
    load = max(load, os.getloadavg()[0])
    body = (f"Time inside the callback's hooks per epoch (8 batches of 64), {results[0]['params'] / 1e6:.1f} M "
            f"weights (Conv2D 32, Conv2D 64, Dense 512, Dense 10), CPU, Keras {results[0]['keras']}, "
            f"{args.epochs} epochs; the first epoch includes compilation/tracing. {os.cpu_count()} cores, "
            f"load average up to {load:.1f} while it ran (other jobs share the machine: compare rows "
            f"of one run, not runs).\n\n"
            f"    make bench-keras   # = python benchmarks/keras_backends.py --pythons "
            f"\"jax=.venv-jax/bin/python tensorflow=.venv-tf/bin/python\" --epochs {args.epochs}\n\n"
            + table(results))
    print(body)
    if not args.no_write:
        update_section("Keras callback per backend (benchmarks/keras_backends.py)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
