"""Run a command whose children may outlive it (cluster workers, servers) without ever hanging the suite.

``subprocess.run(capture_output=True, timeout=...)`` kills only the direct child on a
timeout and then waits for its pipes to close, which never happens while a grandchild
(a Dask nanny, a Ray raylet) still holds them. Here the command runs in a session of its
own with its output in files: on a timeout the whole process group is killed and the
test fails with the tail of what it printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile

import pytest


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run(cmd: list[str], *, timeout: float) -> subprocess.CompletedProcess:
    """``cmd`` to completion within ``timeout`` seconds; stdout and stderr as text.

    Whatever the command started and left behind in its process group is killed
    too, after a normal exit as well as on a timeout.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_group(proc)  # also the leftovers of a command that exited
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if timed_out:
        pytest.fail(f"{' '.join(cmd[:6])} ... did not finish within {timeout} s; it printed:\n"
                    f"{stdout[-2000:]}\n--- stderr ---\n{stderr[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
