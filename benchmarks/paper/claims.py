"""The paper's observations, one per figure, measured on the logged runs (read back by logs.py).

Each ``claim_*`` function takes the runs of one family, their group from
``weightwatch compare`` (run name -> non / low / mid / high) and returns a
:class:`Claim`: the numbers, whether the observation holds, and the sentence
the results print. No sentence is written by hand: each is filled in from the
numbers and the verdict follows a stated rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from .logs import LoggedRun


@dataclass
class Claim:
    figure: str  # which of the paper's figures
    observation: str  # the paper's, in a few words
    holds: bool | None  # None: not enough runs to tell
    sentence: str
    numbers: dict = field(default_factory=dict)


def _verdict(holds: bool | None) -> str:
    return {True: "holds", False: "does not hold", None: "cannot be told"}[holds]


def _in(runs: list[LoggedRun], groups: dict[str, str], group: str) -> list[LoggedRun]:
    return [r for r in runs if groups.get(r.name) == group]


def claim_mean_std(runs: list[LoggedRun], groups: dict[str, str]) -> Claim:
    """Figs. 2-4: the high runs' (mean, std) points of all weights cluster, at a lower std than the low runs'."""
    high, low = _in(runs, groups, "high"), _in(runs, groups, "low")
    fig, obs = "Figs. 2-4 (mean vs std)", "high-accuracy runs cluster, with lower std"
    if len(high) < 2 or len(low) < 2:
        return Claim(fig, obs, None, f"{len(high)} high and {len(low)} low runs: too few to compare.")
    pts = {g: np.array([[r.final["weights/all/mean"], r.final["weights/all/std"]] for r in rs])
           for g, rs in (("high", high), ("low", low))}
    scale = np.vstack(list(pts.values())).std(0) + 1e-12  # standardise over high + low together

    def spread(p: np.ndarray) -> float:
        z = p / scale
        return float(np.linalg.norm(z - z.mean(0), axis=1).mean())

    s_high, s_low = spread(pts["high"]), spread(pts["low"])
    med_high, med_low = float(np.median(pts["high"][:, 1])), float(np.median(pts["low"][:, 1]))
    holds = s_high < s_low and med_high < med_low
    return Claim(fig, obs, holds,
                 f"{_verdict(holds)}: the high runs' (mean, std) points of all weights spread "
                 f"{s_high / s_low:.2f}x as far from their centre as the low runs' (standardised units), and "
                 f"their median std is {med_high:.3g} against {med_low:.3g} "
                 f"({len(high)} high, {len(low)} low runs).",
                 {"spread_ratio": s_high / s_low, "median_std_high": med_high, "median_std_low": med_low})


def claim_output_variance(runs: list[LoggedRun], groups: dict[str, str]) -> Claim:
    """Figs. 2-4: the output layer's weight std ends below its initial std (init_std) in the high runs."""
    fig, obs = "Figs. 2-4 (output layer)", "the output layer's variance shrinks"
    ratios = {}
    for g in ("high", "low"):
        rs = [r for r in _in(runs, groups, g) if r.hparams.get("init_std")]
        ratios[g] = [r.final[f"weights/{r.layer_names('output')[0]}/std"] / r.hparams["init_std"] for r in rs]
    if not ratios["high"]:
        return Claim(fig, obs, None, "no high runs.")
    high = float(np.median(ratios["high"]))
    low = float(np.median(ratios["low"])) if ratios["low"] else float("nan")
    shrunk = float(np.mean(np.array(ratios["high"]) < 1))
    holds = high < 1
    return Claim(fig, obs, holds,
                 f"{_verdict(holds)}: in the high runs the output layer's final std is a median {high:.3g}x "
                 f"its initial std ({100 * shrunk:.0f}% of them below 1x); low runs: {low:.3g}x.",
                 {"median_ratio_high": high, "median_ratio_low": low, "share_shrunk_high": shrunk})


def group_density(rs: list[LoggedRun], tag: str, points: int = 512) -> tuple[np.ndarray, np.ndarray, float]:
    """A Gaussian KDE (scipy) of the runs' final weights from their histograms, each run weighing the same.

    Returns the grid (points,), the density on it (points,) and the pooled std of the weights.
    """
    centres, weights = [], []
    for r in rs:
        edges, counts = r.histograms[tag]
        if counts.sum() <= 0:
            continue
        centres.append((edges[:-1] + edges[1:]) / 2)
        weights.append(counts / counts.sum() / len(rs))
    c, w = np.concatenate(centres), np.concatenate(weights)
    mean = np.sum(w * c) / w.sum()
    std = float(np.sqrt(np.sum(w * (c - mean) ** 2) / w.sum()))
    grid = np.linspace(c.min(), c.max(), points)
    return grid, stats.gaussian_kde(c, weights=w)(grid), std


