"""One weight record of a fixed Keras model on the backend KERAS_BACKEND names; run as a script.

    KERAS_BACKEND=jax python tests/keras_backend_run.py LOG_DIR WEIGHTS.npz [--save]

With ``--save`` the model's freshly initialised weights are written to
WEIGHTS.npz (as ``model.get_weights()`` lists them); without it they are
loaded from there, so every backend records the same weights. Imports no
torch unless the backend is torch.
"""

from __future__ import annotations

import sys

import keras
import numpy as np

from weightwatch.integrations.keras import WeightWatchCallback


def make_model() -> keras.Model:
    """Conv2D -> BatchNorm -> Flatten -> Dense -> LayerNorm -> attention -> Dense: every layout the
    callback converts (conv, dense after a channels-last conv, norms, attention projections)."""
    inp = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dense(8, name="fc")(keras.layers.Flatten()(x))
    x = keras.layers.LayerNormalization(name="ln")(x)
    x = keras.layers.Reshape((2, 4))(x)
    x = keras.layers.MultiHeadAttention(2, 2, name="mha")(x, x)
    out = keras.layers.Dense(5, name="out")(keras.layers.Flatten()(x))
    return keras.Model(inp, out, name="fixed")


def main(log_dir: str, weights: str, save: bool) -> None:
    keras.utils.set_random_seed(0)
    model = make_model()
    if save:
        np.savez(weights, *model.get_weights())
    else:
        stored = np.load(weights)
        model.set_weights([stored[f"arr_{i}"] for i in range(len(stored.files))])
    watch = WeightWatchCallback(log_dir)
    watch.set_model(model)
    watch.on_train_begin()
    watch.on_epoch_end(0, {"loss": 0.25, "val_loss": 0.5})
    watch.on_train_end()
    print(keras.backend.backend(), sorted(m for m in ("torch", "jax", "tensorflow") if m in sys.modules))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--save" in sys.argv[3:])
