"""The Keras conventions the Keras callback follows, kept apart from layer discovery.

- ``update_freq`` as ``keras.callbacks.TensorBoard`` takes it;
- one writer when a JAX program runs as several processes (``jax.distributed``,
  as ``keras.distribution`` uses across hosts).

Imports no framework at module level: jax only when the backend is jax.
"""

from __future__ import annotations

from .options import check_every


def update_frequency(update_freq: str | int, every_n_batches: int | None = None) -> int | None:
    """``update_freq`` ("epoch", "batch" or N training batches) as None (per epoch) or N;
    ``every_n_batches`` is its older name.

    >>> [update_frequency(f) for f in ("epoch", "batch", 50)]
    [None, 1, 50]
    """
    if every_n_batches is not None:
        if update_freq != "epoch":
            raise ValueError("give update_freq or every_n_batches (its older name), not both")
        return check_every(every_n_batches, "every_n_batches")
    if update_freq in ("epoch", "batch"):
        return None if update_freq == "epoch" else 1
    if isinstance(update_freq, str):
        raise ValueError(f'update_freq must be "epoch", "batch" or a positive integer, got {update_freq!r}')
    return check_every(update_freq, "update_freq")


def is_first_process(backend: str) -> bool:
    """False on every process but process 0 of a multi-process JAX run; True otherwise."""
    if backend != "jax":
        return True
    import jax

    return jax.process_index() == 0
