"""Pruning replay: weightwatch's pruner vs Optuna's, on logged digits populations (issue 10).

Each held-out run of benchmarks/verdict.py (the runs its reference never saw)
becomes one Optuna trial, replayed through Optuna itself (``study.ask`` /
``study.tell``): after each epoch the trial reports the val_accuracy it logged
at that epoch (step = epochs trained so far) and, for weightwatch's pruner,
the P(optimal) its reference gives the run as it stood at that epoch
(``classify`` at that step) from a reference fitted on the fit runs with
labels "top 50%" (benchmarks/verdict.py's) or "top 20%"; then the pruner decides from what was logged so
far, and a pruned trial trains no further epoch. Pruners: Optuna's
MedianPruner, PercentilePruner (25th), SuccessiveHalvingPruner,
HyperbandPruner (defaults, max_resource = the epochs) and
``WeightWatchPruner`` (thresholds below). The trials come in ``--orders``
random orders (Optuna's pruners compare with the trials before); reported:
total epochs trained, recall of the true top-10% runs (by final
val_accuracy: the share of them that trained to the end) and the best final
val_accuracy among the trials that finished, means over the orders.

    python benchmarks/pruning.py [--root runs/bench-digits] [--orders 5]

Populations logged elsewhere (the Fashion-MNIST populations of benchmarks/paper)
replay the same way with ``--populations NAME=DIR ...``: each DIR's runs are
shuffled with a fixed seed and split ``--fit-share`` for the references, the
rest held out, and the table goes under its own heading:

    python benchmarks/pruning.py --populations "DNN mixed=runs/paper/default/runs/dnn/mixed" \
        "DNN seeds=runs/paper/default/runs/dnn/seeds" --title "Pruning replay, Fashion-MNIST (benchmarks/pruning.py)"
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import verdict  # noqa: E402  (the populations, the split and the references)
from _results import RESULTS, update_section  # noqa: E402

from weightwatch.analysis import Reference, Score, fit, load_runs  # noqa: E402

TITLE = "Pruning replay, digits (benchmarks/pruning.py)"
PLOT = Path(__file__).with_name("pruning.png")


def curves(runs, ref: Reference) -> tuple[np.ndarray, np.ndarray]:
    """(val_accuracy (n, E), P(optimal) (n, E)) of each run at each epoch 0..E-1."""
    epochs = min(int(r.scalars["val_accuracy"].steps[-1]) + 1 for r in runs)
    acc = np.array([r.scalars["val_accuracy"].values[:epochs] for r in runs])
    p = np.array([[ref.classify(r, e).p_optimal for e in range(epochs)] for r in runs])
    return acc, p


def pruners(epochs: int, labels: str) -> dict:
    """Optuna's four pruners, none, and weightwatch's at several thresholds (``labels``: the reference's)."""
    import optuna

    from weightwatch.integrations.optuna import WeightWatchPruner

    out = {
        "MedianPruner": lambda: optuna.pruners.MedianPruner(),
        "PercentilePruner(25)": lambda: optuna.pruners.PercentilePruner(25.0),
        "SuccessiveHalvingPruner": lambda: optuna.pruners.SuccessiveHalvingPruner(),
        "HyperbandPruner": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs),
        "no pruning": lambda: optuna.pruners.NopPruner(),
    }
    for t in THRESHOLDS:
        out[f"weightwatch ({labels}) p<{t}"] = lambda t=t: WeightWatchPruner(threshold=t, min_step=0)
    out[f"weightwatch ({labels}) p<0.1 + Median"] = lambda: WeightWatchPruner(
        threshold=0.1, min_step=0, base=optuna.pruners.MedianPruner())
    return out


THRESHOLDS = (0.1, 0.3, 0.5)
#: The references replayed: the verdict benchmark's (better half) and one fitted on the top 20%.
LABELS = {"top 50%": 0.5, "top 20%": 0.2}


def replay(make_pruner, acc: np.ndarray, p: np.ndarray, order: np.ndarray, seed: int) -> np.ndarray:
    """Epochs each run trained (n,) when its trials come in ``order``, pruned by ``make_pruner()``."""
    import optuna

    from weightwatch.integrations.optuna import report

    # a fixed study name: HyperbandPruner assigns brackets by hashing it with the trial number
    study = optuna.create_study(direction="maximize", pruner=make_pruner(), study_name=f"replay-{seed}",
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    trained = np.zeros(len(acc), dtype=np.int64)
    epochs = acc.shape[1]
    for i in order:
        trial = study.ask()
        for e in range(epochs):
            trial.report(float(acc[i, e]), e + 1)
            report(trial, Score(step=e, p_optimal=float(p[i, e]), predicted=float("nan"), model_step=e))
            trained[i] = e + 1
            if e + 1 < epochs and trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, float(acc[i, -1]))
    return trained


def measure(acc: np.ndarray, ps: dict[str, np.ndarray], orders: int) -> dict[str, dict]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n, epochs = acc.shape
    final = acc[:, -1]
    top = np.argsort(-final, kind="stable")[: max(1, math.ceil(0.1 * n))]
    rng = np.random.default_rng(0)
    perms = [rng.permutation(n) for _ in range(orders)]
    out = {}
    makers = {}
    for labels, p in ps.items():
        makers.update({name: (make, p) for name, make in pruners(epochs, labels).items()
                       if name.startswith("weightwatch") or labels == next(iter(ps))})
    for name, (make, p) in makers.items():
        runs = [replay(make, acc, p, order, seed) for seed, order in enumerate(perms)]
        done = [t == epochs for t in runs]
        out[name] = {"epochs": float(np.mean([t.sum() for t in runs])),
                     "recall": float(np.mean([d[top].mean() for d in done])),
                     "best": float(np.mean([final[d].max() if d.any() else np.nan for d in done])),
                     "finished": float(np.mean([d.sum() for d in done]))}
    return out


