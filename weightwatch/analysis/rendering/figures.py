"""The comparison's figures, after the seed paper's, as PNGs (matplotlib, Agg backend).

One PNG per figure and family (file names end with the family's slug):

==========================  ==========  ================================================
file                        paper       what
==========================  ==========  ================================================
``convergence-*.png``       Fig. 1      loss per epoch of every run, coloured by its final metric
``mean-std-layers-*.png``   Figs. 2-4   mean vs std of each layer's weights (and of all), one
                                        point per run, coloured by final metric
``mean-std-roles-*.png``    Figs. 2-4   the same per layer role (the role's layers pooled)
``kde-*.png``               Figs. 5-7   density of each layer's weights per group (scipy's
                                        gaussian_kde over the runs' final histograms)
``strength-*.png``          Figs. 8-10  mean node strength of one layer against another's, one
                                        point per run; with S+ and S- panels when a conv is involved
``tsne-*.png``              Figs. 11-13 t-SNE (scikit-learn) of the runs' weight sketches, per
                                        role and all layers, for runs sharing an architecture
==========================  ==========  ================================================

Every figure function takes the :class:`~weightwatch.analysis.comparison.compare.Comparison`
(or part of it) and returns a matplotlib Figure, or None when the runs lack
what it needs; :func:`write_figures` saves them and records runs it had to leave out.
The shared drawing helpers are in :mod:`.plots`, the t-SNE in :mod:`.embedding`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from weightwatch.layers import LayerInfo
from weightwatch.tags import ALL, STRENGTH, WEIGHTS

from ..comparison.compare import Comparison, Figure
from ..comparison.final import last, role_final
from ..comparison.groups import GROUPS, Labelled, loss_tag
from .embedding import TSNE_MIN_RUNS, tsne
from .plots import CMAP, GROUP_COLOURS, colourbar, family_layers, norm_of, plt_agg, scatter, slug, subplot_grid

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

#: Points of the density curves.
KDE_GRID = 400

# -- Fig. 1 ------------------------------------------------------------------------------------------------

def convergence(members: Sequence[Labelled], metric: str) -> MplFigure | None:
    """Loss per step of each run, coloured by its final metric (the metric itself when no run logs a loss)."""
    tags = [loss_tag(lab.run) for lab in members]
    use_loss = any(tags)
    plt = plt_agg()
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    norm = norm_of(members)
    cmap = plt.get_cmap(CMAP)
    lo, hi = math.inf, -math.inf
    for lab, tag in sorted(zip(members, tags), key=lambda p: p[0].value):
        s = lab.run.scalars.get(tag if use_loss else lab.metric) if (tag or not use_loss) else None
        if s is None or not s.values.size:
            continue
        finite = s.values[np.isfinite(s.values)]
        if finite.size:
            lo, hi = min(lo, finite.min()), max(hi, finite.max())
        ax.plot(s.steps, s.values, color=cmap(norm(lab.value)), lw=0.9, alpha=0.8)
    if not math.isfinite(lo):
        plt.close(fig)
        return None
    if use_loss and lo > 0 and hi / lo > 100:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss" if use_loss else metric)
    colourbar(fig, [ax], norm, f"final {metric}")
    return fig


# -- Figs. 2-4 -----------------------------------------------------------------------------------------------

def mean_std_layers(members: Sequence[Labelled], metric: str) -> MplFigure | None:
    """Mean (x) against std (y) of each layer's final weights, and of all of them."""
    layers = family_layers(members)
    titles = [f"{i + 1}: {layer.name} ({layer.role})" for i, layer in enumerate(layers)] + ["all weights"]
    fig, axes = subplot_grid(len(titles))
    norm = norm_of(members)
    c = np.array([lab.value for lab in members])
    for i, ax in enumerate(axes):
        if i < len(layers):
            names = [lab.run.layers[i].name if len(lab.run.layers) > i else "" for lab in members]
            x = np.array([last(lab.run, f"{WEIGHTS}/{n}/mean") for lab, n in zip(members, names)])
            y = np.array([last(lab.run, f"{WEIGHTS}/{n}/std") for lab, n in zip(members, names)])
        else:
            x = np.array([last(lab.run, f"{WEIGHTS}/{ALL}/mean") for lab in members])
            y = np.array([last(lab.run, f"{WEIGHTS}/{ALL}/std") for lab in members])
        scatter(ax, x, y, c, norm)
        ax.set_title(titles[i], fontsize=9)
        ax.set_xlabel("mean")
        ax.set_ylabel("std")
    colourbar(fig, axes, norm, f"final {metric}")
    return fig


