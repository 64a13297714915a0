"""Per-log overhead of weightwatch against what users write today and against the floor.

For each model (torchvision resnet18, resnet50, vit_b_16 and the seed paper's
784-h-h-10 DNN, random weights, no downloads) it measures, in one process and
side by side, the wall time of one log call:

- ``weightwatch``: ``WeightWatch.log(step)`` then the background writer drained
  (statistics, node strength, exact histograms, written and fsync'ed);
- ``floor``: one read pass over all parameters (``p.sum()`` each), the fastest of three;
- ``SummaryWriter``: torch's, per parameter ``add_histogram`` +
  ``add_scalar(mean)`` + ``add_scalar(std)``, then ``flush``;
- ``tensorboardX``: the same loop with tensorboardX's SummaryWriter;
- ``wandb``: offline mode, one ``wandb.Histogram`` per parameter in one
  ``wandb.log`` (when wandb is installed);

Medians of ``--repeats`` calls, the methods interleaved so machine noise hits
all alike. Then a scaling table: weightwatch and the floor against parameter
count (``--sizes``, equal linear layers) and against layer count at a fixed
total. Results go to benchmarks/RESULTS.md.

    python benchmarks/overhead.py [--models resnet18 resnet50 vit_b_16 dnn] [--repeats 5] [--traced]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).parent))
from _results import update_section  # noqa: E402

from weightwatch.integrations.torch import WeightWatch  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


class PeakRSS:
    """Context manager: peak RSS above the starting RSS, sampled every millisecond."""

    def __enter__(self) -> PeakRSS:
        self.start = rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.001)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())

    @property
    def extra(self) -> int:
        return self.peak - self.start


def make_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "dnn":  # the seed paper's fully connected net on 28x28 images
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 100), torch.nn.ReLU(),
                                   torch.nn.Linear(100, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10))
    return getattr(torchvision.models, name)(weights=None).eval()


def example_input(name: str) -> torch.Tensor:
    """One input batch of ``make_model(name)``, to trace its data flow with."""
    return torch.zeros(1, 1, 28, 28) if name == "dnn" else torch.zeros(1, 3, 224, 224)


def weightwatch_log(model: torch.nn.Module, log_dir: Path, watch: type = WeightWatch,
                    example: torch.Tensor | None = None) -> tuple[Callable[[int], None], Callable[[], None]]:
    """``(log(step), close)`` for one weightwatch run. ``watch``: the WeightWatch class (of another
    version of the package, in benchmarks/before_after.py); ``example``: a batch to trace the data
    flow with (None: untraced, the complex-network strengths without outgoing terms)."""
    ww = watch(model, log_dir, example_input=example)

    def log(step: int) -> None:
        ww.log(step)
        ww.recorder.flush()  # log + drain: the write is part of the cost

    return log, ww.close


def tensorboard_loop(writer_cls: type, model: torch.nn.Module,
                     log_dir: Path) -> tuple[Callable[[int], None], Callable[[], None]]:
    writer = writer_cls(str(log_dir))
    params = list(model.named_parameters())

    def log(step: int) -> None:
        for name, p in params:
            writer.add_histogram(name, p, step)
            writer.add_scalar(f"{name}/mean", p.mean(), step)
            writer.add_scalar(f"{name}/std", p.std(), step)
        writer.flush()

    return log, writer.close


def wandb_log(model: torch.nn.Module, log_dir: Path) -> tuple[Callable[[int], None], Callable[[], None]]:
    import wandb

    run = wandb.init(project="weightwatch-bench", dir=str(log_dir), mode="offline", reinit="create_new")
    params = list(model.named_parameters())

    def log(step: int) -> None:
        run.log({f"parameters/{name}": wandb.Histogram(p.detach().float().cpu().numpy()) for name, p in params},
                step=step)

    return log, run.finish


class floor_log:
    """One read pass over all parameters (``p.sum()`` each), as a log method: each call makes
    :data:`PASSES` passes and reports the fastest (``last``), the best case of reading the weights
    once; a single pass swung by up to 6x between calls on this shared machine, more than any
    method it is compared with."""

    PASSES = 3

    def __init__(self, model: torch.nn.Module):
        self.params = [p.detach() for p in model.parameters()]
        self.cuda = self.params[0].is_cuda
        self.last = math.inf

    def __call__(self, step: int) -> None:
        best = math.inf
        for _ in range(self.PASSES):
            t0 = time.perf_counter()
            for p in self.params:
                p.sum()
            if self.cuda:
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        self.last = best


def peers() -> dict[str, Callable]:
    from torch.utils.tensorboard import SummaryWriter

    out = {"SummaryWriter": lambda m, d: tensorboard_loop(SummaryWriter, m, d)}
    try:
        import tensorboardX
        out["tensorboardX"] = lambda m, d: tensorboard_loop(tensorboardX.SummaryWriter, m, d)
    except ImportError:
        print("tensorboardX is not installed: its column is left out", file=sys.stderr)
    try:
        import wandb  # noqa: F401
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_SILENT", "true")
        out["wandb"] = wandb_log
    except ImportError:
        print("wandb is not installed: its column is left out", file=sys.stderr)
    return out


def median_times(methods: dict[str, Callable[[int], None]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each method, called in turn at each step; the turn starts one
    method later each step, so none always runs first (right after another's call, or not)."""
    times: dict[str, list[float]] = {k: [] for k in methods}
    names = list(methods)
    for step in range(1, repeats + 1):
        shift = step % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            methods[name](step)
            elapsed = time.perf_counter() - t0
            times[name].append(getattr(methods[name], "last", elapsed))  # the floor reports its own
    return {name: statistics.median(ts) for name, ts in times.items()}