def plot(results: dict[str, dict], path: Path, titles: dict[str, str]) -> None:
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4.2), squeeze=False)
    for ax, (kind, rows) in zip(axes[0], results.items()):
        for name, r in rows.items():
            ww = name.startswith("weightwatch")
            ax.scatter(r["epochs"], r["recall"], marker="o" if ww else "s", color="tab:red" if ww else "tab:blue")
            short = name.replace("Pruner", "").replace("weightwatch ", "ww ").replace("no pruning", "none")
            ax.annotate(short, (r["epochs"], r["recall"]), fontsize=6, rotation=20,
                        xytext=(3, 2), textcoords="offset points")
        ax.set_title(titles[kind], fontsize=9)
        ax.set_xlabel("epochs trained in total")
        ax.set_ylabel("recall of the true top-10% runs")
        ax.set_ylim(-0.05, 1.1)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def logged_population(path: Path, fit_share: float) -> tuple[list, list]:
    """(fit runs, held-out runs) of a population already logged under ``path``, split after a seeded shuffle
    (run names may encode the configuration, so name order would put whole configurations on one side)."""
    runs = sorted(load_runs(path, progress=False).runs, key=lambda r: r.name)
    usable = [r for r in runs if "val_accuracy" in r.scalars]
    if len(usable) < 10:
        raise SystemExit(f"{path}: {len(usable)} runs with val_accuracy; the replay needs at least 10")
    order = np.random.default_rng(0).permutation(len(usable))
    cut = int(round(fit_share * len(usable)))
    return [usable[i] for i in order[:cut]], [usable[i] for i in order[cut:]]


def replay_population(train: list, test: list, cache: Path | None, orders: int) -> tuple[dict, tuple[int, int]]:
    """The pruners' results on ``test`` with references fitted on ``train``: reused from ``cache`` (a path
    stem) when saved there before, else fitted (and saved there); ``cache`` None fits every time."""
    ps = {}
    with tempfile.TemporaryDirectory() as scratch:
        for labels, top in LABELS.items():
            stem = cache or Path(scratch) / "reference"
            path = stem.with_name(stem.name + (".ww" if top == 0.5 else f"-top{int(top * 100)}.ww"))
            if not path.exists():
                fit(train, metric="val_accuracy", top=top).reference.save(path)
            acc, ps[labels] = curves(test, Reference.load(path))
    return measure(acc, ps, orders), acc.shape


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("runs/bench-digits"))
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--fit-runs", type=int, default=60)
    parser.add_argument("--orders", type=int, default=5)
    parser.add_argument("--kinds", nargs="+", default=list(verdict.pd.KINDS), choices=verdict.pd.KINDS)
    parser.add_argument("--populations", nargs="+", metavar="NAME=DIR",
                        help="replay populations logged under DIR instead of the digits ones")
    parser.add_argument("--fit-share", type=float, default=0.6, help="share of a --populations DIR for the fit")
    parser.add_argument("--title", default=TITLE, help="the RESULTS.md section to write")
    parser.add_argument("--intro", default="", help="a paragraph to open the section with")
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results file to write the section in")
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "benchmarks/pruning.py", *(argv if argv is not None else sys.argv[1:])])
    results, sizes, described, titles = {}, {}, {}, {}
    if args.populations:
        for item in args.populations:
            name, sep, where = item.partition("=")
            if not sep:
                parser.error(f"--populations takes NAME=DIR, got {item!r}")
            train, test = logged_population(Path(where), args.fit_share)
            results[name], sizes[name] = replay_population(train, test, None, args.orders)
            described[name] = f"{name} (`{where}`, {len(train)} runs for the references)"
            titles[name] = name
        source = "each population's runs shuffled (seed 0) and split, the references fitted on the first part"
    else:
        for kind in args.kinds:
            runs = verdict.population(args.root, kind, args.runs)
            train, test = runs[:args.fit_runs], runs[args.fit_runs:]
            results[kind], sizes[kind] = replay_population(train, test, args.root / kind, args.orders)
            described[kind] = verdict.DESCRIPTION[kind]
            titles[kind] = f"{kind}: {described[kind].split(': ')[1].split(',')[0]}"
        source = "after benchmarks/verdict.py, whose references it uses"
    lines = [args.intro, ""] if args.intro else []
    lines += [f"Command: `{command}` ({source}). Each population's "
             f"held-out runs replayed as Optuna trials in {args.orders} random orders (means shown); the reference "
             "saw none of them. Recall: share of the true top-10% runs (by final val_accuracy) trained to the end; "
             "best kept: best final val_accuracy among the finished trials.", ""]
    for kind, rows in results.items():
        n, epochs = sizes[kind]
        lines += [f"**{described[kind]}**: {n} runs x {epochs} epochs ({n * epochs} epochs unpruned), "
                  f"top-10%: {max(1, math.ceil(0.1 * n))} runs.", "",
                  "| pruner | epochs trained | top-10% recall | best final val_accuracy kept | trials finished |",
                  "|---|---|---|---|---|"]
        for name, r in rows.items():
            lines.append(f"| {name} | {r['epochs']:.1f} | {r['recall']:.2f} | {r['best']:.4f} | {r['finished']:.1f} |")
        lines.append("")
    figure = os.path.relpath(args.plot.resolve(), args.results.resolve().parent)
    lines += [f"![epochs trained against top-10% recall per pruner]({Path(figure).as_posix()})", ""]
    text = "\n".join(lines)
    print(text)
    plot(results, args.plot, titles)
    if not args.no_write:
        update_section(args.title, text, args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
