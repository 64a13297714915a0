"""How fast ``load_runs`` reads a large population, against tbparse.

    python benchmarks/load.py                       # 1000 runs x 20 epochs x 10 layers, histograms
    python benchmarks/load.py --runs 50 --no-write  # a quick look

The runs are written by weightwatch itself (``Recorder`` with numpy kernels,
64-bin histograms of the weights and of the node strengths, every statistic,
plus loss / accuracy / val_accuracy), in parallel, into ``--dir`` (kept, and
reused when it already holds this population). Then, each timed ``--repeats``
times (the median is reported; the OS page cache is warm, as after training):

- cold: ``load_runs(cache=False)``, everything parsed;
- first: ``load_runs()`` with an empty cache, parse and write the cache;
- cached: ``load_runs()`` again, nothing new;
- grown: one more epoch appended to every run, then ``load_runs()``;
- tbparse: ``SummaryReader`` on ``--tbparse-runs`` runs (scalars and
  histograms), scaled linearly to the population: reading it all takes too long.

Results go to the "Loading runs (benchmarks/load.py)" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
SECTION = "Loading runs (benchmarks/load.py)"
HANDOVER_TITLE = "### Handing the arrays back from the workers"


def _layers(n: int, width: int):
    from weightwatch.layers import LayerInfo

    return [LayerInfo(f"fc{i}", "linear", "output" if i == n - 1 else "fc", (width, width), 1, True) for i in range(n)]


def _write_runs(args: tuple[str, list[int], int, int, int, int]) -> int:
    """Write some runs (in a worker process): weights drift from a seed-dependent start."""
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    from weightwatch.layers import LayerTensors
    from weightwatch.recorder import Recorder

    root, indices, epochs, layers, width, first_step = args
    infos = _layers(layers, width)
    for i in indices:
        rng = np.random.default_rng(i)
        scale = rng.uniform(0.05, 1.5)
        kernels = [rng.normal(0, scale, size=(width, width)).astype(np.float32) for _ in infos]
        biases = [np.zeros(width, np.float32) for _ in infos]
        rec = Recorder(Path(root) / f"sweep{i // 100:02d}" / f"run{i:04d}", infos, hparams={"scale": scale})
        quality = float(np.exp(-scale))
        for epoch in range(first_step, first_step + epochs):
            for k in kernels:
                k += rng.normal(0, 0.01, size=k.shape).astype(np.float32)
            tensors = [LayerTensors(k, b) for k, b in zip(kernels, biases)]
            acc = quality * (1 - np.exp(-(epoch + 1) / 4)) + rng.normal(0, 0.01)
            rec.log(epoch, tensors, {"loss": 2.3 * np.exp(-epoch / 5) / quality, "accuracy": acc,
                                     "val_accuracy": acc - 0.02})
        rec.close()
    return len(indices)


def write_population(root: Path, runs: int, epochs: int, layers: int, width: int, workers: int) -> float:
    t0 = time.perf_counter()
    chunks = [list(range(runs))[i::workers * 8] for i in range(workers * 8)]
    with ProcessPoolExecutor(workers) as pool:
        done = 0
        for n in pool.map(_write_runs, [(str(root), c, epochs, layers, width, 0) for c in chunks if c]):
            done += n
            print(f"\r  wrote {done}/{runs} runs", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return time.perf_counter() - t0


def append_epoch(root: Path) -> None:
    """Append one epoch of scalars and histograms to every run's event file (as a resumed writer would)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    from weightwatch.analysis.loading.find import find_runs
    from weightwatch.events import frame_record
    from weightwatch.summaries import histogram_value, scalars_summary

    for run_dir in find_runs(root):
        path = sorted(p for p in run_dir.iterdir() if "tfevents" in p.name)[-1]
        step = 10_000 + int(time.time()) % 10_000
        records = [frame_record(event_pb2.Event(step=step, summary=scalars_summary(
            {"loss": 0.1, "accuracy": 0.9, "val_accuracy": 0.88})).SerializeToString())]
        edges, counts = np.linspace(-1, 1, 65), np.arange(64.0)
        records += [frame_record(event_pb2.Event(step=step, summary=summary_pb2.Summary(
            value=[histogram_value(f"weights/fc{i}", edges, counts)])).SerializeToString()) for i in range(10)]
        with open(path, "ab") as fh:
            fh.write(b"".join(records))


