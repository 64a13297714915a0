"""A real S3-compatible server for the tests: moto's standalone server, a separate HTTP process.

``s3_server()`` starts ``python -m moto.server`` on a free port and sets the
environment every S3 client here reads (botocore / s3fs: ``AWS_ENDPOINT_URL``;
TensorBoard's own S3 reader: ``S3_ENDPOINT``; dummy credentials), so
``s3://`` URLs in this process and its children go to that server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from browser import free_port

ENV_NAMES = ("AWS_ENDPOINT_URL", "S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
             "AWS_EC2_METADATA_DISABLED")


@contextmanager
def s3_server() -> Iterator[str]:
    """Yields the endpoint URL of a running moto server; the S3 environment points at it meanwhile."""
    port = free_port()
    # its request log goes to a file: a pipe nobody reads fills after a few hundred requests and
    # then blocks the server in the middle of one (every client after it times out)
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    saved = {name: os.environ.get(name) for name in ENV_NAMES}
    os.environ.update(AWS_ENDPOINT_URL=endpoint, S3_ENDPOINT=endpoint, AWS_ACCESS_KEY_ID="testing",
                      AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                      AWS_EC2_METADATA_DISABLED="true")
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.time() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"moto server did not come up: {log.read().decode()[-2000:]}")
                time.sleep(0.2)
        yield endpoint
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a server stuck in a request: do not leave it behind
            proc.kill()
            proc.wait(timeout=30)
        log.close()


def s3fs_client():
    """A fresh s3fs file system (no instance or listing cache shared with the code under test)."""
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)


def upload(fs, local_root, prefix: str) -> None:
    """Copy every file below ``local_root`` to ``prefix/<relative path>`` (as ``aws s3 sync`` would)."""
    from pathlib import Path

    root = Path(local_root)
    for path in sorted(root.rglob("*")):
        if path.is_file():
            fs.put_file(str(path), f"{prefix}/{path.relative_to(root).as_posix()}")
