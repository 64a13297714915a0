"""Find the runs below a directory: every directory holding TensorBoard event files.

A run is any directory below the root (at any depth, the root included) that
holds event files (``*tfevents*``), whatever wrote them. Hidden directories
(the loader's cache among them) and compare's output (a directory holding
:data:`POPULATION_MARKER`) are not runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

#: A directory holding this file is compare's output (figures for TensorBoard), not a run.
POPULATION_MARKER = "weightwatch-population.json"
#: Run info written by the integrations (see :mod:`weightwatch.recorder`).
RUN_INFO_FILE = "weightwatch.json"


def is_event_file(name: str) -> bool:
    return "tfevents" in name and not name.endswith((".tmp", ".lock"))


def find_runs(root: str | os.PathLike[str]) -> list[Path]:
    """Directories below ``root`` (root included) holding event files, sorted.

    Skips hidden directories (the loader's cache among them) and compare's output.
    Below a weightwatch run (a directory holding ``weightwatch.json``) only
    directories that are weightwatch runs themselves count: the ``train/`` and
    ``validation/`` of a keras.callbacks.TensorBoard sharing its log_dir do not.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if RUN_INFO_FILE in filenames:
            dirnames[:] = [d for d in dirnames if os.path.exists(os.path.join(dirpath, d, RUN_INFO_FILE))]
        if POPULATION_MARKER in filenames:
            dirnames[:] = []
            continue
        if any(is_event_file(f) for f in filenames):
            found.append(Path(dirpath))
    return sorted(found)


def run_name(root: Path, run_dir: Path) -> str:
    """The run's directory relative to ``root`` (the root's own name when it is the run)."""
    rel = run_dir.relative_to(root).as_posix()
    return rel if rel != "." else (root.resolve().name or str(root))


def total_bytes(run_dirs: Iterable[Path]) -> int:
    """Bytes of event files in ``run_dirs`` together."""
    total = 0
    for run_dir in run_dirs:
        with os.scandir(run_dir) as it:
            total += sum(e.stat().st_size for e in it if is_event_file(e.name) and e.is_file())
    return total
