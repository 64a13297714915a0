from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tiny.py

import tiny  # noqa: E402, F401 - the helpers of this directory


@pytest.fixture(scope="session")
def tiny_population(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """12 tiny runs (final val_accuracy 0.3 .. 0.95), shared: copy before changing them."""
    root = tmp_path_factory.mktemp("tiny") / "runs"
    return root, tiny.population(root, 12)


@pytest.fixture
def runs(tiny_population, tmp_path) -> tuple[Path, dict[str, float]]:
    """A private copy of the tiny population, free to damage."""
    import shutil

    root, truth = tiny_population
    dst = tmp_path / "runs"
    shutil.copytree(root, dst)
    return dst, dict(truth)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """A fresh, empty loader cache for this test only."""
    path = tmp_path / "cache"
    monkeypatch.setenv("WEIGHTWATCH_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def tiny_reference(tiny_population, tmp_path_factory) -> Path:
    """A reference fitted on the tiny population (3-fold)."""
    from weightwatch.analysis import fit

    root, _ = tiny_population
    path = tmp_path_factory.mktemp("tiny-ref") / "reference.ww"
    fit(root, cv=3, baseline=False).reference.save(path)
    return path