def claim_kde_peak(runs: list[LoggedRun], groups: dict[str, str]) -> Claim:
    """Figs. 5-7: the high group's weight density peaks near zero (|peak| < 0.1 x its std), per layer."""
    fig, obs = "Figs. 5-7 (weight KDE)", "a peak near zero"
    high = _in(runs, groups, "high")
    if not high:
        return Claim(fig, obs, None, "no high runs.")
    layers = [layer["name"] for layer in high[0].layers if layer["role"] != "norm"]
    peaks = {}
    for name in layers:
        rs = [r for r in high if f"weights/{name}" in r.histograms]
        if rs:
            grid, density, std = group_density(rs, f"weights/{name}")
            peaks[name] = (float(grid[np.argmax(density)]), std)
    near = {n: abs(p) < 0.1 * s for n, (p, s) in peaks.items()}
    out_name = high[0].layer_names("output")[0]
    p, s = peaks[out_name]
    holds = all(near.values())
    return Claim(fig, obs, holds,
                 f"{_verdict(holds)}: the high group's density peaks within 0.1 std of zero in "
                 f"{sum(near.values())} of {len(near)} layers; output layer: peak at {p:.3g} (std {s:.3g}, "
                 f"{abs(p) / s:.2f} std from zero).",
                 {"peaks": {n: {"peak": p_, "std": s_} for n, (p_, s_) in peaks.items()}})


def strength_pairs(run: LoggedRun) -> list[tuple[str, str, str]]:
    """(label, tag x, tag y) of the paper's node-strength panels for this family."""
    ns = "node_strength/{}/{}".format
    if run.family == "dnn":
        fc1, fc2 = run.layer_names("fc")
        out = run.layer_names("output")[0]
        return [("FC1 vs FC2", ns(fc1, "mean"), ns(fc2, "mean")), ("FC1 vs O/P", ns(fc1, "mean"), ns(out, "mean")),
                ("FC2 vs O/P", ns(fc2, "mean"), ns(out, "mean"))]
    if run.family == "cnn":
        conv, fc = run.layer_names("conv")[0], run.layer_names("output")[0]
        return [(f"Conv1{s} vs FC{s}", ns(conv, stat), ns(fc, stat))
                for s, stat in (("", "mean"), ("+", "pos_mean"), ("-", "neg_mean"))]
    attn, mlp = run.layer_names("attn"), run.layer_names("mlp")
    v = next(n for n in attn if n.endswith("v_proj"))
    pairs = [(f"Attn ({a.rsplit('.', 1)[-1]}) vs MLP ({mlp[0].rsplit('.', 1)[-1]})", ns(a, "mean"), ns(mlp[0], "mean"))
             for a in attn if not a.endswith(("q_proj", "k_proj"))]
    heads = sorted(t for t in run.final if t.startswith(f"node_strength/{v}/head") and t.endswith("_mean"))
    pairs += [(f"Attn v_proj {t.split('/')[-1][:-5]} vs MLP", t, ns(mlp[0], "mean")) for t in heads]
    return pairs


def claim_strength(runs: list[LoggedRun], groups: dict[str, str], population: str | None = None) -> Claim:
    """Figs. 8-10: the successful runs' mean node strengths correlate across layers (Pearson r, p < 0.05).

    ``population``: restrict to one population (``seeds``: one architecture, where width and init std
    do not drive both strengths at once); there "successful" is the better half by the metric.
    """
    fig = "Figs. 8-10 (node strength)" + (f", {population} only" if population else "")
    obs = "node strengths of successful runs correlate across layers"
    if population:
        pool = [r for r in runs if r.population == population and r.name in groups]
        vals = np.array([r.final.get("val_accuracy", np.nan) for r in pool])
        good = [r for r, v in zip(pool, vals) if v >= np.nanmedian(vals)] if len(pool) else []
        which = "better half"
    else:
        good, which = _in(runs, groups, "high"), "high group"
    if len(good) < 4:
        return Claim(fig, obs, None, f"{len(good)} runs in the {which}: too few for a correlation.")
    rows = []
    for label, tx, ty in strength_pairs(good[0]):
        rs = [r for r in good if tx in r.final and ty in r.final]
        x, y = np.array([r.final[tx] for r in rs]), np.array([r.final[ty] for r in rs])
        if len(rs) < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        res = stats.pearsonr(x, y)
        rows.append((label, float(res.statistic), float(res.pvalue), len(rs)))
    if not rows:
        return Claim(fig, obs, None, "no pair of layers with varying strengths.")
    holds = all(r > 0 and p < 0.05 for _, r, p, _ in rows)
    listed = "; ".join(f"{label}: r = {r:.2f} (p = {p:.2g}, n = {n})" for label, r, p, n in rows)
    return Claim(fig, obs, holds, f"{_verdict(holds)} in the {which}: {listed}.",
                 {"pairs": [{"pair": label, "r": r, "p": p, "n": n} for label, r, p, n in rows]})


