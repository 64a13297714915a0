"""Per-log time of two versions of weightwatch side by side, in one process: a git revision against the working tree.

The revision's package (``--base``, default ``main``) is exported with ``git
archive`` into a temporary directory and imported as ``weightwatch_base``
(its ``weightwatch`` imports renamed, ``integrations/`` placed as pyproject
maps it), so both versions log the same model in the same process, their
calls interleaved (:func:`overhead.median_times`) so the machine's noise hits
both alike. Each call is ``log(step)`` then the background writer drained, as
in benchmarks/overhead.py, with the data flow traced on one example batch (so
the complex-network strengths have their outgoing terms, which overhead.py's
untraced runs leave out); medians of ``--repeats``.

    python benchmarks/before_after.py [--base main] [--models resnet18 vit_b_16] [--repeats 5] [--untraced]
        [--kernels]
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

import torch

sys.path.insert(0, str(Path(__file__).parent))
from overhead import example_input, make_model, median_times, weightwatch_log  # noqa: E402

from weightwatch.integrations.torch import WeightWatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BASE_NAME = "weightwatch_base"
IMPORTS = re.compile(r"^(\s*)(from|import) weightwatch\b", re.M)


def load_base(rev: str, into: Path) -> ModuleType:
    """The package as it is at ``rev``, imported as :data:`BASE_NAME` from a copy under ``into``."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "weightwatch", "integrations"],
                         check=True, capture_output=True).stdout
    tarfile.open(fileobj=io.BytesIO(tar)).extractall(into, filter="data")
    package = into / BASE_NAME
    (into / "weightwatch").rename(package)
    (into / "integrations").rename(package / "integrations")
    for path in package.rglob("*.py"):
        path.write_text(IMPORTS.sub(rf"\1\2 {BASE_NAME}", path.read_text()))
    sys.path.insert(0, str(into))
    return importlib.import_module(BASE_NAME)


def compare(model_name: str, base_watch: type, repeats: int, tmp: Path, traced: bool = True) -> dict[str, float]:
    """Median seconds per log call of the base version and of the working tree on one model."""
    model = make_model(model_name)
    example = example_input(model_name) if traced else None
    methods, closers = {}, []
    for label, watch in (("base", base_watch), ("tree", WeightWatch)):
        log, close = weightwatch_log(model, tmp / f"{model_name}-{label}", watch, example)
        log(0)  # first call: loads (and, the first time, compiles) the kernels
        methods[label] = log
        closers.append(close)
    times = median_times(methods, repeats)
    for close in closers:
        close()
    return times


#: kernels of the kernel-level table: a ViT MLP linear, a ResNet 3 x 3 conv
KERNELS = [(3072, 768), (512, 512, 3, 3)]


def kernel_table(base: ModuleType, repeats: int) -> list[str]:
    """One kernel's CPU reduction on the calling thread (numba, as the layer pool runs it), base
    against tree, without and with column sums, and the base's host pass per consumer
    (``flow.kernel_input_sums``, the second read this change removes); medians of ``repeats``."""
    import numpy as np

    from weightwatch.ops import cpu

    old_cpu = importlib.import_module(f"{base.__name__}.ops.cpu")
    host_pass = importlib.import_module(f"{base.__name__}.flow").kernel_input_sums
    rows = []
    for shape in KERNELS:
        w = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        kind, fan_in = "conv" if len(shape) > 2 else "linear", w.size // shape[0]
        cases = {"base": lambda: old_cpu.reduce_kernel(w, shape[0], 64, threads=1),
                 "tree": lambda: cpu.reduce_kernel(w, shape[0], 64, threads=1),
                 "tree + column sums": lambda: cpu.reduce_kernel(w, shape[0], 64, fan_in, threads=1),
                 "base host pass": lambda: host_pass(w, kind)}
        for case in cases.values():  # compiled, warm
            case()
        t = median_times({k: (lambda step, f=f: f()) for k, f in cases.items()}, repeats)
        rows.append(f"| {shape} | " + " | ".join(f"{t[k] * 1e3:.2f} ms" for k in cases) + " |")
    return ["| kernel | base | tree | tree + column sums | base host pass per consumer |",
            "|---|---|---|---|---|", *rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="the git revision to compare the working tree with")
    parser.add_argument("--models", nargs="+", default=["resnet18", "vit_b_16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--untraced", action="store_true",
                        help="no example batch, as benchmarks/overhead.py: no outgoing terms at all")
    parser.add_argument("--kernels", action="store_true",
                        help="also time one kernel's CPU reduction, base against tree (40 repeats)")
    args = parser.parse_args(argv)
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.base], check=True,
                         capture_output=True, text=True).stdout.strip()
    torch.set_grad_enabled(False)
    print(f"base {args.base} ({rev}) against the working tree; {os.cpu_count()} CPU cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} log + drain calls, "
          f"data flow {'untraced' if args.untraced else 'traced'}")
    print("| model | base | working tree | tree / base |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        base = load_base(args.base, Path(tmp) / "src")
        watch = importlib.import_module(f"{base.__name__}.integrations.torch").WeightWatch
        for name in args.models:
            times = compare(name, watch, args.repeats, Path(tmp), traced=not args.untraced)
            print(f"| {name} | {times['base'] * 1e3:.1f} ms | {times['tree'] * 1e3:.1f} ms "
                  f"| {times['tree'] / times['base']:.2f}x |", flush=True)
        if args.kernels:
            print("\n".join(["", *kernel_table(base, 40)]), flush=True)
    print(f"1-minute load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
