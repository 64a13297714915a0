"""The Keras share of the DNN population: the same 784-h-h-10 network trained by ``model.fit``.

Logged by ``weightwatch.integrations.keras.WeightWatchCallback`` (on the torch
backend unless ``KERAS_BACKEND`` says otherwise), one run at a time: Dense
kernels N(0, init_std^2) (``RandomNormal``), zero biases, Adam 1e-3 (Keras's
epsilon, 1e-7, where PyTorch's is 1e-8), batch 100, Keras's own shuffling
seeded from the run's seed. ``fit`` reports the same metrics under the same
names as the PyTorch runs (``loss``, ``accuracy``: running means over the
epoch; ``val_loss``, ``val_accuracy``: the held-out images), at step = epoch
index.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .data import Images
from .populations import Config


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    return keras


def build_keras_dnn(width: int, init_std: float, n_out: int = 10):
    keras = _keras()
    init = keras.initializers.RandomNormal(stddev=init_std)
    return keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Flatten(),
        keras.layers.Dense(width, activation="relu", kernel_initializer=init),
        keras.layers.Dense(width, activation="relu", kernel_initializer=init),
        keras.layers.Dense(n_out, kernel_initializer=init),
    ])


def train_keras(configs: Sequence[Config], data: Images, out: Path, epochs: int, run_dir: Callable,
                say: Callable[[str], None] = print) -> float:
    """Train the Keras configs one by one; returns the seconds spent."""
    if not configs:
        return 0.0
    keras = _keras()
    from weightwatch.integrations.keras import WeightWatchCallback

    # Keras wants channels last: (n, 28, 28, 1)
    x_train = data.x_train.permute(0, 2, 3, 1).numpy()
    x_test = data.x_test.permute(0, 2, 3, 1).numpy()
    y_train, y_test = data.y_train.numpy(), data.y_test.numpy()
    n_out = int(y_train.max()) + 1
    t0 = time.perf_counter()
    for c in configs:
        keras.utils.set_random_seed(c.seed)
        model = build_keras_dnn(c.width, c.init_std, n_out)
        model.compile(optimizer=keras.optimizers.Adam(c.lr),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        model.fit(x_train, y_train, batch_size=c.batch, epochs=epochs, validation_data=(x_test, y_test),
                  shuffle=True, verbose=0, callbacks=[WeightWatchCallback(run_dir(out, c), hparams=c.hparams(epochs))])
    seconds = time.perf_counter() - t0
    say(f"  dnn: trained {len(configs):4d} runs with Keras ({keras.backend.backend()} backend, {seconds:.0f} s)")
    return seconds
