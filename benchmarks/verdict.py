"""Is the verdict worth more than the learning curve? Held-out digits runs, per epoch (issue 10).

For each population of benchmarks/populations_digits.py (trained once into
``--root``), the first ``--fit-runs`` runs are given to ``fit`` (labels: the
better half, ``top=0.5``) and the others are held out. Per epoch, on the
held-out runs, the ROC AUC of "ends in the top half" for:

- the verdict: ``classify`` at that epoch (the reference's choice of family);
- the metric so far: the held-out run's val_accuracy at that epoch, as it is;
- the best curve extrapolation: the raw extrapolation fit chose as best at that epoch;
- the weights-only model: the same fit restricted to the ``weights`` family;

and, from the fit, the cross-validated choice per epoch (with ``--cv-repeats``, passed to fit: a
family that beat the metric so far on the first fold split is used only if it still does on that
many further splits). Early "non"
detection: precision and recall, on the held-out runs, of the first-epoch
flag against compare's "non" group. The references of the first split (fit
runs: the first by name) are saved as ``--root/<kind>.ww``
(benchmarks/pruning.py replays with them), every split's rows as ``--root/verdict.json``.

With ``--splits K`` the same is repeated on K-1 further random splits of the
same population (seeded, the same sizes), and a second table gives, per epoch,
the mean held-out AUC over the K splits and in how many splits the verdict
fell below the metric so far or the weights-only model: 40 held-out runs
make one split's AUC move by 0.01 for four pairs of runs.

    python benchmarks/verdict.py [--root runs/bench-digits] [--runs 100] [--fit-runs 60] [--splits 1] [--cv-repeats 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import populations_digits as pd  # noqa: E402
from _results import update_section  # noqa: E402

from weightwatch.analysis import Reference, final_metric, fit, load_runs  # noqa: E402
from weightwatch.analysis.classification.evaluation import CV_REPEATS, MARGIN, precision_recall  # noqa: E402
from weightwatch.analysis.comparison.groups import group_runs  # noqa: E402

TITLE = "Verdict vs the learning curve, digits (benchmarks/verdict.py)"
DESCRIPTION = {
    "mixed": "digits mixed: MLP 64-h-h-10 (h 8..64) and CNN (2..8 channels), init std 0.03..3 and zeros, lr 3e-3, "
             "5 epochs",
    "seeds16": "digits seeds only: MLP 64-16-16-10, init std 0.5, lr 1e-3, 7 epochs",
    "seeds12": "digits seeds only: MLP 64-12-12-10, init std 1.5, lr 1e-3, 5 epochs",
}


def population(root: Path, kind: str, n: int) -> list:
    """The population's runs sorted by name (see :func:`split`), training it first when it is not there."""
    base = root / kind
    if not (base / "DONE").exists() or (base / "DONE").read_text().split()[:2] != [kind, str(n)]:
        pd.make(kind, base, n)
    runs = sorted(load_runs(base, progress=False).runs, key=lambda r: r.name)
    return runs


def auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score)) if 0 < y.sum() < y.size else float("nan")


def split(runs: list, fit_runs: int, index: int) -> tuple[list, list]:
    """(fit runs, held-out runs): split 0 takes the first ``fit_runs`` by name, split k > 0 a random
    permutation seeded with k."""
    order = np.arange(len(runs)) if index == 0 else np.random.default_rng(index).permutation(len(runs))
    return [runs[i] for i in order[:fit_runs]], [runs[i] for i in order[fit_runs:]]


