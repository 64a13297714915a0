"""How numbers are shown in every output (terminal, HTML, TensorBoard text).

>>> format_p(0.0004), format_p(0.0431), number(float("nan"))
('<0.001', '0.043', '-')
"""

from __future__ import annotations

import math


def number(x: float) -> str:
    """Three decimals, "-" for a missing value (None or NaN)."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def format_p(p: float) -> str:
    """A p-value for people: 3 decimals, or "<0.001"."""
    return "<0.001" if p < 0.001 else number(p)


def format_boundaries(cuts: tuple[float, ...]) -> str:
    """A family's group boundaries in words.

    >>> format_boundaries((0.5, 0.9)), format_boundaries((0.918,))
    ('low|mid 0.500, mid|high 0.900', 'low|high 0.918')
    """
    names = ("low|high",) if len(cuts) == 1 else ("low|mid", "mid|high")
    return ", ".join(f"{name} {x:.3f}" for name, x in zip(names, cuts))
