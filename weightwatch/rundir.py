"""One run per directory, even when two runs are started into the same ``log_dir`` at once.

A run holds an exclusive lock on ``<run dir>/.weightwatch.lock`` while it is
open. The operating system drops the lock when the run is closed or its
process dies (even by SIGKILL), so a later run (a restart, a resumed
training) writes into the same directory again, next to the earlier event
files, as before. A run that finds the lock taken, by a run still writing,
goes to the first free ``<log_dir>_2``, ``<log_dir>_3``, ... instead, with
one warning: neither run overwrites a file of the other.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import IO

LOCK_FILE = ".weightwatch.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks; directories are not shared
    fcntl = None  # type: ignore[assignment]


def _try_lock(directory: Path) -> IO[bytes] | None:
    """The open, locked lock file of ``directory`` (created with it), or None when another run holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / LOCK_FILE, "ab")  # noqa: SIM115 - held open while the run lives
    if fcntl is None:
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def claim_run_dir(log_dir: str | os.PathLike[str], tries: int = 1000) -> tuple[Path, IO[bytes]]:
    """``(directory, lock)``: ``log_dir``, or the first free ``<log_dir>_<n>`` when a live run holds it.

    Keep ``lock`` open while writing and close it (:func:`release`) at the end.
    Raises the OSError of ``mkdir`` / ``open`` when the directory cannot be made.
    """
    base = Path(log_dir)
    for n in range(1, tries + 1):
        directory = base if n == 1 else base.with_name(f"{base.name}_{n}")
        lock = _try_lock(directory)
        if lock is not None:
            if n > 1:
                warnings.warn(
                    f"weightwatch: another run is writing to {str(base)!r}; this run is written to "
                    f"{str(directory)!r} so that neither overwrites the other. Give each run its own log_dir.",
                    RuntimeWarning, stacklevel=4)
            return directory, lock
    raise FileExistsError(f"weightwatch: {tries} runs are writing next to {str(base)!r}; give this run its own log_dir")


def release(lock: IO[bytes] | None) -> None:
    """Let another run write in the directory (closing the file drops the lock)."""
    if lock is not None and not lock.closed:
        lock.close()
