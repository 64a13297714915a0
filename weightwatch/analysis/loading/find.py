"""Find the runs below one or several directories: every directory holding TensorBoard event files.

A run is any directory below a root (at any depth, the root included) that
holds event files (``*tfevents*``), whatever wrote them. Symbolic links are
followed (the usual way to pick a subset of runs), each real directory once:
a link back to a directory already walked (a loop, or a second link to the
same run) is not walked again. Hidden directories and compare's output (a
directory holding :data:`POPULATION_MARKER`) are not runs. Below a weightwatch
run (a directory holding :data:`RUN_INFO_FILE`) only directories that are
weightwatch runs themselves count: the ``train/`` and ``validation/`` of a
``keras.callbacks.TensorBoard`` sharing its log_dir do not.

Roots may be glob patterns (``runs/lr=*``); a path that exists is taken
literally even when it holds ``*``, ``?`` or ``[``. A root may be an fsspec URL
(``s3://bucket/runs``, ``gs://...``, a glob of them too): the same rules apply
to one listing of everything below it (see :mod:`weightwatch.storage`).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from weightwatch.storage import RemoteDir, is_remote, location

from .files import Entry, is_event_file, remote_entry

#: A directory holding this file is compare's output (figures for TensorBoard), not a run.
POPULATION_MARKER = "weightwatch-population.json"
#: Run info written by the integrations (see :mod:`weightwatch.recorder`).
RUN_INFO_FILE = "weightwatch.json"

PathLike = str | os.PathLike[str]
Where = Path | RemoteDir

__all__ = ["Found", "POPULATION_MARKER", "RUN_INFO_FILE", "discover", "expand_roots", "find_runs", "is_event_file",
           "printable", "run_name", "total_bytes"]


def expand_roots(patterns: PathLike | Sequence[PathLike]) -> list[Where]:
    """The directories named by ``patterns`` (paths or glob patterns), in the order given.

    Raises FileNotFoundError naming the first pattern that matches no directory.

    >>> expand_roots([".", "./*.no-such-thing"])
    Traceback (most recent call last):
    ...
    FileNotFoundError: './*.no-such-thing' matches no directory
    """
    items = [patterns] if isinstance(patterns, (str, os.PathLike, RemoteDir)) else list(patterns)
    roots: list[Where] = []
    for item in items:
        if is_remote(item):
            roots += _expand_remote(location(item))
            continue
        text = os.fspath(item)
        if os.path.isdir(text):
            roots.append(Path(text))
            continue
        matches = sorted(m for m in glob.glob(text) if os.path.isdir(m)) if glob.has_magic(text) else []
        if not matches:
            kind = "matches no directory" if glob.has_magic(text) else (
                "is not a directory" if os.path.exists(text) else "does not exist")
            raise FileNotFoundError(f"{text!r} {kind}")
        roots += [Path(m) for m in matches]
    return roots


def _expand_remote(root: RemoteDir) -> list[RemoteDir]:
    fs, path = root.fs()
    fs.invalidate_cache()
    if glob.has_magic(path) and not fs.isdir(path):
        matches = sorted(p for p, info in fs.glob(path, detail=True).items()
                         if info.get("type") == "directory" and not p.rstrip("/").rsplit("/", 1)[-1].startswith("."))
        if not matches:
            raise FileNotFoundError(f"{root.url!r} matches no directory")
        return [RemoteDir(fs.unstrip_protocol(m)) for m in matches]
    if not fs.isdir(path):
        raise FileNotFoundError(f"{root.url!r} {'is not a directory' if fs.exists(path) else 'does not exist'}")
    return [root]


@dataclass
class Found:
    """What :func:`discover` found: (name, directory) per run, sorted by name, the
    directories that could not be listed (permission denied, ...), and for runs on
    remote storage the listing of their files (URL -> name -> :class:`Entry`)."""

    runs: list[tuple[str, Where]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    listings: dict[str, dict[str, Entry]] = field(default_factory=dict)


def _walk(root: Path, seen: set[tuple[int, int]], problems: list[str]) -> list[Path]:
    """Run directories below ``root``, following links; ``seen`` holds the (device, inode)
    of every directory walked so far (shared over roots: each real directory is walked once)."""
    found = []

    def unreadable(exc: OSError) -> None:
        problems.append(f"cannot list {exc.filename!r}: {exc.strerror or exc}")

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unreadable):
        try:
            st = os.stat(dirpath)
        except OSError as exc:
            unreadable(exc)
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:  # a loop, or a second way to the same directory
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if RUN_INFO_FILE in filenames:
            dirnames[:] = [d for d in dirnames if os.path.exists(os.path.join(dirpath, d, RUN_INFO_FILE))]
        if POPULATION_MARKER in filenames:
            dirnames[:] = []
            continue
        if any(is_event_file(f) for f in filenames):
            found.append(Path(dirpath))
    return found


def _walk_remote(root: RemoteDir, listings: dict[str, dict[str, Entry]]) -> list[RemoteDir]:
    """Run directories below ``root`` on its file system, from one recursive listing, by the
    rules of :func:`_walk` (there are no links on object storage)."""
    fs, base = root.fs()
    base = base.rstrip("/")
    fs.invalidate_cache(base)  # a listing cached by an earlier call would miss what was written since
    files: dict[str, dict[str, Entry]] = {}  # directory relative to root ("" for root) -> files
    for path, info in fs.find(base, withdirs=False, detail=True).items():
        rel = path[len(base):].strip("/")
        folder, _, name = rel.rpartition("/")
        files.setdefault(folder, {})[name] = remote_entry(name, info)
    found = []
    for folder in sorted(files):
        parts = folder.split("/") if folder else []
        ancestors = ["/".join(parts[:i]) for i in range(len(parts))]
        if any(p.startswith(".") for p in parts) or any(POPULATION_MARKER in files.get(a, {}) for a in ancestors):
            continue
        if any(RUN_INFO_FILE in files.get(a, {}) and RUN_INFO_FILE not in files.get("/".join(parts[:i + 1]), {})
               for i, a in enumerate(ancestors)):
            continue  # below a weightwatch run, only weightwatch runs count
        if POPULATION_MARKER in files[folder] or not any(is_event_file(n) for n in files[folder]):
            continue
        run = root / folder if folder else root
        listings[run.url] = files[folder]
        found.append(run)
    return found


def discover(roots: PathLike | Sequence[PathLike]) -> Found:
    """Every run below ``roots`` (see the module doc), named by :func:`run_name`.

    Raises FileNotFoundError when a root does not exist or a pattern matches nothing.
    """
    dirs = expand_roots(roots)
    out = Found()
    seen: set[tuple[int, int]] = set()
    several = len(dirs) > 1
    for root in dirs:
        runs = _walk_remote(root, out.listings) if isinstance(root, RemoteDir) else _walk(root, seen, out.problems)
        for run_dir in runs:
            out.runs.append((run_name(root, run_dir, prefix=several), run_dir))
    out.runs.sort(key=lambda item: item[0])
    return out


def find_runs(root: PathLike | Sequence[PathLike]) -> list[Where]:
    """Directories below ``root`` (one or several, root included) holding event files, sorted by name."""
    return [path for _, path in discover(root).runs]


def run_name(root: Where, run_dir: Where, prefix: bool = False) -> str:
    """The run's directory relative to ``root`` (the root's own name when it is the run); with
    ``prefix`` (several roots), the root as written joined with that (the root itself when it is the run)."""
    if isinstance(root, RemoteDir):
        rel = run_dir.url[len(root.url):].strip("/") or "."
        if prefix:
            return root.url if rel == "." else f"{root.url}/{rel}"
        return rel if rel != "." else root.name
    rel = run_dir.relative_to(root).as_posix()
    if prefix:
        return root.as_posix() if rel == "." else f"{root.as_posix()}/{rel}"
    return rel if rel != "." else (root.resolve().name or str(root))


def printable(text: str) -> str:
    """``text`` for one line of a terminal: control characters (tab, newline, ...) escaped.

    >>> printable("seed 1\\tlr=0.1\\nb")
    'seed 1\\\\tlr=0.1\\\\nb'
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def total_bytes(run_dirs: Iterable[Where], listings: dict[str, dict[str, Entry]] | None = None) -> int:
    """Bytes of event files in ``run_dirs`` together (remote ones from ``listings``)."""
    total = 0
    for run_dir in run_dirs:
        if isinstance(run_dir, RemoteDir):
            total += sum(e.size for n, e in (listings or {}).get(run_dir.url, {}).items() if is_event_file(n))
            continue
        try:
            with os.scandir(run_dir) as it:
                total += sum(e.stat().st_size for e in it if is_event_file(e.name) and e.is_file())
        except OSError:
            pass  # reported when the run is loaded
    return total
