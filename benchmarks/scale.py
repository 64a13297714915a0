"""Populations at scale: load time and peak memory of 1k to 100k runs, per engine and worker count.

    python benchmarks/scale.py                                  # 1k, 10k and 100k runs, every engine
    python benchmarks/scale.py --sizes 1000 --configs local ray:2

The runs are written by weightwatch itself (``Recorder`` with numpy kernels,
small layers: ``--layers`` of ``--width`` x ``--width``, ``--epochs`` logs
each, with histograms and every statistic; benchmarks/load.py's writer) into
``--dir``, kept and reused. Each measurement runs in a fresh process:
``load_runs(root, histograms="last", cache=False)`` (what ``compare`` loads,
everything parsed) with the engine given; a cluster engine's cluster is
started first and its start-up timed apart, so the load time is the work
itself. Peak memory is the largest resident set of the measuring process and
all its descendants together (the cluster's workers included), sampled every
50 ms with psutil.

With ``--s3 N``, the N-run population is also uploaded to a real S3-compatible
server on this machine (moto's standalone server, the one the tests use) and
loaded from the bucket with the local engine on 1 and 16 threads: how far
concurrent ranged reads hide the requests' latency.

The 64-worker figure is an extrapolation, not a measurement: from the 1- and
2-worker times of an engine, ``T(W) = fixed + parallel / W`` (``parallel =
2 (T1 - T2)``, ``fixed = T1 - parallel``), which assumes one core per worker,
storage that keeps up, and a driver whose share (discovery, sorting, merging
the columns) does not grow with W.

Results go to the "Populations at scale (benchmarks/scale.py)" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
SECTION = "Populations at scale (benchmarks/scale.py)"
CONFIGS = ("local", "ray:1", "ray:2", "dask:1", "dask:2")


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


class PeakMemory:
    """The largest resident set of this process and its descendants, sampled on a thread."""

    def __init__(self, every_s: float = 0.05) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    def _run(self, every_s: float) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(os.getpid()))
            self._stop.wait(every_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _tree_rss(os.getpid()))


def start_cluster(engine: str, workers: int):
    """Start (and return a closer for) the cluster an engine uses, so load_runs finds it running."""
    if engine == "ray":
        import ray

        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        return ray.shutdown
    if engine == "dask":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        return lambda: (client.close(), cluster.close())
    return lambda: None


def measure(root: str, engine: str, workers: int | None) -> dict:
    """One load of ``root`` in this process (the ``--measure`` mode)."""
    from weightwatch.analysis import load_runs

    t0 = time.perf_counter()
    stop = start_cluster(engine, workers or 1)
    startup = time.perf_counter() - t0
    try:
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            result = load_runs(root, histograms="last", cache=False, progress=False, engine=engine, workers=workers)
            seconds = time.perf_counter() - t0
    finally:
        stop()
    return {"engine": engine, "workers": workers, "runs": len(result.runs), "problems": len(result.problems),
            "seconds": seconds, "startup_s": startup, "peak_rss": mem.peak, "bytes": result.stats.bytes_read,
            "records": result.stats.records}


def run_measure(root: Path | str, config: str) -> dict:
    engine, _, n = config.partition(":")
    cmd = [sys.executable, __file__, "--measure", str(root), engine, n or "0"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=7200)
    if out.returncode != 0:
        raise RuntimeError(f"{config} on {root} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def population(base: Path, runs: int, epochs: int, layers: int, width: int,
               write_max: int) -> tuple[Path, float | None]:
    """``base/<runs>`` holding that population (made now if it is not complete); seconds spent making it.

    Up to ``write_max`` runs are written by the Recorder; a larger population is
    that many written runs plus copies of their directories (``copy<k>/``), the
    same bytes under other names: writing 100k runs through the Recorder takes
    hours on 2 shared cores, and loading does not care who wrote a file.
    """
    from load import write_population

    root = base / f"{runs}x{epochs}x{layers}x{width}"
    done = root / ".complete"
    if done.exists():
        return root, None
    t0 = time.perf_counter()
    written = min(runs, write_max)
    source, _ = population(base, written, epochs, layers, width, write_max) if runs > written else (None, None)
    if source is None:
        write_population(root, runs, epochs, layers, width, workers=os.cpu_count() or 1)
    else:
        import shutil

        for k in range(-(-runs // written)):
            shutil.copytree(source, root / f"copy{k}", ignore=shutil.ignore_patterns(".complete"))
        extra = sorted((root / f"copy{runs // written}").glob("*/*")) if runs % written else []
        for run_dir in extra[runs % written:]:  # the last copy only as far as ``runs``
            shutil.rmtree(run_dir)
    done.write_text("")
    return root, time.perf_counter() - t0


def measure_s3(args: argparse.Namespace, writes: dict[int, float | None]) -> list[dict]:
    """The ``--s3`` population loaded from a moto server by the local engine, 1 and 16 threads."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from objectstore import s3_server, s3fs_client, upload

    root, writes[args.s3] = population(args.dir, args.s3, args.epochs, args.layers, args.width, args.write_max)
    rows = []
    with s3_server():
        fs = s3fs_client()
        fs.mkdir("scale")
        t0 = time.perf_counter()
        upload(fs, root, "scale/runs")
        print(f"uploaded {args.s3} runs in {time.perf_counter() - t0:.0f} s", flush=True)
        for threads in (1, 16):
            row = {"size": args.s3, **run_measure("s3://scale/runs", f"local:{threads}"), "engine": "local, S3"}
            rows.append(row)
            print(f"{args.s3:>7} runs  s3 x{threads:<4} {row['seconds']:7.1f} s", flush=True)
    return rows


