"""Per-log time of weightwatch with a training loop competing for the same cores.

For each thread strategy of :mod:`weightwatch.ops.threads` (``serial``,
``layers``, ``within``) it times ``repeats`` log calls (statistics, then the
writer drained) of a torchvision model, once with the machine as it is and
once with a competing process that keeps ``--competitors`` threads busy with
float32 matmuls (a stand-in for the training loop). It reports the median,
the worst call and worst / median per cell. Results go to benchmarks/RESULTS.md.

    python benchmarks/contention.py [--models resnet18 vit_b_16] [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).parent))
from _results import update_section  # noqa: E402

import weightwatch.ops.threads as threads  # noqa: E402
from weightwatch.integrations.torch import WeightWatch  # noqa: E402

COMPETITOR = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
a = torch.randn(768, 768)
while True:
    a = torch.tanh(a @ a / 768)
"""


def time_logs(ww: WeightWatch, repeats: int, step0: int) -> list[float]:
    out = []
    for step in range(step0, step0 + repeats):
        t0 = time.perf_counter()
        ww.log(step)
        ww.recorder.flush()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "vit_b_16"])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--competitors", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            torch.manual_seed(0)
            model = getattr(torchvision.models, name)(weights=None)
            ww = WeightWatch(model, Path(tmp) / name)
            step = 0
            for strategy in threads.STRATEGIES:  # warm up (and compile) every path
                threads.strategy = strategy
                step += 2
                time_logs(ww, 2, step)
            cells = {}
            for load in ("as is", "competing"):
                proc = None
                if load == "competing":
                    proc = subprocess.Popen([sys.executable, "-c", COMPETITOR, str(args.competitors)])
                    time.sleep(2)
                try:
                    for strategy in threads.STRATEGIES:
                        threads.strategy = strategy
                        step += args.repeats
                        ts = time_logs(ww, args.repeats, step)
                        cells[load, strategy] = (statistics.median(ts), max(ts))
                finally:
                    if proc is not None:
                        proc.kill()
                        proc.wait()
            threads.strategy = "layers"
            ww.close()
            for (load, strategy), (med, worst) in cells.items():
                row = (f"| {name} | {load} | {strategy} | {med * 1e3:.0f} ms | {worst * 1e3:.0f} ms "
                       f"| {worst / med:.1f}x | {med / cells[load, 'serial'][0]:.2f}x |")
                print(row, flush=True)
                rows.append(row)
    body = "\n".join([
        f"Command: `python benchmarks/contention.py --repeats {args.repeats}` ({os.cpu_count()} CPU cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads). One log call = statistics of every "
        "layer, then the background writer drained. 'competing': a second process keeps "
        f"{args.competitors} threads busy with float32 matmuls. The machine is shared with other jobs "
        f"(1-minute load average {os.getloadavg()[0]:.1f} at the end), so 'as is' is already contended.",
        "",
        "| model | machine | strategy | median | worst | worst / median | median / serial |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ])
    if not args.no_write:
        update_section("Under contention (benchmarks/contention.py)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
