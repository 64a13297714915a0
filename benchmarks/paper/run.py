"""Reproduce the seed paper (Zheng et al. 2024) on Fashion-MNIST: train, log, analyse, write RESULTS.md.

    python -m benchmarks.paper --scale smoke|default|paper [--out runs/paper] [--results PATH]
    python benchmarks/paper/run.py --scale default        # the same
    make paper                                           # --scale default

Steps (each skipped when its output is already there and ``--retrain`` is not given):

1. train the DNN, CNN and ViT populations of the scale (benchmarks/paper/populations.py),
   logged with weightwatch's PyTorch callback, and a share of the DNN with its Keras
   callback, into ``OUT/runs/<family>/<population>/<run>``;
2. analyse through the ``weightwatch`` command line (compare, fit; JSON) and read the
   runs back with TensorBoard's EventAccumulator for the per-figure checks;
3. write the results (``--results``, default benchmarks/paper/RESULTS.md for the
   default and paper scales, ``OUT/RESULTS.md`` for smoke) and copy the figures they
   show next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks.paper`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    __package__ = "benchmarks.paper"

import torch  # noqa: E402

from benchmarks.paper.data import load_images  # noqa: E402
from benchmarks.paper.models import FAMILIES  # noqa: E402
from benchmarks.paper.populations import SCALES, family_configs  # noqa: E402
from benchmarks.paper.train import run_dir, train_torch  # noqa: E402

HERE = Path(__file__).resolve().parent
PRUNING = HERE.parent / "pruning.py"


def train_all(scale_name: str, out: Path, say=print) -> dict:
    """Train every family of the scale under ``out/runs``; returns what was done (also in ``out/train.json``)."""
    from benchmarks.paper.keras_runs import train_keras

    scale = SCALES[scale_name]
    images = load_images(warn=lambda m: say(f"NOTE: {m}"))
    runs = out / "runs"
    done: dict = {"scale": scale_name, "dataset": images.name, "families": {},
                  "machine": f"{os.cpu_count()} CPU cores (torch {torch.__version__}, {torch.get_num_threads()} threads)"}
    for family in FAMILIES:
        configs = family_configs(family, scale)
        data = images.subset(scale.train_images[family], scale.test_images[family])
        epochs = scale.epochs[family]
        say(f"{family}: {len(configs)} runs, {epochs} epoch(s), {len(data.x_train)} training / "
            f"{len(data.x_test)} held-out images")
        torch_runs = [c for c in configs if c.framework == "torch"]
        keras_runs = [c for c in configs if c.framework == "keras"]
        seconds = train_torch(torch_runs, data, runs, epochs, say)
        keras_seconds = train_keras(keras_runs, data, runs, epochs, run_dir, say)
        done["families"][family] = {
            "runs": len(configs), "mixed": sum(c.population == "mixed" for c in configs),
            "seeds": sum(c.population == "seeds" for c in configs), "keras": len(keras_runs),
            "epochs": epochs, "train_images": len(data.x_train), "test_images": len(data.x_test),
            "widths": sorted({c.width for c in configs}), "seed_width": configs[-1].width,
            "torch_seconds": round(seconds, 1), "keras_seconds": round(keras_seconds, 1)}
    (out / "train.json").write_text(json.dumps(done, indent=1))
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="default")
    parser.add_argument("--out", type=Path, default=Path("runs/paper"), help="where the runs and reports go")
    parser.add_argument("--results", type=Path, help="the results file (default: see the module doc)")
    parser.add_argument("--retrain", action="store_true", help="train again even if OUT holds a finished run")
    args = parser.parse_args(argv)
    from benchmarks.paper.report import analyse
    from benchmarks.paper.results import write_results

    out = args.out / args.scale
    results = args.results or (out / "RESULTS.md" if args.scale == "smoke" else HERE / "RESULTS.md")
    trained = out / "train.json"
    if args.retrain or not trained.exists():
        if out.exists():
            shutil.rmtree(out)  # an unfinished or older population
        out.mkdir(parents=True)
        done = train_all(args.scale, out)
    else:
        done = json.loads(trained.read_text())
        print(f"using the runs already trained in {out} (--retrain to train again)")
    t0 = time.perf_counter()
    analysis = analyse(out, done)
    analysis["analysis_seconds"] = round(time.perf_counter() - t0, 1)
    replay, skipped = pruning_args(out, done, results)
    analysis["pruning_command"] = (shlex.join(["python", "benchmarks/pruning.py", *replay]) if replay
                                   else "not run: " + "; ".join(skipped))
    path = write_results(analysis, SCALES[args.scale], results, command=" ".join(
        ["python -m benchmarks.paper", f"--scale {args.scale}", f"--out {args.out}"]))
    if replay:  # writes its table under "Pruning replay" of the results just written
        subprocess.run([sys.executable, str(PRUNING), *replay], check=True)
    print(f"wrote {path}")
    return 0


#: a population needs this many runs to split into references and held-out trials
PRUNING_MIN_RUNS = 20
FAMILIES_SHORT = {"dnn": "DNN", "cnn": "CNN", "vit": "ViT"}


def _shown(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it (the command as it was typed)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def pruning_args(out: Path, done: dict, results: Path) -> tuple[list[str] | None, list[str]]:
    """benchmarks/pruning.py's arguments (run from the working directory) for every population trained
    for 2+ epochs with enough runs, and why the others are not replayed (a pruner needs an epoch to
    decide before the last)."""
    chosen, skipped = [], []
    for family, info in done["families"].items():
        for population in ("mixed", "seeds"):
            where = out / "runs" / family / population
            runs = info.get(population, 0)
            if info["epochs"] < 2 or runs < PRUNING_MIN_RUNS:
                skipped.append(f"{family} {population} ({runs} runs x {info['epochs']} epoch(s))")
            elif where.is_dir():
                chosen.append(f"{FAMILIES_SHORT[family]} {population}={_shown(where)}")
    if not chosen:
        return None, skipped
    plot = results.parent / "figures" / "pruning.png"
    intro = ("Not replayed (a pruner needs an epoch to decide on before the last, and "
             f"{PRUNING_MIN_RUNS}+ runs to split): " + "; ".join(skipped) + ".") if skipped else ""
    return (["--populations", *chosen, "--results", _shown(results), "--title", "Pruning replay",
             "--plot", _shown(plot), *(["--intro", intro] if intro else [])], skipped)


if __name__ == "__main__":
    raise SystemExit(main())
