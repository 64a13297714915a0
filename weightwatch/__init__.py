"""weightwatch: watch the learnable parameters of neural networks while they train.

The core never imports a deep-learning framework. Integrations live in
``weightwatch.integrations.<framework>`` (torch, keras, lightning, hf).
"""

from __future__ import annotations

__version__ = "0.1.0"

from .layers import ROLES, LayerInfo, LayerTensors  # noqa: E402
from .recorder import Recorder  # noqa: E402

__all__ = ["ROLES", "LayerInfo", "LayerTensors", "Recorder", "__version__"]
