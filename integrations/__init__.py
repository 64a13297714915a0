"""Framework integrations, one module each; importing this package imports no framework.

- ``weightwatch.integrations.torch``: ``WeightWatch`` for plain PyTorch loops.
"""