def measure(model_name: str, repeats: int, tmp: Path, device: str = "cpu",
            dtype: torch.dtype = torch.float32,
            traced: bool = False) -> tuple[int, int, dict[str, float], dict[str, int]]:
    model = make_model(model_name).to(device=device, dtype=dtype)
    n_params = sum(p.numel() for p in model.parameters())
    example = example_input(model_name).to(device=device, dtype=dtype) if traced else None
    ww, close_ww = weightwatch_log(model, tmp / f"{model_name}-ww", example=example)
    ww(0)  # first call: loads (and, the very first time, compiles) the kernels
    methods = {"weightwatch": ww, "floor": floor_log(model)}
    closers = [close_ww]
    for name, make in peers().items():
        methods[name], close = make(model, tmp / f"{model_name}-{name}")
        closers.append(close)
    memory = {}
    with torch.no_grad():
        times = median_times(methods, repeats)
        for name, log in methods.items():  # memory separately: the sampling thread disturbs timings
            with PeakRSS() as mem:
                log(repeats + 1)
            memory[name] = mem.extra
    for close in closers:
        close()
    layers = sum(1 for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
    return n_params, layers, times, memory


def scaling_rows(sizes: list[int], layer_counts: list[int], fixed_total: int, repeats: int, tmp: Path,
                 device: str = "cpu", dtype: torch.dtype = torch.float32) -> list[str]:
    """weightwatch (log + drain) and the floor on stacks of equal linear layers."""
    rows = []
    cases = [(n, 10) for n in sizes] + [(fixed_total, k) for k in layer_counts]
    for total, layers in cases:
        width = max(2, int(round((total / layers) ** 0.5)))
        try:
            model = torch.nn.Sequential(*[torch.nn.Linear(width, width, bias=False, device=device, dtype=dtype)
                                          for _ in range(layers)])
        except RuntimeError as exc:  # out of memory
            rows.append(f"| {total / 1e6:,.0f} M | {layers} | not measured: {exc} | | |")
            continue
        with torch.no_grad():
            for layer in model:
                layer.weight.normal_()
        n = sum(p.numel() for p in model.parameters())
        ww, close = weightwatch_log(model, tmp / f"scale-{total}-{layers}")
        ww(0)
        times = median_times({"weightwatch": ww, "floor": floor_log(model)}, repeats)
        close()
        row = (f"| {n / 1e6:,.1f} M | {layers} | {times['weightwatch'] * 1e3:,.1f} ms "
               f"| {times['floor'] * 1e3:,.1f} ms | {times['weightwatch'] / times['floor']:.1f}x "
               f"| {times['weightwatch'] / n * 1e9:.2f} ns |")
        print(row, flush=True)
        rows.append(row)
        del model
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "vit_b_16", "dnn"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=float, nargs="*", default=[1e6, 1e7, 1e8, 1e9],
                        help="parameter counts of the scaling table (10 equal layers)")
    parser.add_argument("--layer-counts", type=int, nargs="*", default=[10, 100, 1000])
    parser.add_argument("--fixed-total", type=float, default=1e7, help="total parameters across --layer-counts")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (weights and every method on it)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--section", default="Logging overhead (benchmarks/overhead.py)",
                        help="the RESULTS.md section to write")
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    parser.add_argument("--traced", action="store_true",
                        help="trace each model's data flow first (example_input=), as after a user's first forward "
                             "pass: the complex-network strengths then include the outgoing terms")
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)

    torch.set_grad_enabled(False)
    rows = []
    columns: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            n_params, layers, times, memory = measure(name, args.repeats, Path(tmp), args.device, dtype, args.traced)
            peer_names = [k for k in times if k not in ("weightwatch", "floor")]
            columns = peer_names
            ww, fl = times["weightwatch"], times["floor"]
            row = (f"| {name} | {n_params / 1e6:.2f} M | {layers} | **{ww * 1e3:.1f} ms** | {fl * 1e3:.2f} ms "
                   f"| **{ww / fl:.1f}x** | "
                   + " | ".join(f"{times[k] * 1e3:.0f} ms ({times[k] / ww:.1f}x)" for k in peer_names)
                   + f" | {memory['weightwatch'] / 2**20:.0f} MB |")
            print(row, flush=True)
            rows.append(row)
        scaling = scaling_rows([int(n) for n in args.sizes], args.layer_counts, int(args.fixed_total),
                               max(3, args.repeats // 2), Path(tmp), args.device, dtype)
    body = "\n".join([
        f"Command: `python benchmarks/overhead.py {' '.join(argv if argv is not None else sys.argv[1:])}` "
        f"on this machine ({os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads), {args.device}, {args.dtype}, {'data flow traced, ' if args.traced else 'untraced, '}"
        "random weights. Wall time per log call, median of the repeats, every method interleaved in one "
        "process. weightwatch is log + drain (the background writer's write and fsync included). "
        "In brackets: how many times weightwatch's time a peer takes. Peak extra memory: resident memory "
        "above the level before one weightwatch call. The machine is shared with other jobs (1-minute "
        f"load average {os.getloadavg()[0]:.1f} at the end): every column is slowed, the ratios are "
        "measured side by side.",
        "",
        "| model | params | linear / conv layers | weightwatch | floor (fastest of 3 reads) | weightwatch / floor | "
        + " | ".join(columns) + " | weightwatch peak extra memory |",
        "|---|---|---|---|---|---|" + "---|" * len(columns) + "---|",
        *rows,
        "",
        "Keras' TensorBoard callback (histogram_freq=1) is not measured: it needs TensorFlow, which is not "
        "installed here (Keras runs on the torch backend). wandb.watch(log=\"parameters\") is not measured "
        "either: it logs from hooks inside the forward/backward pass, so its cost is not one call to time.",
        "",
        "### Scaling (same command)",
        "",
        "Stacks of equal square linear layers, random normal weights: against the parameter count (10 layers) "
        f"and against the layer count at {args.fixed_total / 1e6:.0f} M parameters in all.",
        "",
        "| params | layers | weightwatch | floor | ratio | weightwatch per parameter |",
        "|---|---|---|---|---|---|",
        *scaling,
    ])
    if not args.no_write:
        update_section(args.section, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
