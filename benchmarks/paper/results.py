"""Write RESULTS.md from an analysis (report.analyse) and copy the figures it shows next to it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .models import FAMILIES
from .populations import SEED_INIT_STD, STD_RANGE, Scale
from .report import FAMILY_TITLE, _f, dispersion, fit_table, shrink_png, table2

FIGURE_KINDS = [  # (file prefix, the paper's figure, which claims speak to it)
    ("convergence", "Fig. 1: convergence", ()),
    ("mean-std-layers", "Figs. 2-4: mean vs std per layer", ("Figs. 2-4 (mean vs std)", "Figs. 2-4 (output layer)")),
    ("mean-std-roles", "Figs. 2-4: mean vs std per role", ()),
    ("kde", "Figs. 5-7: weight densities per group", ("Figs. 5-7 (weight KDE)",)),
    ("strength", "Figs. 8-10: pairwise node strength", ("Figs. 8-10 (node strength)",
                                                         "Figs. 8-10 (node strength), seeds only")),
    ("tsne", "Figs. 11-13: t-SNE of the weights", ("Figs. 11-13 (t-SNE)",)),
]


def slug(label: str) -> str:
    """The file-name form compare gives a family label: 'DNN (fc×2, output)' -> 'dnn-fc2-output'."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower().replace("×", "")).strip("-")


def family_figures(analysis: dict, family: str) -> list[tuple[str, Path]]:
    """(kind, png) compare drew for this family; for t-SNE only the seed-only population's architecture."""
    held = analysis["held"]
    seeds_arch = {info["architecture"] for name, info in held["runs"].items()
                  if name.startswith(f"{family}/seeds/")}
    out = []
    for label in analysis["families"][family]:
        for kind, _, _ in FIGURE_KINDS:
            for fig in map(Path, held["figures"]):
                stem = fig.stem
                if kind == "tsne":
                    if stem.startswith(f"tsne-{slug(label)}-") and stem.rsplit("-", 1)[-1] in seeds_arch:
                        out.append((kind, fig))
                elif stem == f"{kind}-{slug(label)}":
                    out.append((kind, fig))
    return out


def convergence_sentence(analysis: dict, family: str) -> str:
    runs = {n: i for n, i in analysis["held"]["runs"].items() if n.startswith(f"{family}/")}
    non = [i for i in runs.values() if i["group"] == "non"]
    return (f"{len(non)} of {len(runs)} runs did not converge (compare's non group: "
            f"{'; '.join(sorted({r for i in non for r in i['reasons']})[:3]) or 'none'}).")


def settings(analysis: dict, scale: Scale) -> str:
    t = analysis["trained"]
    lines = ["| family | runs | mixed | seed-only | Keras | epochs | training images | held-out images | widths "
             "| seed-only config | train s |", "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|"]
    for family in FAMILIES:
        f = t["families"][family]
        lines.append(f"| {FAMILY_TITLE[family]} | {f['runs']} | {f['mixed']} | {f['seeds']} | {f['keras']} | "
                     f"{f['epochs']} | {f['train_images']} | {f['test_images']} | {', '.join(map(str, f['widths']))} "
                     f"| width {f['seed_width']}, std {SEED_INIT_STD:g} | "
                     f"{f['torch_seconds'] + f['keras_seconds']:.0f} |")
    return "\n".join(lines)


