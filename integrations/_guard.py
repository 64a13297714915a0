"""A monitoring tool is a guest in someone else's training loop: once a callback is made, its
errors become one warning each and training goes on (``strict=True`` raises them instead).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Hashable

__all__ = ["Guard", "WeightWatchWarning", "strict_default"]

#: Set to 1 to make every callback strict unless told otherwise (the test suite does).
STRICT_ENV = "WEIGHTWATCH_STRICT"


class WeightWatchWarning(RuntimeWarning):
    """Something weightwatch could not log; the message names what and what to do."""


def strict_default() -> bool:
    """``strict`` when a callback is not given one: ``$WEIGHTWATCH_STRICT`` set to 1 / true / yes."""
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes")


class Guard:
    """Turns the errors of one run into warnings, each said once.

    Args:
        strict: raise instead of warning.
    """

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self._said: set[Hashable] = set()

    def warn(self, key: Hashable, message: str) -> None:
        """Warn ``message`` the first time ``key`` comes up (raise it as an error when strict)."""
        if self.strict:
            raise RuntimeError(f"weightwatch: {message}")
        if key not in self._said:
            self._said.add(key)
            warnings.warn(f"weightwatch: {message}", WeightWatchWarning, stacklevel=4)

    def notice(self, key: Hashable, message: str) -> None:
        """Say ``message`` once under ``key``: news about the run, not an error (never raised, even strict)."""
        if key not in self._said:
            self._said.add(key)
            warnings.warn(f"weightwatch: {message}", WeightWatchWarning, stacklevel=4)

    def failed(self, key: Hashable, exc: BaseException, what: str, todo: str) -> None:
        """``what`` failed with ``exc``: re-raise when strict, else warn once under ``key``."""
        if self.strict:
            raise exc
        self.warn(key, f"{what}: {type(exc).__name__}: {exc}. {todo}")

    def said(self, key: Hashable) -> bool:
        return key in self._said
