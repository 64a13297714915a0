"""How well a reference tells optimal runs from their weights, on held-out Fashion-MNIST runs.

Two populations from benchmarks/populations_fmnist.py, each split by run into
a training part (``fit`` sees it) and a held-out part (only ``classify`` sees it):

- ``mixed``: the seed paper's DNN mixing hidden sizes 5..200 and init std
  0.01..2; labels: the high group (compare's grouping) vs the rest;
- ``seeds``: ONE configuration (784-20-20-10, normal init std 1.0, Adam 1e-3,
  5 epochs, 10,000 images) that differs only by seed; labels: the better half
  vs the worse half (the training part's median final val_accuracy).

For each, the reference is fitted on the training part (``fit``, as
``weightwatch fit`` does), saved and loaded back, and every held-out run is
classified at every epoch (the early-prediction curve). Reported: held-out
ROC AUC per epoch, balanced accuracy, Kendall tau and R^2 of the predicted
final accuracy, the fit's own cross-validated numbers, a model that sees only
the hyperparameters, and, for the seed population, the probe of the issue
(per-layer mean and std of the weights and of the node strength) re-run on
the same split. Populations are generated once into ``--root`` and reused.

    python benchmarks/classify.py [--root runs/bench-classify] [--seeds-runs 300] [--mixed-runs 150]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import populations_fmnist as pf  # noqa: E402
from _results import update_section  # noqa: E402

from weightwatch.analysis import Reference, final_metric, fit, load_runs  # noqa: E402
from weightwatch.analysis.classification.candidates import (  # noqa: E402
    classifiers, cross_validate, filled, quality, regressors, usable,
)
from weightwatch.analysis.classification.features import FEATURE_NAMES, run_features  # noqa: E402
from weightwatch.analysis.classification.fit import hparams_matrix  # noqa: E402

TITLE = "Classifying runs (benchmarks/classify.py)"
PROBE = [f"{slot}/{stat}" for slot in ("first", "hidden", "output") for stat in ("w_mean", "w_std", "s_mean", "s_std")]


def generate(root: Path, kind: str, n: int, train_frac: float) -> tuple[Path, Path, float]:
    """Train the population once (train/ and test/ below root/kind); returns the dirs and seconds spent."""
    base = root / kind
    done = base / "DONE"  # "<runs> <train fraction> <seconds it took>"
    if done.exists() and done.read_text().split()[:2] == [str(n), str(train_frac)]:
        return base / "train", base / "test", float((done.read_text().split() + ["nan"])[2])
    if base.exists():
        shutil.rmtree(base)  # an unfinished or different population
    configs = pf.mixed_configs(n) if kind == "mixed" else pf.seed_configs(n)
    n_train = int(round(train_frac * n))
    t0 = time.perf_counter()
    data = pf.load_fmnist()
    print(f"{kind}: training {n} runs ({n_train} for fit, {n - n_train} held out)", flush=True)
    pf.train_population(configs[:n_train], base / "train", data, population=kind)
    pf.train_population(configs[n_train:], base / "test", data, population=kind)
    seconds = time.perf_counter() - t0
    done.write_text(f"{n} {train_frac} {seconds:.0f}")
    return base / "train", base / "test", seconds


def labelled(path: Path):
    runs = load_runs(path, progress=False).runs
    values = np.array([final_metric(r, "val_accuracy")[1] for r in runs])
    return runs, values


def auc_interval(y: np.ndarray, p: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the ROC AUC (runs resampled with replacement)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(resamples):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            aucs.append(roc_auc_score(y[i], p[i]))
    lo, hi = np.percentile(aucs, [2.5, 97.5])
    return float(lo), float(hi)


def held_out_curve(ref: Reference, runs, values, threshold: float) -> tuple[list[dict], float]:
    """Quality of the reference on the held-out runs at each of its steps, and the seconds classifying took."""
    t0 = time.perf_counter()
    tables = [ref.table(r) for r in runs]
    scored = []
    for m in ref.steps:
        x = np.vstack([t.at(m.step)[1] for t in tables])
        scored.append((m.step, *ref.predict(x, m.step)))
    seconds = time.perf_counter() - t0
    y = values >= threshold
    curve = [{"step": step, **quality(y, p, values, pred), "auc_ci": auc_interval(y, p)} for step, p, pred in scored]
    return curve, seconds


def side_model(x_train, y_train, v_train, x_test, y_test, v_test, cv: int) -> dict:
    """Choose by CV on the training part (as fit does), refit, score the held-out part."""
    used, fill = usable(x_train)
    xtr, xte = filled(x_train, fill)[:, used], filled(x_test, fill)[:, used]
    chosen = cross_validate(xtr, y_train, v_train, cv)
    clf = classifiers(0)[chosen.classifier].fit(xtr, y_train)
    reg = regressors(0)[chosen.regressor].fit(xtr, v_train)
    return {"cv": chosen.quality, "held_out": quality(y_test, clf.predict_proba(xte)[:, 1], v_test, reg.predict(xte)),
            "models": f"{chosen.classifier} / {chosen.regressor}"}


def evaluate(kind: str, train_dir: Path, test_dir: Path, root: Path, cv: int) -> dict:
    runs, values = labelled(train_dir)
    test_runs, test_values = labelled(test_dir)
    t0 = time.perf_counter()
    fitted = fit(runs, metric="val_accuracy", top=0.5 if kind == "seeds" else None, cv=cv,
                 progress=lambda line: print(f"  {kind} fit {line}", flush=True))
    fit_s = time.perf_counter() - t0
    path = fitted.reference.save(root / f"{kind}.ww")
    ref = Reference.load(path)
    curve, classify_s = held_out_curve(ref, test_runs, test_values, fitted.threshold)
    y, y_test = values >= fitted.threshold, test_values >= fitted.threshold
    out = {"kind": kind, "train": len(runs), "test": len(test_runs), "optimal_train": int(y.sum()),
           "optimal_test": int(y_test.sum()), "threshold": fitted.threshold, "rule": fitted.rule, "fit": fitted,
           "curve": curve, "fit_s": fit_s, "classify_s": classify_s, "size": path.stat().st_size}
    # hyperparameters only, fitted on the training part and scored on the held-out part
    h, names = hparams_matrix(runs + test_runs)
    if names:
        out["hparams"] = {"names": names, **side_model(h[:len(runs)], y, values, h[len(runs):], y_test,
                                                       test_values, cv)}
    # the probe: per-layer mean / std of weights and node strength, at epoch 1 and at the end
    cols = [FEATURE_NAMES.index(n) for n in PROBE]
    out["probe"] = {}
    for step in (1, ref.steps[-1].step):
        xtr = np.vstack([run_features(r).at(step)[1][cols] for r in runs])
        xte = np.vstack([run_features(r).at(step)[1][cols] for r in test_runs])
        out["probe"][step] = side_model(xtr, y, values, xte, y_test, test_values, cv)
    return out


def fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"


def ci(c: dict) -> str:
    return f"[{c['auc_ci'][0]:.2f}, {c['auc_ci'][1]:.2f}]"


def report(results: list[dict], command: str, gen_s: dict) -> str:
    lines = [f"Command: `{command}` (2 CPU cores, shared with other jobs). Populations are trained once by "
             "benchmarks/populations_fmnist.py and reused; training took "
             + ", ".join(f"{k} {v:.0f} s" if np.isfinite(v) else f"{k} (not recorded)" for k, v in gen_s.items())
             + ".", ""]
    for r in results:
        fit = r["fit"]
        last = r["curve"][-1]
        epoch1 = next((c for c in r["curve"] if c["step"] == 1), None)
        earliest = next((c["step"] for c in r["curve"] if c["auc"] >= 0.9), None)
        title = {"mixed": "Mixed population (hidden 5..200, init std 0.01..2, 5 epochs)",
                 "seeds": "One configuration, seeds only (784-20-20-10, init std 1.0, Adam 1e-3, 5 epochs)"}[r["kind"]]
        lines += [f"### {title}", "",
                  f"{r['train']} runs for fit ({r['optimal_train']} optimal), {r['test']} held out "
                  f"({r['optimal_test']} optimal); optimal: final val_accuracy >= {r['threshold']:.4f} "
                  f"({r['rule']}). fit {r['fit_s']:.0f} s, reference {r['size'] / 1e6:.1f} MB, classify of "
                  f"{r['test']} runs x {len(r['curve'])} epochs {r['classify_s']:.1f} s.", "",
                  f"- **held-out AUC at the end: {fmt(last['auc'])}** {ci(last)}, after epoch 1: "
                  f"**{fmt(epoch1['auc']) if epoch1 else 'n/a'}** {ci(epoch1) if epoch1 else ''}; earliest epoch "
                  f"with held-out AUC >= 0.9: {earliest if earliest is not None else 'none'}",
                  f"- held-out at the end: balanced accuracy {fmt(last['balanced_accuracy'])}, Kendall tau "
                  f"{fmt(last['kendall_tau'])}, R^2 {fmt(last['r2'])}", "",
                  "| epoch | held-out AUC [95% bootstrap] | bal. acc. | Kendall tau | R^2 | fit's CV AUC | CV models |",
                  "|---|---|---|---|---|---|---|"]
        for c, f in zip(r["curve"], fit.curve):
            lines.append(f"| {c['step']} | {fmt(c['auc'])} {ci(c)} | {fmt(c['balanced_accuracy'])} | "
                         f"{fmt(c['kendall_tau'])} | {fmt(c['r2'])} | {fmt(f['auc'])} | "
                         f"{f['classifier']} / {f['regressor']} |")
        lines.append("")
        if "hparams" in r:
            h = r["hparams"]
            lines.append(f"- hyperparameters only ({', '.join(h['names'])}): held-out AUC "
                         f"{fmt(h['held_out']['auc'])}, Kendall tau {fmt(h['held_out']['kendall_tau'])}, "
                         f"R^2 {fmt(h['held_out']['r2'])} (CV on the fit part: AUC {fmt(h['cv']['auc'])})")
        for step, p in r["probe"].items():
            lines.append(f"- the issue's probe (per-layer mean/std of weights and node strength) at epoch {step}: "
                         f"held-out AUC {fmt(p['held_out']['auc'])} (CV {fmt(p['cv']['auc'])}, {p['models']})")
        lines.append("")
    lines += ["Features: weightwatch/analysis/classification/features.py (per slot first/hidden/output/all: the Unterthiner "
              "statistics of kernel and bias, node strength, histogram shape, each also as change since the "
              "previous epoch and since the start). Models chosen per epoch by 5-fold CV among logistic "
              "regression, gradient boosting and extra trees (ridge / boosting / extra trees for the accuracy), "
              "random_state 0."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("runs/bench-classify"))
    parser.add_argument("--seeds-runs", type=int, default=300)
    parser.add_argument("--mixed-runs", type=int, default=150)
    parser.add_argument("--train-frac", type=float, default=2 / 3)
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    args = parser.parse_args(argv)
    command = "python benchmarks/classify.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    results, gen_s = [], {}
    for kind, n in (("mixed", args.mixed_runs), ("seeds", args.seeds_runs)):
        train_dir, test_dir, gen_s[kind] = generate(args.root, kind, n, args.train_frac)
        results.append(evaluate(kind, train_dir, test_dir, args.root, args.cv))
    text = report(results, command, gen_s)
    print(text)
    if not args.no_write:
        update_section(TITLE, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