def evaluate(kind: str, runs: list, fit_runs: int, root: Path, cv: int, index: int = 0,
             cv_repeats: int = CV_REPEATS) -> dict:
    train, test = split(runs, fit_runs, index)
    t0 = time.perf_counter()
    result = fit(train, metric="val_accuracy", top=0.5, cv=cv, cv_repeats=cv_repeats,
                 progress=lambda line: print(f"  {kind} split {index} fit {line}", flush=True))
    fit_s = time.perf_counter() - t0
    path = root / (f"{kind}.ww" if index == 0 else f"{kind}-split{index}.ww")
    ref = Reference.load(result.reference.save(path))
    weights_only = fit(train, metric="val_accuracy", top=0.5, cv=cv, baseline=False,
                       families=("weights",)).reference
    values = np.array([final_metric(r, "val_accuracy")[1] for r in test])
    y = values >= result.threshold
    rows = []
    for c, m in zip(result.curve, ref.steps):
        step = m.step
        p = np.array([ref.classify(r, step).p_optimal for r in test])
        pw = np.array([weights_only.classify(r, step).p_optimal for r in test])
        tables = [ref.table(r).at(step)[1] for r in test]
        col = ref.names.index("curve/metric_last")
        so_far = np.array([t[col] for t in tables])
        best = (c["baselines"].get("extrapolation") or {}).get("curve", "pow3")
        ext = np.array([t[ref.names.index(f"curve/extrap_{best}")] for t in tables])
        rows.append({"step": step, "verdict": auc(y, p), "metric": auc(y, so_far), "extrapolation": auc(y, ext),
                     "extrapolation_curve": best, "weights": auc(y, pw), "cv_family": c["family"],
                     "cv_auc": c["auc"], "cv_metric": c["baselines"]["metric_so_far"]["auc"],
                     "cv_weights": c["families"]["weights"].get("auc"), "nothing": c["weights_add_nothing"],
                     "challenger": c.get("challenger")})
    groups = {id(lab.run): lab.group for lab in group_runs(test, "val_accuracy").labelled}
    non = np.array([groups.get(id(r)) == "non" for r in test])
    first = ref.steps[0].step
    flags = [ref.classify(r, first).non for r in test]
    early = {"fit": result.non, "held_out_non": int(non.sum())}
    if all(f is not None for f in flags):
        early["precision"], early["recall"] = precision_recall(non, np.array(flags, dtype=bool))
        early["flagged"] = int(np.sum(flags))
    return {"kind": kind, "train": len(train), "test": len(test), "optimal_test": int(y.sum()),
            "threshold": result.threshold, "rows": rows, "fit_s": fit_s, "early": early}


def fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"


