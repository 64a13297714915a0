"""A run directory's files as the loader reads them: local (``os``) or remote (fsspec, ranged reads).

Both kinds answer the same four questions: the cache key of the run, its event
files with their size and version, a byte range of one of them, and a small
file whole (``weightwatch.json``). A remote run comes with the listing its
discovery made (one ``find`` per root, not a request per file), so loading it
costs one ranged GET per event file that changed, and nothing for one that
did not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from weightwatch.storage import RemoteDir, _remote, filesystem

from .cache import cache_key


def is_event_file(name: str) -> bool:
    """Whether a file of that name is a TensorBoard event file (not a writer's temporary or lock file)."""
    return "tfevents" in name and not name.endswith((".tmp", ".lock"))


@dataclass(frozen=True)
class Entry:
    """One file of a run: name, size in bytes, modification time (ns) and, on object
    storage, the object's version tag (its ETag): what tells a cached parse is still whole."""

    name: str
    size: int
    mtime_ns: int
    version: str = ""


def remote_entry(name: str, info: dict[str, Any]) -> Entry:
    """An :class:`Entry` from an fsspec ``info`` dict (the keys differ per file system)."""
    stamp = next((info[k] for k in ("LastModified", "mtime", "updated", "last_modified", "created")
                  if info.get(k) is not None), 0)
    if isinstance(stamp, str):
        stamp = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    seconds = stamp.timestamp() if isinstance(stamp, datetime) else float(stamp)
    version = next((str(info[k]) for k in ("ETag", "etag", "md5Hash", "generation", "version_id")
                    if info.get(k)), "")
    return Entry(name, int(info.get("size") or 0), int(seconds * 1e9), version.strip('"'))


class LocalRun:
    """A run directory on this machine."""

    def __init__(self, path: Path) -> None:
        self.location = Path(path)

    @property
    def key(self) -> str:
        return cache_key(self.location)

    def event_files(self) -> list[str]:
        """The event files' names, sorted (their creation order). Raises OSError when unlistable."""
        return sorted(f for f in os.listdir(self.location) if is_event_file(f) and (self.location / f).is_file())

    def stat(self, name: str) -> Entry:
        st = (self.location / name).stat()
        return Entry(name, st.st_size, st.st_mtime_ns)

    def read(self, name: str, start: int, length: int) -> bytes:
        with open(self.location / name, "rb") as fh:
            fh.seek(start)
            return fh.read(length)

    def read_small(self, name: str, limit: int) -> bytes | None:
        """Up to ``limit`` bytes of ``name``; None when there is no such file (a dangling link is an OSError)."""
        path = self.location / name
        if not path.exists() and not path.is_symlink():
            return None
        with open(path, "rb") as fh:
            return fh.read(limit)


class RemoteRun:
    """A run directory on a remote file system, with the listing its discovery made (or one of its own)."""

    def __init__(self, url: RemoteDir, entries: dict[str, Entry] | None = None) -> None:
        self.location = url
        self._fs, self._path = filesystem(url.url)
        self._path = self._path.rstrip("/")
        self._entries = entries

    @property
    def key(self) -> str:
        return self.location.url

    def _listing(self) -> dict[str, Entry]:
        if self._entries is None:
            infos = _remote(lambda: self._fs.ls(self._path, detail=True), str(self.location))
            self._entries = {info["name"].rstrip("/").rsplit("/", 1)[-1]: remote_entry(
                info["name"].rstrip("/").rsplit("/", 1)[-1], info) for info in infos if info.get("type") != "directory"}
        return self._entries

    def event_files(self) -> list[str]:
        return sorted(name for name in self._listing() if is_event_file(name))

    def stat(self, name: str) -> Entry:
        try:
            return self._listing()[name]
        except KeyError:
            raise FileNotFoundError(2, "no such object", f"{self.location}/{name}") from None

    def read(self, name: str, start: int, length: int) -> bytes:
        size = self.stat(name).size  # an object replaced since the listing is read as listed, up to its size
        end = min(start + length, size)
        if end <= start:
            return b""
        return _remote(lambda: self._fs.cat_file(f"{self._path}/{name}", start=start, end=end),
                       f"{self.location}/{name}")

    def read_small(self, name: str, limit: int) -> bytes | None:
        if name not in self._listing():
            return None
        return self.read(name, 0, limit)


RunFiles = LocalRun | RemoteRun


def run_files(where: Path | RemoteDir, entries: dict[str, Entry] | None = None) -> RunFiles:
    return RemoteRun(where, entries) if isinstance(where, RemoteDir) else LocalRun(where)