def claims_summary(analysis: dict) -> str:
    lines = ["| paper's observation | " + " | ".join(f.upper() for f in FAMILIES) + " |",
             "|---|" + "---|" * len(FAMILIES)]
    first = analysis["claims"][FAMILIES[0]]
    for i, c in enumerate(first):
        cells = [{True: "holds", False: "does not hold", None: "n/a"}[analysis["claims"][f][i].holds]
                 for f in FAMILIES]
        lines.append(f"| {c.figure}: {c.observation} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def headline(analysis: dict) -> dict:
    """The numbers the README quotes: high-group median held-out accuracy, dispersion p (all), last fit AUC."""
    out = {}
    for family in FAMILIES:
        labels = analysis["families"][family]
        high = [r for r in analysis["held"]["table"] if r["family"] in labels and r["group"] == "high"]
        disp = [d for d in analysis["held"]["dispersion"] if d["family"] in labels and d["role"] == "all"]
        fit = analysis["fits"][f"{family}/all"]["result"]
        out[family] = {"high_median": high[0]["median"] if high else None,
                       "dispersion_ratio": disp[0]["ratio"] if disp else None,
                       "dispersion_p": disp[0]["p_value"] if disp else None,
                       "auc_last": fit["curve"][-1].get("auc") if fit and fit.get("curve") else None}
    return out


def write_results(analysis: dict, scale: Scale, path: Path, command: str) -> Path:
    path = Path(path)
    figdir = path.parent / "figures"
    if figdir.exists():
        shutil.rmtree(figdir)
    figdir.mkdir(parents=True)
    t = analysis["trained"]
    heads = headline(analysis)
    train_seconds = sum(f["torch_seconds"] + f["keras_seconds"] for f in t["families"].values())
    md = [f"# Reproducing Zheng et al. 2024 on {t['dataset']}: DNN, CNN and ViT populations", "",
          f"Generated by `{command}` (scale **{scale.name}**: {scale.note}); {analysis['runs_read']} runs, "
          f"trained in {train_seconds:.0f} s, analysed in {analysis['analysis_seconds']:.0f} s on "
          f"{t.get('machine', 'this machine')}. Rerun it to refresh every number here.", ""]
    if scale.name == "smoke":
        md += ["**Smoke scale: the pipeline's test. Its numbers show that the pipeline works, not what the "
               "paper found.**", ""]
    md += ["## Settings", "", settings(analysis, scale), "",
           f"All: Adam, learning rate 1e-3, batch 100, every kernel N(0, std^2) with std log-uniform in "
           f"[{STD_RANGE[0]:g}, {STD_RANGE[1]:g}] (mixed) or {SEED_INIT_STD:g} (seed-only), biases 0, LayerNorm "
           "scale 1 / shift 0. Many runs of one architecture train at once as batched tensors (one bmm per "
           "layer, each run with its own initialisation and data order), on every core. The ViT feeds each "
           "28x28 image as ONE token of 784 values (d_model 784 fits no other way without a projection the "
           "paper does not list; no positional encoding, no class token); nhead takes the values from 2 to 16 "
           "that divide 784. With one token attention is out_proj(v_proj(x)), so the query and key "
           f"projections never learn: {analysis['vit_qk']} The DNN's Keras share "
           f"({t['families']['dnn']['keras']} runs, `WeightWatchCallback`, KERAS_BACKEND=torch) is analysed in "
           f"the same population as the PyTorch runs: compare put them in "
           f"{', '.join(f'`{x}`' for x in analysis['families']['dnn'])} "
           f"(groups: {', '.join(f'{g} {n}' for g, n in analysis['keras_groups'].items() if n)}).", "",
           f"The paper's scale (`--scale paper`: {SCALES_NOTE}) is not run here.", "",
           "## Table 2: accuracy per group", "",
           f"`{analysis['held_command']}` (groups by held-out `val_accuracy`, the test images) and "
           f"`{analysis['train_command']}` (groups by training-batch `accuracy`: the running mean over the last "
           "epoch's batches, which is what the paper's numbers look like). Groups: non = did not converge "
           "(at chance, loss did not fall, or non-finite weights), then low / mid / high by 1-D k-means on "
           "the metric.", "", table2(analysis), "",
           "The paper's own Table 2 values are not in this project's reference notes, so they are not copied "
           "here; compare the column structure (min / median / max per group) with the paper's table. "
           "Expected differences: the paper trains 20 epochs on all 60,000 images with 1000 runs per family, "
           "so its high groups sit higher and its groups are fuller.", "",
           "## The paper's observations, tested", "", claims_summary(analysis), ""]
    for family in FAMILIES:
        md += [f"### {FAMILY_TITLE[family]}", "", f"Fig. 1 (convergence): {convergence_sentence(analysis, family)}", ""]
        for c in analysis["claims"][family]:
            md.append(f"- **{c.figure}**, *{c.observation}*: {c.sentence}")
        md.append("")
        for kind, fig in family_figures(analysis, family):
            dst = figdir / f"{family}-{fig.name}"
            shrink_png(fig, dst)
            title = next(title for k, title, _ in FIGURE_KINDS if k == kind)
            md += [f"{title}:", "", f"![{title}]({dst.relative_to(path.parent).as_posix()})", ""]
    md += ["## Dispersion test (`weightwatch compare`)", "",
           "Per family and layer role, each high and low run is a point (mean and std of the role's final "
           "weights, and their mean node strength, standardised); dispersion = mean distance to the group's "
           "centroid. The ratio high / low is the effect size (below 1: the high runs are more alike), the "
           "p-value a one-sided permutation test that high is tighter.", "", f"`{analysis['held_command']}`", "",
           dispersion(analysis), "",
           "## Predicting the high group from the weights (`weightwatch fit`, held out)", "",
           "Per family on all its runs (optimal = compare's high group), and on the seed-only population "
           "alone (optimal = the better half, `--top 0.5`). Every number is scored on runs the models did not "
           "see (cross-validation).", ""]
    for family in FAMILIES:
        for kind, title in (("all", "all runs"), ("seeds", "seed-only runs")):
            entry = analysis["fits"][f"{family}/{kind}"]
            md += [f"### {FAMILY_TITLE[family]}, {title}", "", f"`{entry['command']}`", "", fit_table(entry), ""]
    md += ["## Pruning replay", "", pruning_placeholder(analysis), ""]
    md += ["", "## Headline", ""]
    for family, h in heads.items():
        md.append(f"- {FAMILY_TITLE[family]}: high-group median held-out accuracy {_f(h['high_median'])}; "
                  f"dispersion ratio (all weights) {_f(h['dispersion_ratio'], 2)}, p = {_f(h['dispersion_p'], 4)}; "
                  f"fit AUC at the last step {_f(h['auc_last'])}.")
    path.write_text("\n".join(md).rstrip() + "\n")
    return path


def pruning_placeholder(analysis: dict) -> str:
    """What stands under "Pruning replay" until benchmarks/pruning.py (run by run.py next) writes its table."""
    return ("benchmarks/pruning.py replays the populations trained for more than one epoch "
            f"(`{analysis.get('pruning_command', 'not run')}`); its table replaces this line.")


SCALES_NOTE = ("1000 runs x 20 epochs per DNN and CNN (700 mixed + 300 seed-only), 30 runs per ViT nhead value "
               "(6 values), all 60,000 images")
