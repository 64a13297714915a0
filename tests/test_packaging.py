"""The wheel holds the core and the integrations under ``weightwatch.integrations``."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
                           str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (whl,) = out.glob("weightwatch-*.whl")
    return whl


def test_wheel_maps_integrations_into_the_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "weightwatch/integrations/torch.py" in names
    assert "weightwatch/integrations/__init__.py" in names
    assert "weightwatch/recorder.py" in names and "weightwatch/ops/cpu.py" in names
    assert "weightwatch/py.typed" in names
    assert not any(n.startswith(("integrations/", "tests/", "benchmarks/")) for n in names)


def test_wheel_declares_one_extra_per_integration(wheel):
    with zipfile.ZipFile(wheel) as zf:
        meta = next(zf.read(n).decode() for n in zf.namelist() if n.endswith("METADATA"))
    extras = {line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Provides-Extra:")}
    assert {"torch", "keras", "lightning", "hf", "optuna", "ray", "s3", "gcs", "azure", "dask", "analysis", "dev"} <= extras
    entry = next(zipfile.ZipFile(wheel).read(n).decode() for n in zipfile.ZipFile(wheel).namelist()
                 if n.endswith("entry_points.txt"))
    assert "weightwatch = weightwatch.cli:run" in entry


def test_every_core_subpackage_is_in_the_wheel(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for init in (ROOT / "weightwatch").rglob("__init__.py"):
        rel = init.relative_to(ROOT).as_posix()
        assert rel in names, f"{rel} is missing from the wheel: add its package to pyproject.toml"
