"""Where runs live: local directories, or object storage and other file systems named by an fsspec URL.

A ``log_dir`` (or a root given to ``weightwatch compare``) that starts with
``<protocol>://`` (``s3://``, ``gs://``, ``az://``, ``abfs://``, ``hdfs://``,
``memory://``, ...) is opened with `fsspec <https://filesystem-spec.readthedocs.io>`_;
anything else (``file://`` included) is a local path. The file system
packages are optional: ``pip install 'weightwatch[s3]'`` (``gcs``, ``azure``)
installs the one a protocol needs, and a missing one is named in the error.

Object stores cannot append to an object, rename one atomically or hold a
lock, so a run there is written as complete objects (see
:class:`weightwatch.events.ObjectEventWriter`): every upload replaces an
object whole, and a reader sees either the previous version or the new one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: protocol -> (package that implements it, weightwatch extra that installs it)
PACKAGES = {
    "s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", "azure"), "abfs": ("adlfs", "azure"), "abfss": ("adlfs", "azure"),
    "hdfs": ("pyarrow", None),  # no extra of ours: pip install pyarrow
}


def protocol(path: str | os.PathLike[str]) -> str | None:
    """The URL protocol of ``path`` (``"s3"``), or None for a local path (``file://`` URLs included).

    >>> protocol("s3://bucket/runs"), protocol("runs/exp1"), protocol("file:///tmp/runs")
    ('s3', None, None)
    """
    if isinstance(path, RemoteDir):
        return path.protocol
    match = _URL.match(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else None
    if match is None or match.group(1).lower() == "file":
        return None
    return match.group(1).lower()


def is_remote(path: Any) -> bool:
    return isinstance(path, RemoteDir) or protocol(path) is not None


def local_path(path: str | os.PathLike[str]) -> Path:
    """A local path; ``file://`` stripped.

    >>> local_path("file:///tmp/runs").as_posix(), local_path("runs").as_posix()
    ('/tmp/runs', 'runs')
    """
    text = os.fspath(path)
    return Path(text[len("file://"):] if text.lower().startswith("file://") else text)


def filesystem(url: str) -> tuple[Any, str]:
    """``(fsspec file system, path on it)`` for ``url``.

    Raises ImportError naming the extra to install when the protocol's package
    is missing, ValueError for a protocol fsspec does not know.
    """
    proto = protocol(url) or "file"
    package, extra = PACKAGES.get(proto, (None, None))
    try:
        import fsspec
    except ImportError as exc:
        raise ImportError(f"{url!r} is on a remote file system, which needs fsspec: "
                          f"pip install 'weightwatch[{extra or 's3'}]'") from exc
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        hint = f"pip install 'weightwatch[{extra}]'" if extra else f"pip install {package or 'the fsspec package for ' + proto + '://'}"
        raise ImportError(f"{url!r}: the {proto}:// file system needs {package or 'a package'} "
                          f"that is not installed; {hint}") from exc
    except ValueError as exc:
        raise ValueError(f"{url!r}: fsspec knows no file system for {proto}:// ({exc})") from exc
    return fs, path


@dataclass(frozen=True)
class RemoteDir:
    """A directory on a remote file system, named by its URL (no trailing slash).

    >>> d = RemoteDir("s3://bucket/runs/exp1/")
    >>> str(d), d.name, str(d.parent), str(d / "seed0"), str(d.with_name("exp2"))
    ('s3://bucket/runs/exp1', 'exp1', 's3://bucket/runs', 's3://bucket/runs/exp1/seed0', 's3://bucket/runs/exp2')
    """

    url: str

    def __post_init__(self) -> None:
        stripped = self.url.rstrip("/")
        if stripped.endswith(":"):  # "memory://": the root keeps its two slashes
            stripped += "//"
        object.__setattr__(self, "url", stripped)

    def __str__(self) -> str:
        return self.url

    def __truediv__(self, name: str) -> RemoteDir:
        return RemoteDir(f"{self.url.rstrip('/')}/{name}")

    @property
    def protocol(self) -> str:
        return protocol(self.url) or "file"

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> RemoteDir:
        return RemoteDir(self.url.rstrip("/").rsplit("/", 1)[0])

    def with_name(self, name: str) -> RemoteDir:
        return self.parent / name

    def as_posix(self) -> str:
        return self.url

    def fs(self) -> tuple[Any, str]:
        """``(file system, path)`` of this directory (see :func:`filesystem`)."""
        return filesystem(self.url)


Location = Path | RemoteDir


def location(path: str | os.PathLike[str] | RemoteDir) -> Location:
    """A :class:`RemoteDir` for a URL, a :class:`~pathlib.Path` for anything else."""
    if isinstance(path, RemoteDir):
        return path
    return RemoteDir(os.fspath(path)) if is_remote(path) else local_path(path)


def write_whole(directory: Location, name: str, data: bytes) -> None:
    """Write ``directory/name`` so that readers see the old file or the new one, never part of one.

    Locally: a temporary file of this process renamed over it (the directory
    must exist: a deleted run directory is the event writer's to make again).
    Remotely: one upload of the whole object.
    """
    if isinstance(directory, RemoteDir):
        fs, path = directory.fs()
        _remote(lambda: fs.pipe_file(f"{path.rstrip('/')}/{name}", data), f"{directory}/{name}")
        return
    target = directory / name
    tmp = target.with_name(f"{name}.{os.getpid()}.tmp")  # one writer's own temporary file
    tmp.write_bytes(data)
    tmp.replace(target)


def read_whole(directory: Location, name: str) -> bytes:
    """The bytes of ``directory/name``; FileNotFoundError when it does not exist."""
    if isinstance(directory, RemoteDir):
        fs, path = directory.fs()
        return _remote(lambda: fs.cat_file(f"{path.rstrip('/')}/{name}"), f"{directory}/{name}")
    return (directory / name).read_bytes()


def _remote(call, where: str):
    """Run ``call``; a failure that is not already an OSError becomes one naming ``where``
    (the callbacks report OSErrors as "cannot write", and keep what they hold for the next try)."""
    try:
        return call()
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore, aiohttp, ...: the file system's own errors
        raise OSError(f"{where}: {type(exc).__name__}: {exc}") from exc
