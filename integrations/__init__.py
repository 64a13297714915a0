"""Framework integrations, one module each; importing this package imports no framework.

- ``weightwatch.integrations.torch``: ``WeightWatch`` for plain PyTorch loops.
- ``weightwatch.integrations.keras``: ``WeightWatchCallback`` for Keras 3 ``model.fit`` (any backend).
- ``weightwatch.integrations.lightning``: ``WeightWatchCallback`` for PyTorch Lightning's ``Trainer``.
- ``weightwatch.integrations.hf``: ``WeightWatchCallback`` for Hugging Face transformers' ``Trainer``.
- ``weightwatch.integrations.options``: ``WatchOptions``, the options all four callbacks above take.
- ``weightwatch.integrations.optuna``: ``WeightWatchPruner`` (prune trials a reference judges hopeless).
- ``weightwatch.integrations.ray``: ``WeightWatchStopper`` for Ray Tune (the same rule).

All record the same statistics under the same tags (docs/integrations.md).
"""
