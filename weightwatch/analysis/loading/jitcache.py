"""Somewhere numba may cache the compiled decoder, also on a read-only install.

numba caches ``cache=True`` functions in ``__pycache__`` next to their source,
else in a user-wide directory under ``$HOME``; when neither is writable (a
shared or read-only install, another user, ``HOME`` unset) it refuses to
compile at all. :func:`ensure_writable_cache` then points it at a private
directory of this user under the system temp dir, checked to belong to this
user and to nobody else (numba's cache index is a pickle: a directory another
user could write into must never be used).
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path


def _private_dir() -> Path:
    """``<tmp>/weightwatch-numba-<uid>``, created 0700; a fresh one when that name is not ours alone."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = Path(tempfile.gettempdir()) / f"weightwatch-numba-{uid}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o077:
            return path
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="weightwatch-numba-"))


def ensure_writable_cache(source: str) -> None:
    """Before numba compiles the functions of ``source``: give it a cache directory when
    neither the source's ``__pycache__`` nor a user-wide one is writable."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    pycache = Path(source).parent / "__pycache__"
    if os.access(pycache if pycache.is_dir() else pycache.parent, os.W_OK):
        return
    home = Path(os.environ.get("HOME", "/nonexistent"))
    if home.is_dir() and os.access(home, os.W_OK):
        return  # numba's user-wide cache under ~/.cache works
    path = str(_private_dir())
    os.environ["NUMBA_CACHE_DIR"] = path
    if "numba" in sys.modules:  # already imported: its config was read before
        sys.modules["numba"].config.CACHE_DIR = path