def report(results: list[dict], command: str) -> str:
    lines = [f"Command: `{command}` (2 CPU cores shared with other jobs). Labels: optimal = final "
             "val_accuracy in the top half of the fit runs. AUCs on the held-out runs only (never seen by fit); "
             "'metric so far' and 'extrapolation' are the raw values (no model); 'weights only' is `fit` restricted "
             "to the weights family; 'CV' columns are fit's own cross-validation on the fit runs.", ""]
    for r in results:
        lines += [f"**{DESCRIPTION[r['kind']]}**: {r['train']} runs for fit, {r['test']} held out "
                  f"({r['optimal_test']} optimal, threshold {r['threshold']:.4f}); fit {r['fit_s']:.0f} s.", "",
                  "| epoch | verdict | metric so far | best extrapolation | weights only | verdict >= both? | "
                  "CV choice (AUC) | CV metric so far | CV weights | weights add nothing (CV) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for row in r["rows"]:
            ok = row["verdict"] >= row["metric"] - 1e-12 and row["verdict"] >= row["weights"] - 1e-12
            lines.append(f"| {row['step']} | {fmt(row['verdict'])} | {fmt(row['metric'])} | "
                         f"{fmt(row['extrapolation'])} ({row['extrapolation_curve']}) | {fmt(row['weights'])} | "
                         f"{'yes' if ok else '**no**'} | {row['cv_family']} ({fmt(row['cv_auc'])}) | "
                         f"{fmt(row['cv_metric'])} | {fmt(row['cv_weights'])} | {'yes' if row['nothing'] else 'no'} |")
        e = r["early"]
        fitted = e["fit"]
        if fitted.get("available"):
            lines += ["", f"Early non detection at epoch 0: fit's CV precision {fmt(fitted['precision'])}, recall "
                      f"{fmt(fitted['recall'])} ({fitted['non']} of {fitted['runs']} fit runs at chance); held out: "
                      f"{e['held_out_non']} at chance, flagged {e.get('flagged', 'n/a')}, precision "
                      f"{fmt(e.get('precision'))}, recall {fmt(e.get('recall'))}."]
        else:
            lines += ["", f"Early non detection: not available ({fitted.get('reason', '')})."]
        lines.append("")
        if r.get("splits"):
            lines += over_splits(r["splits"])
    return "\n".join(lines)


def over_splits(splits: list[dict]) -> list[str]:
    """The mean held-out AUC per epoch over the splits, and how often the verdict fell below."""
    k = len(splits)
    lines = [f"Over {k} splits of this population (the one above and {k - 1} seeded random ones, same sizes): "
             "mean held-out AUC per epoch, and in how many splits the verdict was below each baseline.", "",
             "| epoch | verdict | metric so far | best extrapolation | weights only | below metric so far | "
             "below weights only | CV chose |", "|---|---|---|---|---|---|---|---|"]
    for i, row in enumerate(splits[0]["rows"]):
        rows = [s["rows"][i] for s in splits]
        mean = {key: float(np.nanmean([r[key] for r in rows])) for key in ("verdict", "metric", "extrapolation",
                                                                            "weights")}
        below_m = sum(r["verdict"] < r["metric"] - 1e-12 for r in rows)
        below_w = sum(r["verdict"] < r["weights"] - 1e-12 for r in rows)
        chose = ", ".join(f"{f} {n}" for f, n in sorted(Counter(r["cv_family"] for r in rows).items()))
        lines.append(f"| {row['step']} | {fmt(mean['verdict'])} | {fmt(mean['metric'])} | "
                     f"{fmt(mean['extrapolation'])} | {fmt(mean['weights'])} | {below_m} of {k} | "
                     f"{below_w} of {k} | {chose} |")
    return lines + challengers(splits) + [""]


def challengers(splits: list[dict]) -> list[str]:
    """One line: how often fit used a family other than the metric so far, how often that lost held out,
    and how many challengers the repeats turned down that the first split alone would have used."""
    rows = [r for s in splits for r in s["rows"]]
    chose = [r for r in rows if r["cv_family"] != "metric"]
    lost = sum(r["verdict"] < r["metric"] - 1e-12 for r in chose)
    c = [r["challenger"] for r in rows if r.get("challenger")]
    first = [x for x in c if x["gain_over_metric"] >= MARGIN and x["gain_over_metric"] > x["gain_se"]]
    turned = [x for x in first if not x["kept"]]
    gains = ", ".join(f"{x['family']} {x['gain_over_metric']:+.3f} -> {x['gain_over_metric_repeated']:+.3f} "
                      f"(se {x['gain_se_repeated']:.3f})" for x in turned if "gain_over_metric_repeated" in x)
    return ["", f"fit used a family other than the metric so far in {len(chose)} of {len(rows)} (split, epoch) "
            f"cases; the held-out verdict fell below the metric so far in {lost} of them. The first split's best "
            f"family was not the metric so far in {len(c)} cases, {len(first)} passing the rule on the first split "
            f"alone; the repeated cross-validation turned down {len(turned)} of those"
            + (f" (first-split gain -> mean gain over the repeats: {gains})." if gains else ".")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("runs/bench-digits"))
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--fit-runs", type=int, default=60)
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--kinds", nargs="+", default=list(pd.KINDS), choices=pd.KINDS)
    parser.add_argument("--splits", type=int, default=1, help="fit/held-out splits per population (see above)")
    parser.add_argument("--cv-repeats", type=int, default=CV_REPEATS,
                        help="fit's repeated cross-validation of a challenger of the metric so far (0: off)")
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    args = parser.parse_args(argv)
    command = "python benchmarks/verdict.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    results = []
    for kind in args.kinds:
        runs = population(args.root, kind, args.runs)
        splits = [evaluate(kind, runs, args.fit_runs, args.root, args.cv, i, args.cv_repeats)
                  for i in range(args.splits)]
        results.append({**splits[0], "splits": splits if args.splits > 1 else None})
    (args.root / "verdict.json").write_text(json.dumps(results, indent=1, default=float))
    text = report(results, command)
    print(text)
    if not args.no_write:
        update_section(TITLE, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