def timed(fn, repeats: int) -> tuple[float, list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def time_tbparse(root: Path, n: int, repeats: int) -> tuple[float, int]:
    """Seconds for tbparse to read ``n`` runs (scalars + histograms), copied to their own directory."""
    from tbparse import SummaryReader

    from weightwatch.analysis.loading.find import find_runs

    sub = Path(tempfile.mkdtemp(prefix="ww-tbparse-"))
    try:
        for run_dir in find_runs(root)[:n]:
            shutil.copytree(run_dir, sub / run_dir.name)
        def read():
            reader = SummaryReader(str(sub), pivot=False, extra_columns={"dir_name"},
                                   event_types={"scalars", "histograms"})
            return len(reader.scalars) + len(reader.histograms)
        median, _, rows = timed(read, repeats)
        return median, int(rows)
    finally:
        shutil.rmtree(sub, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--width", type=int, default=64, help="each layer is a width x width linear layer")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the population lives (default: a directory under the system temp dir)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tbparse-runs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=None, help="loader processes (default: one per CPU)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)

    from weightwatch.analysis import load_runs

    root = args.dir or Path(tempfile.gettempdir()) / f"weightwatch-bench-{args.runs}x{args.epochs}x{args.layers}"
    stamp = root / "population.json"
    spec = {"runs": args.runs, "epochs": args.epochs, "layers": args.layers, "width": args.width}
    if not stamp.exists() or json.loads(stamp.read_text()) != spec:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        print(f"writing {args.runs} runs to {root} ...", file=sys.stderr)
        secs = write_population(root, args.runs, args.epochs, args.layers, args.width, os.cpu_count() or 1)
        print(f"  {secs:.0f} s", file=sys.stderr)
        stamp.write_text(json.dumps(spec))
    size = sum(p.stat().st_size for p in root.rglob("*tfevents*"))
    print(f"population: {args.runs} runs, {size / 1e6:.0f} MB of event files in {root}", file=sys.stderr)

    cache_dir = root.with_name(root.name + "-cache")
    os.environ.setdefault("WEIGHTWATCH_CACHE_MAX_BYTES", str(1 << 40))  # measure the cache, not its eviction

    def load(**kw):
        return load_runs(root, progress=False, workers=args.workers, **{"cache": cache_dir, **kw})

    def first():
        shutil.rmtree(cache_dir, ignore_errors=True)
        return load()

    load_before = os.getloadavg()
    results = {}
    results["cold"] = timed(lambda: load(cache=False), args.repeats)
    results["cold, in one process (workers=1)"] = timed(lambda: load_runs(root, progress=False, workers=1,
                                                                          cache=False), args.repeats)
    results["first"] = timed(first, args.repeats)
    results["cached"] = timed(load, args.repeats)
    results["cold, histograms='last'"] = timed(lambda: load(cache=False, histograms="last"), args.repeats)
    load()
    sizes = {p: p.stat().st_size for p in root.rglob("*tfevents*")}
    grown = []
    try:
        for _ in range(args.repeats):
            append_epoch(root)
            t0 = time.perf_counter()
            out = load()
            grown.append(time.perf_counter() - t0)
    finally:  # leave the population as it was written
        for path, n in sizes.items():
            os.truncate(path, n)
    results["grown by one epoch"] = (statistics.median(grown), grown, out)
    load_after = os.getloadavg()
    cold = results["cold"][2]
    assert not cold.problems and len(cold.runs) == args.runs, cold.problems
    points = sum(s.values.size for r in cold.runs for s in r.scalars.values())
    hists = sum(h.steps.size for r in cold.runs for h in r.histograms.values())
    n_tb = min(args.tbparse_runs, args.runs)
    tb_secs, tb_rows = time_tbparse(root, n_tb, max(1, min(args.repeats, 3)))
    tb_total = tb_secs * args.runs / n_tb

    lines = [f"| {name} | {med:.2f} s | {', '.join(f'{t:.2f}' for t in times)} | "
             f"{res.stats.bytes_read / 1e6:.1f} MB |"
             for name, (med, times, res) in results.items()]
    speedup = tb_total / results["cold"][0]
    body = f"""Population: {args.runs} runs x {args.epochs} epochs x {args.layers} linear layers ({args.width}x{args.width},
bias), every weightwatch statistic, 64-bin histograms of the weights and node strengths, written by
`Recorder`: {size / 1e6:.0f} MB of event files, {points:,} scalar points and {hists:,} histograms.
Machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python {platform.python_version()};
loader workers: {cold.stats.workers}; OS page cache warm (the files were just written). Median of
{args.repeats} runs each. The machine is shared: its 1-minute load average was {load_before[0]:.1f} before and
{load_after[0]:.1f} after (other processes compete for the 2 cores, so timings vary by up to 2x between
sessions).

Command: `python benchmarks/load.py --runs {args.runs} --epochs {args.epochs} --layers {args.layers} --repeats {args.repeats}`

Rows: *cold* parses every byte (no cache); *first* parses and writes the cache; *cached* finds nothing new;
*histograms='last'* is what `weightwatch compare` asks for; *grown* appends one epoch to every run first, so
only those bytes are parsed and appended to the cache.

| load | median | each run | event bytes parsed |
| --- | --- | --- | --- |
{chr(10).join(lines)}

tbparse {_version("tbparse")} (`SummaryReader(event_types={{"scalars", "histograms"}})`) read {n_tb} of these runs
in {tb_secs:.1f} s (median of {max(1, min(args.repeats, 3))}); reading all {args.runs} at that rate would take
about {tb_total:.0f} s (extrapolated linearly, not measured): the uncached loader is **{speedup:.0f}x faster**.
"""
    print(body)
    if not args.no_write:
        from _results import update_section

        from _results import RESULTS

        kept = RESULTS.read_text().partition(HANDOVER_TITLE)  # the handover figures stay (see RESULTS.md)
        update_section(SECTION, body + ("\n" + HANDOVER_TITLE + kept[2].split("\n## ")[0] if kept[1] else ""))
        print("written to benchmarks/RESULTS.md", file=sys.stderr)
    return 0


def _version(package: str) -> str:
    from importlib.metadata import version

    try:
        return version(package)
    except Exception:  # noqa: BLE001
        return "?"


if __name__ == "__main__":
    raise SystemExit(main())
