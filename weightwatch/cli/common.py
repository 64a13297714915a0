"""What the subcommands share: exit codes, one-line errors, option types, the loader's options."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import NoReturn

#: Done (problems with single runs are reported, not fatal).
EXIT_OK = 0
#: Nothing useful found: no runs, no readable run, no run with the metric, nothing to fit or classify.
EXIT_NOTHING = 1
#: Bad arguments or unusable input: an option value, a missing path, an unreadable reference, an unwritable output.
EXIT_USAGE = 2
#: Interrupted (Ctrl-C): the shell's convention, 128 + SIGINT.
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """argparse with errors in one line (no usage block) and exit code :data:`EXIT_USAGE`."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def fail(command: str, message: str, code: int) -> int:
    """Print ``weightwatch COMMAND: MESSAGE`` on stderr; returns ``code``."""
    print(f"weightwatch {command}: {message}", file=sys.stderr)
    return code


def finite_float(text: str) -> float:
    """A finite number (NaN and infinities refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def local_file(text: str) -> Path:
    """A path on this machine: the reports and references are written and read locally (an
    fsspec URL is refused here, where ``Path`` would quietly make a folder named ``s3:``)."""
    from weightwatch.storage import protocol

    if protocol(text) is not None:
        raise argparse.ArgumentTypeError(f"{text!r} is a URL; this option takes a path on this machine (runs may be "
                                         "URLs, the output is written locally: copy it up afterwards)")
    return Path(text)


def add_load_options(p: argparse.ArgumentParser) -> None:
    """``--no-cache``, ``--workers`` and ``--engine``, for every command that loads runs."""
    p.add_argument("--no-cache", action="store_true",
                   help="parse every event file again and write no cache (the cache lives in the user cache "
                        "directory, or $WEIGHTWATCH_CACHE_DIR; never in the runs' folders)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="loader processes, or threads for runs on remote storage (default: one per CPU; 16 "
                        "threads remote); with --engine ray/dask, the workers of the local cluster it starts")
    p.add_argument("--engine", choices=("local", "ray", "dask"), default="local",
                   help="where runs are loaded: this machine (default), or the workers of a Ray cluster "
                        "(RAY_ADDRESS) or Dask cluster (DASK_SCHEDULER_ADDRESS); with neither set, a local "
                        "cluster of --workers is started. The output is the same")


def expand_paths(command: str, paths: list[str], json_errors: bool = False) -> tuple[list | None, int | None]:
    """``(roots, None)`` for the PATH arguments (directories, URLs, glob patterns), or ``(None, exit code)``
    after saying in one line why they cannot be used (missing, an unknown or uninstalled file system, no
    access to the bucket); with ``json_errors`` also as ``{"error": ...}`` on stdout."""
    from weightwatch.analysis import expand_roots

    try:
        return expand_roots(paths), None
    except (OSError, ImportError, ValueError) as exc:
        if json_errors:
            print(json.dumps({"error": str(exc)}, indent=1))
        return None, fail(command, str(exc), EXIT_USAGE)


def writable_dir(command: str, option: str, path: Path) -> int | None:
    """None when files can be written in ``path`` (created if needed), else the exit code after
    saying why in one line."""
    from weightwatch.analysis import check_writable

    try:
        check_writable(path)
    except OSError as exc:
        return fail(command, f"cannot write to {option} {str(path)!r}: {exc.strerror or exc}", EXIT_USAGE)
    return None