def claim_tsne(runs: list[LoggedRun], groups: dict[str, str], seed: int = 0) -> Claim:
    """Figs. 11-13: t-SNE of the weight sketches separates the groups (per architecture, >= 5 runs).

    Measured on our own t-SNE (scikit-learn, of the same sketches compare projects) by the
    leave-one-out 5-nearest-neighbour accuracy of the group in the 2-D map against always guessing
    the commonest group; holds when it beats that guess significantly on the pooled runs (one-sided
    binomial test of the neighbours' hits against the guess's rate, p < 0.05): a point or two above
    the guess is what chance gives.
    """
    from scipy.stats import binomtest
    from sklearn.manifold import TSNE
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.model_selection import LeaveOneOut, cross_val_score

    fig, obs = "Figs. 11-13 (t-SNE)", "t-SNE separates the groups"
    by_arch: dict[tuple, list[LoggedRun]] = {}
    for r in runs:
        if r.name in groups and r.sketch is not None:
            by_arch.setdefault((r.hparams.get("width"), len(r.sketch)), []).append(r)
    hits = total = majority = 0
    per_arch = []
    for (width, _), rs in sorted(by_arch.items(), key=lambda kv: -len(kv[1])):
        labels = np.array([groups[r.name] for r in rs])
        if len(rs) < 6 or len(set(labels)) < 2:
            continue
        x = np.array([r.sketch for r in rs])
        emb = TSNE(2, perplexity=min(30.0, (len(rs) - 1) / 3), random_state=seed, init="pca").fit_transform(x)
        acc = cross_val_score(KNeighborsClassifier(min(5, len(rs) - 1)), emb, labels, cv=LeaveOneOut()).mean()
        base = max(np.mean(labels == g) for g in set(labels))
        per_arch.append({"width": width, "runs": len(rs), "knn_accuracy": float(acc), "majority": float(base)})
        hits += acc * len(rs)
        majority += base * len(rs)
        total += len(rs)
    if not total:
        return Claim(fig, obs, None, "no architecture with 6+ runs in 2+ groups.")
    acc, base = hits / total, majority / total
    p = binomtest(int(round(hits)), total, min(base, 1.0), alternative="greater").pvalue
    holds = bool(p < 0.05)
    return Claim(fig, obs, holds,
                 f"{_verdict(holds)}: in each architecture's t-SNE map a run's 5 nearest neighbours name its "
                 f"group {100 * acc:.0f}% of the time (leave-one-out, {total} runs in {len(per_arch)} "
                 f"architectures) against {100 * base:.0f}% for always guessing the commonest group "
                 f"(one-sided binomial p = {p:.2g}).",
                 {"knn_accuracy": acc, "majority": base, "p_value": p, "architectures": per_arch})


def vit_query_key_unchanged(runs: list[LoggedRun]) -> str:
    """With one token the query / key projections get no gradient: their final std / init std, measured."""
    ratios = [r.final[f"weights/{n}/std"] / r.hparams["init_std"] for r in runs
              for n in r.layer_names("attn") if n.endswith(("q_proj", "k_proj"))]
    others = [r.final[f"weights/{n}/std"] / r.hparams["init_std"] for r in runs
              for n in r.layer_names("attn") if n.endswith(("v_proj", "out_proj"))]
    if not ratios:
        return ""
    return (f"q_proj / k_proj final std / init std over all ViT runs: {min(ratios):.4f} to {max(ratios):.4f} "
            f"(v_proj / out_proj: {min(others):.3f} to {max(others):.3f}): with one token the query and key "
            "weights never move, as the model's construction implies.")


def family_claims(runs: list[LoggedRun], groups: dict[str, str]) -> list[Claim]:
    return [claim_mean_std(runs, groups), claim_output_variance(runs, groups), claim_kde_peak(runs, groups),
            claim_strength(runs, groups), claim_strength(runs, groups, "seeds"), claim_tsne(runs, groups)]