def mean_std_roles(members: Sequence[Labelled], metric: str) -> MplFigure | None:
    """Mean against std per layer role (each role's layers pooled), and all weights."""
    finals = [role_final(lab.run) for lab in members]
    roles = list(dict.fromkeys(r for f in finals for r in f))
    if not roles:
        return None
    fig, axes = subplot_grid(len(roles))
    norm = norm_of(members)
    c = np.array([lab.value for lab in members])
    for ax, role in zip(axes, roles):
        x = np.array([f[role].mean if role in f else math.nan for f in finals])
        y = np.array([f[role].std if role in f else math.nan for f in finals])
        scatter(ax, x, y, c, norm)
        ax.set_title(role if role != ALL else "all weights", fontsize=9)
        ax.set_xlabel("mean")
        ax.set_ylabel("std")
    colourbar(fig, axes, norm, f"final {metric}")
    return fig


# -- Figs. 5-7 -----------------------------------------------------------------------------------------------

def rebin(edges: np.ndarray, counts: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A histogram's mass on new bin edges ``grid`` (m + 1,), values spread evenly within each bin.

    >>> rebin(np.array([0.0, 1.0, 2.0]), np.array([2.0, 2.0]), np.array([0.0, 0.5, 2.0])).tolist()
    [1.0, 3.0]
    """
    cdf = np.concatenate([[0.0], np.cumsum(counts, dtype=np.float64)])
    keep = np.concatenate([[True], np.diff(edges) > 0])  # zero-width (padding) bins add nothing
    return np.diff(np.interp(grid, edges[keep], cdf[keep]))


def group_density(hists: Sequence[tuple[np.ndarray, np.ndarray]], grid: np.ndarray) -> np.ndarray | None:
    """Gaussian KDE of the pooled weights of several runs, evaluated at ``grid``'s bin centres.

    Each run's final histogram is re-binned onto ``grid`` and normalised (every
    run weighs the same), then scipy's ``gaussian_kde`` runs on the bin
    centres weighted by that mass (Scott's bandwidth for the weighted points).
    """
    from scipy.stats import gaussian_kde

    mass = np.zeros(grid.size - 1)
    for edges, counts in hists:
        m = rebin(edges, counts, grid)
        if m.sum() > 0:
            mass += m / m.sum()
    if np.count_nonzero(mass) < 2:
        return None
    centres = (grid[1:] + grid[:-1]) / 2
    try:
        return gaussian_kde(centres, weights=mass)(centres)
    except (np.linalg.LinAlgError, ValueError):
        return None


def _kde_range(members: Sequence[Labelled], names: Sequence[str]) -> tuple[float, float] | None:
    """A range holding the bulk of every run's weights: quartiles -/+ 3 IQR, within min..max."""
    lo, hi = [], []
    for lab, name in zip(members, names):
        q1, q3 = last(lab.run, f"{WEIGHTS}/{name}/p25"), last(lab.run, f"{WEIGHTS}/{name}/p75")
        mn, mx = last(lab.run, f"{WEIGHTS}/{name}/min"), last(lab.run, f"{WEIGHTS}/{name}/max")
        if all(map(math.isfinite, (q1, q3, mn, mx))):
            iqr = q3 - q1
            lo.append(max(mn, q1 - 3 * iqr))
            hi.append(min(mx, q3 + 3 * iqr))
    if not lo or max(hi) <= min(lo):
        return None
    return min(lo), max(hi)


def kde_layers(members: Sequence[Labelled], metric: str) -> MplFigure | None:
    """Per layer, the density of the final weights of each group's runs."""
    layers = family_layers(members)
    if not layers or not any(lab.run.histograms for lab in members):
        return None
    fig, axes = subplot_grid(len(layers))
    drawn = False
    for i, (ax, layer) in enumerate(zip(axes, layers)):
        names = [lab.run.layers[i].name if len(lab.run.layers) > i else "" for lab in members]
        span = _kde_range(members, names)
        ax.set_title(f"{i + 1}: {layer.name} ({layer.role})", fontsize=9)
        if span is None:
            continue
        grid = np.linspace(span[0], span[1], KDE_GRID + 1)
        centres = (grid[1:] + grid[:-1]) / 2
        for group in GROUPS:
            hists = []
            for lab, name in zip(members, names):
                h = lab.run.histograms.get(f"{WEIGHTS}/{name}")
                if lab.group == group and h is not None and h.steps.size:
                    hists.append((h.edges[-1], h.counts[-1]))
            density = group_density(hists, grid) if hists else None
            if density is not None:
                ax.plot(centres, density, color=GROUP_COLOURS[group], lw=1.4, label=f"{group} ({len(hists)})")
                drawn = True
        ax.set_xlabel("weight")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    if not drawn:
        plt_agg().close(fig)
        return None
    return fig


# -- Figs. 8-10 ----------------------------------------------------------------------------------------------

def strength_pairs(layers: Sequence[LayerInfo], max_pairs: int = 6) -> list[tuple[int, int]]:
    """Which layers to plot against which: every pair when there are few layers with
    nodes (the paper's FC1-FC2, FC1-O/P, FC2-O/P), else consecutive ones.

    >>> fc = lambda n: LayerInfo(n, "linear", "fc", (2, 2))
    >>> strength_pairs([fc("a"), fc("b"), fc("c")])
    [(0, 1), (0, 2), (1, 2)]
    """
    idx = [i for i, layer in enumerate(layers) if layer.has_nodes]
    pairs = [(a, b) for n, a in enumerate(idx) for b in idx[n + 1:]]
    if len(pairs) > max_pairs:
        pairs = list(zip(idx, idx[1:]))[:max_pairs]
    return pairs


def node_strength(members: Sequence[Labelled], metric: str) -> MplFigure | None:
    """Mean node strength of layer A (x) against layer B (y); S+ and S- panels too for conv layers."""
    layers = family_layers(members)
    panels = []
    for a, b in strength_pairs(layers):
        parts = [("mean", "S")]
        if "conv" in (layers[a].kind, layers[b].kind):
            parts += [("pos_mean", "S+"), ("neg_mean", "S-")]
        panels += [(a, b, stat, sym) for stat, sym in parts]
    if not panels:
        return None
    fig, axes = subplot_grid(len(panels), ncols=3)
    norm = norm_of(members)
    c = np.array([lab.value for lab in members])
    for ax, (a, b, stat, sym) in zip(axes, panels):
        def values(i: int) -> np.ndarray:
            return np.array([last(lab.run, f"{STRENGTH}/{lab.run.layers[i].name}/{stat}")
                             if len(lab.run.layers) > i else math.nan for lab in members])

        scatter(ax, values(a), values(b), c, norm)
        ax.set_xlabel(f"{sym} {a + 1}: {layers[a].name}", fontsize=8)
        ax.set_ylabel(f"{sym} {b + 1}: {layers[b].name}", fontsize=8)
        ax.set_title(f"{layers[a].name} vs {layers[b].name} ({sym})", fontsize=9)
    colourbar(fig, axes, norm, f"final {metric}")
    return fig


# -- writing -------------------------------------------------------------------------------------------------

def write_figures(c: Comparison, out: Path) -> list[Figure]:
    """Draw and save every figure for every family; returns what was written.

    Runs a figure had to leave out are added to ``c.problems``.
    """
    plt = plt_agg()
    written: list[Figure] = []
    metric = c.metric_label

    def save(fig: MplFigure | None, name: str, title: str, caption: str, family: str | None, paper: str) -> None:
        if fig is None:
            return
        fig.suptitle(title, fontsize=11)
        path = out / f"{name}.png"
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)
        written.append(Figure(name, path, title, caption, family, paper))

    for family in c.grouping.families:
        members = c.grouping.members(family)
        s = slug(family)
        save(convergence(members, metric), f"convergence-{s}", f"Convergence: {family}",
             f"Loss per step of each run, coloured by its final {metric}.", family, "Fig. 1")
        if family == "unknown":
            continue  # no layer information: the other figures need it
        save(mean_std_layers(members, metric), f"mean-std-layers-{s}", f"Mean vs std per layer: {family}",
             f"Each point is a run: mean and std of a layer's final weights, coloured by final {metric}.",
             family, "Figs. 2-4")
        save(mean_std_roles(members, metric), f"mean-std-roles-{s}", f"Mean vs std per role: {family}",
             "The same with each role's layers pooled.", family, "Figs. 2-4")
        save(kde_layers(members, metric), f"kde-{s}", f"Weight density per group: {family}",
             "Gaussian KDE of each group's final weights, per layer (every run weighs the same).",
             family, "Figs. 5-7")
        save(node_strength(members, metric), f"strength-{s}", f"Node strength between layers: {family}",
             f"Mean node strength of one layer against another's, one point per run, coloured by final {metric}; "
             "S+ / S- are the sums of positive / negative weights.", family, "Figs. 8-10")
        by_arch: dict[str, list[Labelled]] = {}
        for lab in members:
            by_arch.setdefault(lab.run.architecture or "?", []).append(lab)
        for arch, runs in sorted(by_arch.items()):
            if len(runs) < TSNE_MIN_RUNS:
                c.warnings.append(f"{family}: no t-SNE for architecture {arch}: {len(runs)} runs have it, "
                                  f"{TSNE_MIN_RUNS} needed")
                continue
            fig, problems = tsne(runs, metric)
            for p in problems:
                name, _, message = p.partition(": ")
                c.problem(name, message)
            shape = " x ".join("-".join(map(str, layer.shape)) for layer in runs[0].run.layers)
            save(fig, f"tsne-{s}-{slug(arch)}", f"t-SNE of the weights: {family}, architecture {arch}",
                 f"Each point is a run ({len(runs)} runs with layer shapes {shape}): t-SNE of a fixed sample of "
                 f"its final weights, coloured by final {metric}.", family, "Figs. 11-13")
    return written
