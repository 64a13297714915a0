"""A real Chromium for the browser tests: found on the machine, never downloaded.

The tests drive the Debian package ``chromium`` (or any Chromium / Chrome
named by ``WEIGHTWATCH_CHROMIUM``) through Playwright. Where either is missing
the tests are skipped with the reason and how to get it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def chromium_path() -> str | None:
    """The Chromium executable to drive: ``$WEIGHTWATCH_CHROMIUM``, else the first on PATH."""
    named = os.environ.get("WEIGHTWATCH_CHROMIUM")
    if named:
        return named if Path(named).exists() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_browser() -> str:
    """The executable, or skip the calling test with what to install."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed: pip install '.[dev]'")
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium on this machine: apt-get install chromium (or set WEIGHTWATCH_CHROMIUM)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _has_runs(base: str) -> bool:
    with urllib.request.urlopen(base + "/data/runs", timeout=5) as resp:
        return resp.read().strip() not in (b"", b"[]")


@contextmanager
def tensorboard(logdir: Path, *extra: str, ready: Callable[[str], bool] = _has_runs) -> Iterator[str]:
    """A real ``tensorboard`` serving ``logdir`` on 127.0.0.1; yields its base URL once
    ``ready(base)`` (default: it lists a run)."""
    port = free_port()
    log = tempfile.TemporaryFile()  # not a pipe: one nobody reads fills up and blocks the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
         "--port", str(port), "--reload_interval", "1", *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    try:
        while True:
            try:
                if ready(base):
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.seek(0)
                raise RuntimeError(f"tensorboard did not come up: {log.read().decode()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        log.close()


@dataclass(frozen=True)
class Call:
    """One data request the page made: its URL, its form / JSON body (POST) and the JSON answer."""

    url: str
    body: str
    answer: object


@dataclass
class PageLog:
    """What a page did: console messages as (type, text), page errors, and its data requests."""

    console: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)

    def warnings_about(self, word: str) -> list[str]:
        return [text for kind, text in self.console if kind in ("warning", "error") and word in text]

    def answers(self, fragment: str, body: str = "") -> list[object]:
        """The JSON answers of requests whose URL holds ``fragment`` and whose body holds ``body``."""
        return [c.answer for c in self.calls if fragment in c.url and body in c.body]


@contextmanager
def browser(executable: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def open_page(b, url: str, log: PageLog, width: int = 1400, height: int = 900):
    """A new page at ``url`` that records into ``log`` (console, errors, JSON answers under /data/)."""
    page = b.new_page(viewport={"width": width, "height": height})
    page.on("console", lambda m: log.console.append((m.type, m.text)))
    page.on("pageerror", lambda e: log.errors.append(str(e)))

    def keep(response) -> None:
        if "/data/" in response.url and response.ok:
            try:
                answer = response.json()
            except Exception:  # a non-JSON answer (images, blobs): the page reads it, we need not
                return
            log.calls.append(Call(response.url, response.request.post_data or "", answer))

    page.on("response", keep)
    page.goto(url)
    return page