def extrapolate(t1: float, t2: float, workers: int = 64) -> float:
    """T(workers) from T(1) and T(2), under ``T(W) = fixed + parallel / W``."""
    parallel = max(0.0, 2 * (t1 - t2))
    return (t1 - parallel) + parallel / workers


def _load_avg() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def report(rows: list[dict], writes: dict[int, float | None], args: argparse.Namespace, command: str) -> str:
    lines = [f"Command: `{command}` ({platform.python_version()}, {os.cpu_count()} CPU cores, load average "
             f"{_load_avg()} at the end; the machine was shared, so times are indicative and ratios within one "
             "size are the figure to read). Each run: "
             f"{args.layers} layers of {args.width}x{args.width}, {args.epochs} logs with 64-bin histograms, "
             f"written by weightwatch's Recorder (above {args.write_max} runs: that many written, the rest "
             "copies of their directories). Each load: `load_runs(root, histograms=\"last\", cache=False)` "
             "(everything parsed) in a fresh process; a cluster's start-up is timed apart.", ""]
    lines += ["| runs | event bytes | made in | engine | workers | load s | runs/s | cluster start s | "
              "peak memory (all processes) |", "|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        wrote = writes.get(r["size"])
        lines.append(f"| {r['size']} | {r['bytes'] / 1e6:.0f} MB | {'%.0f s' % wrote if wrote else 'reused'} | "
                     f"{r['engine']} | {r['workers'] or os.cpu_count()} | {r['seconds']:.1f} | "
                     f"{r['runs'] / r['seconds']:.0f} | {r['startup_s']:.1f} | {r['peak_rss'] / 2**30:.2f} GiB |")
    lines += ["", "Extrapolated to 64 workers (see the module doc for the model and its assumptions):", "",
              "| runs | engine | T(1) s | T(2) s | fixed s | T(64) s, extrapolated |", "|---:|---|---:|---:|---:|---:|"]
    for size in sorted({r["size"] for r in rows}):
        for engine in ("ray", "dask"):
            t = {r["workers"]: r["seconds"] for r in rows if r["size"] == size and r["engine"] == engine}
            if 1 in t and 2 in t:
                fixed = t[1] - max(0.0, 2 * (t[1] - t[2]))
                lines.append(f"| {size} | {engine} | {t[1]:.1f} | {t[2]:.1f} | {fixed:.1f} | "
                             f"{extrapolate(t[1], t[2]):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--measure":
        root, engine, workers = argv[1], argv[2], int(argv[3]) or None
        print(json.dumps(measure(root, engine, workers)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS),
                        help="engine[:workers] to measure, e.g. local ray:2 dask:1 (local: one per CPU)")
    parser.add_argument("--big-configs", nargs="+", default=None,
                        help="configs for sizes over 10k (default: --configs)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/weightwatch-scale"))
    parser.add_argument("--write-max", type=int, default=10_000,
                        help="runs written by the Recorder; larger populations copy them (see population())")
    parser.add_argument("--s3", type=int, default=None, metavar="N",
                        help="also load the N-run population from a local S3 server (moto), 1 and 16 threads")
    parser.add_argument("--no-write-results", action="store_true")
    args = parser.parse_args(argv)
    command = "python benchmarks/scale.py " + " ".join(argv)
    rows, writes = [], {}
    for size in args.sizes:
        root, writes[size] = population(args.dir, size, args.epochs, args.layers, args.width, args.write_max)
        for config in (args.big_configs or args.configs) if size > 10_000 else args.configs:
            try:
                row = {"size": size, **run_measure(root, config)}
            except (RuntimeError, subprocess.TimeoutExpired) as exc:  # one config failing keeps the others' rows
                print(f"{size:>7} runs  {config:<7} not measured: {str(exc)[-300:]}", flush=True)
                continue
            rows.append(row)
            print(f"{size:>7} runs  {config:<7} {row['seconds']:7.1f} s  start {row['startup_s']:5.1f} s  "
                  f"peak {row['peak_rss'] / 2**30:.2f} GiB", flush=True)
    if args.s3:
        rows += measure_s3(args, writes)
    text = report(rows, writes, args, command)
    print(text)
    if not args.no_write_results:
        from _results import update_section

        update_section(SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
