"""Slow, obviously correct numpy versions of every statistic, for the tests.

Written from ../shared/reference/metrics.md, independently of weightwatch's
fused kernels: plain loops and numpy calls on float64 copies.
"""

from __future__ import annotations

import numpy as np


def weight_stats(w: np.ndarray) -> dict[str, float]:
    x = np.asarray(w, dtype=np.float64).reshape(-1)
    finite = x[np.isfinite(x)]
    mu = finite.sum() / finite.size
    return {
        "mean": mu,
        "std": np.sqrt(((finite - mu) ** 2).sum() / finite.size),  # population std, ddof 0
        "min": finite.min(),
        "max": finite.max(),
        "l2": np.sqrt((finite ** 2).sum()),
        "nonfinite": float(x.size - finite.size),
    }


def histogram(w: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of the finite values of ``w`` in the bins given by ``edges``."""
    x = np.asarray(w, dtype=np.float64).reshape(-1)
    return np.histogram(x[np.isfinite(x)], bins=np.asarray(edges, dtype=np.float64))[0]


def in_strength(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S, S+, S-) per node by explicit loops: a node is w[j] (a row, or a conv kernel)."""
    w = np.asarray(w, dtype=np.float64)
    s, sp, sn = (np.zeros(w.shape[0]) for _ in range(3))
    for j in range(w.shape[0]):
        for v in w[j].reshape(-1):
            s[j] += abs(v)
            sp[j] += max(v, 0.0)
            sn[j] += min(v, 0.0)
    return s, sp, sn


def cnt_units(w_prev: np.ndarray, b_prev: np.ndarray | None, w_next: np.ndarray | None) -> np.ndarray:
    """La Malfa et al.'s signed strength of every unit between w_prev and w_next, shape (nodes, P).

    s_i = sum_k W_prev[i, k] + b_prev[i] + sum_j W_next[j, i]; for convolutions
    the in-sum runs over the whole kernel (the same at every position), and a
    linear layer after a flatten reads position p of channel i at column
    i*P + p (P = its inputs / the channels): each position is its own unit.
    """
    w_prev = np.asarray(w_prev, dtype=np.float64)
    n = w_prev.shape[0]
    per = 1 if w_next is None else np.asarray(w_next).shape[1] // n
    s = np.zeros((n, per))
    for i in range(n):
        for p in range(per):
            s[i, p] = w_prev[i].sum() + (float(b_prev[i]) if b_prev is not None else 0.0)
            if w_next is not None:
                s[i, p] += np.asarray(w_next, dtype=np.float64)[:, i * per + p].sum()
    return s


def cnt_strength(w_prev: np.ndarray, b_prev: np.ndarray | None, w_next: np.ndarray | None) -> np.ndarray:
    """Per node: the mean over its positions of :func:`cnt_units` (one position for a linear layer)."""
    return cnt_units(w_prev, b_prev, w_next).mean(axis=1)


def on_simulated_ranks(ranks: int, work):
    """``[work(r, all_reduce) for r in range(ranks)]``, each rank on its own thread, sharing one
    ``all_reduce(vector, op)`` (``"sum"`` or ``"min"``) as weightwatch.distributed expects it."""
    import threading

    barrier, inbox, results = threading.Barrier(ranks), [None] * ranks, [None] * ranks

    def rank(r):
        def all_reduce(vector, op):
            inbox[r] = vector
            barrier.wait()
            out = np.sum(inbox, axis=0) if op == "sum" else np.min(inbox, axis=0)
            barrier.wait()
            return out
        results[r] = work(r, all_reduce)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(ranks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results
