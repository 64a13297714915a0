"""`weightwatch compare` end to end on a large population: time, peak memory, where the time goes.

Writes (or reuses, with --dir) the population of benchmarks/load.py (runs x
epochs x linear layers, every statistic and histogram, written by Recorder),
then runs ``weightwatch compare <root> --out <report>`` as a user would, in a
child process, cold (no loader cache) and again warm (cache filled). Peak
memory is the largest resident set of that process or any of its loader
workers (``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the maximum over them, not
their sum). Then once more in this process under cProfile: the functions
with the most cumulative time (loader worker processes are not profiled;
their share shows as the time waiting for them).

    python benchmarks/compare.py [--runs 1000] [--epochs 20] [--dir DIR]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _results import update_section  # noqa: E402
from load import write_population  # noqa: E402


def run_compare(root: Path, out: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB of the child or its largest worker)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "weightwatch", "compare", str(root), "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL, env={**os.environ, "MPLBACKEND": "agg"})
    wall = time.perf_counter() - t0
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def profile_compare(root: Path, out: Path, top: int) -> list[str]:
    from weightwatch.cli import main as cli_main

    prof = cProfile.Profile()
    prof.enable()
    cli_main(["compare", str(root), "--out", str(out)])
    prof.disable()
    text = io.StringIO()
    stats = pstats.Stats(prof, stream=text).sort_stats("cumulative")
    rows = []
    for (file, line, func), (_, ncalls, tottime, cumtime, _) in sorted(
            stats.stats.items(), key=lambda kv: -kv[1][3])[:top]:
        where = f"{Path(file).parent.name}/{Path(file).name}:{line} {func}" if file != "~" else func
        rows.append(f"| `{where}` | {ncalls} | {tottime:.2f} s | {cumtime:.2f} s |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--dir", type=Path, default=None, help="reuse (or write) the population here")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="ww-compare-"))
    root = args.dir or tmp / "runs"
    written = None
    if not root.exists() or not any(root.iterdir()):
        written = write_population(root, args.runs, args.epochs, args.layers, args.width, os.cpu_count() or 1)
    shutil.rmtree(root / ".weightwatch-cache", ignore_errors=True)
    cold, peak_cold = run_compare(root, tmp / "report-cold")
    warm, peak = run_compare(root, tmp / "report-warm")
    print(f"cold {cold:.1f} s, warm {warm:.1f} s, peak RSS {peak_cold:.0f} MB", flush=True)
    rows = profile_compare(root, tmp / "report-prof", args.top)
    print("\n".join(rows))
    size = sum(f.stat().st_size for f in root.rglob("events.out.tfevents.*")) / 1e6
    body = "\n".join([
        f"Command: `python benchmarks/compare.py --runs {args.runs} --epochs {args.epochs}` "
        f"({os.cpu_count()} CPU cores, shared with other jobs: 1-minute load average {os.getloadavg()[0]:.1f} "
        f"at the end). Population: {args.runs} runs x {args.epochs} epochs x {args.layers} linear layers "
        f"({args.width}x{args.width}), {size:.0f} MB of event files"
        + (f", written in {written:.0f} s" if written else "") + ".",
        "",
        "| `weightwatch compare <root> --out <report>` | wall time | peak memory (largest process) |",
        "|---|---|---|",
        f"| cold (no loader cache) | {cold:.1f} s | {peak_cold:.0f} MB |",
        f"| warm (cache filled by the cold run) | {warm:.1f} s | {peak:.0f} MB (max of both runs) |",
        "",
        "Where the time goes (warm, in this process under cProfile; sorted by cumulative time):",
        "",
        "| function | calls | own time | cumulative |",
        "|---|---|---|---|",
        *rows,
    ])
    if not args.no_write:
        update_section("weightwatch compare end to end (benchmarks/compare.py)", body)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
