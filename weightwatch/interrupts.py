"""Ctrl-C that cannot be lost: a SIGINT latch for the command line.

CPython turns SIGINT into ``KeyboardInterrupt`` wherever the main thread happens
to be. When that is inside a finaliser, a weakref callback or an import lock's
clean-up (``Exception ignored in: <function _get_module_lock.<locals>.cb>``),
the exception is printed and dropped, and the command would go on and finish as
if nothing had been pressed. :func:`latched` installs a handler that also
records the signal, so the places that make results permanent
(:meth:`weightwatch.analysis.rendering.output.Staging.publish`) and the exit
code can still honour it through :func:`raise_if_interrupted` /
:func:`was_interrupted`.

Only the command line installs it; a Python caller of the analysis keeps its
own SIGINT handling, and then :func:`raise_if_interrupted` does nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_received = threading.Event()


def _record_and_raise(signum: int, frame: object) -> None:
    _received.set()
    raise KeyboardInterrupt


@contextmanager
def latched() -> Iterator[None]:
    """Within the block, SIGINT raises ``KeyboardInterrupt`` as usual and is also remembered.

    The previous handler is restored on exit. Outside the main thread (where Python does
    not allow installing handlers) this does nothing.
    """
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _record_and_raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def was_interrupted() -> bool:
    """Whether SIGINT arrived inside the current :func:`latched` block (even if its
    ``KeyboardInterrupt`` was swallowed on the way)."""
    return _received.is_set()


def raise_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if SIGINT arrived inside the current :func:`latched` block."""
    if _received.is_set():
        raise KeyboardInterrupt
