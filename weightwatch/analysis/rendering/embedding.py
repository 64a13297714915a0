"""Figs. 11-13: t-SNE of the runs' weight sketches (:mod:`weightwatch.sketch`), per role and all layers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from weightwatch.sketch import read_sketch
from weightwatch.tags import ALL

from ..comparison.groups import Labelled
from .plots import colourbar, family_layers, norm_of, scatter, subplot_grid

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

#: t-SNE needs a few runs of one architecture.
TSNE_MIN_RUNS = 5


def sketch_matrix(members: Sequence[Labelled]) -> tuple[list[Labelled], dict[str, np.ndarray], list[str]]:
    """The runs' weight sketches (:mod:`weightwatch.sketch`) as rows, per role and ``all``.

    Returns (runs with a sketch, role -> (runs, values) matrix, messages about runs left out).
    """
    kept, rows, problems = [], [], []
    layers = family_layers(members)
    for lab in members:
        try:
            _, values = read_sketch(lab.run.path)
        except FileNotFoundError:
            problems.append(f"{lab.name}: no weight sketch (weightwatch_sketch.npz): left out of the t-SNE")
            continue
        except (ValueError, OSError, KeyError) as exc:
            problems.append(f"{lab.name}: unreadable weight sketch ({exc}): left out of the t-SNE")
            continue
        names = [layer.name for layer in lab.run.layers]
        if [n for n in names if n not in values]:
            problems.append(f"{lab.name}: its sketch lacks some layers: left out of the t-SNE")
            continue
        kept.append(lab)
        rows.append([values[n] for n in names])
    matrices: dict[str, np.ndarray] = {}
    if kept:
        roles = list(dict.fromkeys(layer.role for layer in layers))
        for role in roles:
            cols = [i for i, layer in enumerate(layers) if layer.role == role]
            matrices[role] = np.array([np.concatenate([r[i] for i in cols]) for r in rows], dtype=np.float64)
        matrices[ALL] = np.array([np.concatenate(r) for r in rows], dtype=np.float64)
    return kept, matrices, problems


def embed(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of the rows of ``x`` (n, d): PCA to at most 50 dimensions first, then
    scikit-learn's TSNE (perplexity min(30, (n - 1) / 3), PCA initialisation, 500 iterations)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    n = x.shape[0]
    if x.shape[1] > 50 and n > 2:
        x = PCA(n_components=min(50, n - 1), random_state=seed).fit_transform(x)
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, learning_rate="auto",
                max_iter=500).fit_transform(x)


def tsne(members: Sequence[Labelled], metric: str) -> tuple[MplFigure | None, list[str]]:
    """t-SNE of the weight sketches per role and all layers, for runs of one architecture."""
    kept, matrices, problems = sketch_matrix(members)
    if len(kept) < TSNE_MIN_RUNS:
        return None, problems
    fig, axes = subplot_grid(len(matrices))
    norm = norm_of(kept)
    c = np.array([lab.value for lab in kept])
    for ax, (role, x) in zip(axes, matrices.items()):
        xy = embed(x)
        scatter(ax, xy[:, 0], xy[:, 1], c, norm)
        ax.set_title(f"{role if role != ALL else 'all layers'} ({x.shape[1]} weights per run)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    colourbar(fig, axes, norm, f"final {metric}")
    return fig, problems
