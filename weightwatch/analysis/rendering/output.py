"""Writing compare's outputs safely: all or nothing per file, never a partial file.

Everything is first written into a hidden staging directory inside ``--out``
(:class:`Staging`); only once every file is complete is each one moved into
place with an atomic rename. An error or Ctrl-C before that removes the
staging directory and leaves ``--out`` as it was; each file in ``--out`` is
always either the old complete one or the new complete one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from weightwatch import interrupts

STAGING_PREFIX = ".weightwatch-staging-"


def check_writable(out: Path) -> None:
    """Make sure ``out`` can be created and written, without creating it: raises OSError
    (``PermissionError``, ``NotADirectoryError``, ...) naming the problem when it cannot.

    The test writes and removes a temporary file in ``out``, or in its nearest existing parent.
    """
    probe_dir = Path(out)
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if probe_dir.exists() and not probe_dir.is_dir():
        raise NotADirectoryError(20, "not a directory", str(probe_dir))
    fd, probe = tempfile.mkstemp(prefix=STAGING_PREFIX, suffix=".probe", dir=probe_dir)
    os.close(fd)
    os.unlink(probe)


class Staging:
    """A staging directory inside ``out``: write into :attr:`dir`, then :meth:`publish`.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> with Staging(out) as stage:
    ...     _ = (stage.dir / "index.html").write_text("<html></html>")
    ...     moved = stage.publish()
    >>> sorted(p.name for p in out.iterdir()), moved[stage.dir / "index.html"] == out / "index.html"
    (['index.html'], True)
    """

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.dir = self.out / f"{STAGING_PREFIX}{os.getpid()}"

    def __enter__(self) -> Staging:
        self.out.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir()
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def publish(self) -> dict[Path, Path]:
        """Move every staged file to the same place under ``out`` (atomic renames, directories
        first created); returns staged path -> final path.

        Raises ``KeyboardInterrupt`` instead, moving nothing, when Ctrl-C was pressed in the
        command line even if its exception was swallowed somewhere (:mod:`weightwatch.interrupts`).
        """
        interrupts.raise_if_interrupted()
        moved = {}
        for path in sorted(p for p in self.dir.rglob("*") if p.is_file()):
            final = self.out / path.relative_to(self.dir)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, final)
            moved[path] = final
        return moved
