"""The same weights give the same records on every Keras backend (torch, jax, tensorflow).

tests/keras_backend_run.py records one step of a fixed model: the first
backend saves its initial weights to .npz, every other one loads them, and the
event files are read back with EventAccumulator and compared, and against
numpy on the saved kernels. Each backend runs in its own interpreter: this
one's (KERAS_BACKEND) and those listed in WEIGHTWATCH_BACKEND_PYTHONS
(``jax=.venv-jax/bin/python tensorflow=.venv-tf/bin/python``, set by
``make test-backends``); where that variable is set, every interpreter it lists
must run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import reference as ref
import tb_read

SCRIPT = Path(__file__).with_name("keras_backend_run.py")


def interpreters() -> dict[str, str]:
    """backend -> python executable."""
    found = {os.environ.get("KERAS_BACKEND", "torch"): sys.executable}
    for item in os.environ.get("WEIGHTWATCH_BACKEND_PYTHONS", "").split():
        backend, _, python = item.partition("=")
        found.setdefault(backend, python)
    return found


def record(backend: str, python: str, log_dir: Path, weights: Path, save: bool) -> None:
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([python, str(SCRIPT), str(log_dir), str(weights), *(["--save"] if save else [])],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"{backend}: {proc.stdout[-2000:]}{proc.stderr[-4000:]}"
    assert proc.stdout.split()[0] == backend, proc.stdout
    if backend != "torch":
        assert "torch" not in proc.stdout, f"{backend} imported torch: {proc.stdout}"


def test_same_weights_same_records_on_every_backend(tmp_path):
    pythons = interpreters()
    if len(pythons) < 2:
        pytest.skip("only one Keras backend here; `make test-backends` sets WEIGHTWATCH_BACKEND_PYTHONS")
    weights = tmp_path / "weights.npz"
    runs = {}
    for i, (backend, python) in enumerate(pythons.items()):
        runs[backend] = tmp_path / backend
        record(backend, python, runs[backend], weights, save=i == 0)
    first, *others = pythons
    base_sc = tb_read.scalars(tb_read.weightwatch_file(runs[first]))
    base_h = tb_read.histograms(tb_read.weightwatch_file(runs[first]))
    assert len(base_sc) > 60 and len(base_h) > 10
    for backend in others:
        path = tb_read.weightwatch_file(runs[backend])
        sc, hists = tb_read.scalars(path), tb_read.histograms(path)
        assert set(sc) == set(base_sc) and set(hists) == set(base_h), backend
        for tag, series in base_sc.items():
            np.testing.assert_allclose([v for _, v in sc[tag]], [v for _, v in series], rtol=2e-6, atol=1e-7,
                                       err_msg=f"{backend} {tag}")
        for tag, series in base_h.items():
            (_, limits, counts), = hists[tag]
            np.testing.assert_array_equal(counts, series[0][2], err_msg=f"{backend} {tag}")
            np.testing.assert_allclose(limits, series[0][1], rtol=1e-6, err_msg=f"{backend} {tag}")
    # and they are numpy's statistics of the saved kernels (Keras layout: conv (3, 3, 2, 3), fc (48, 8))
    stored = np.load(weights)
    kernels = {"conv": stored["arr_0"], "fc": stored["arr_6"]}
    assert kernels["conv"].shape == (3, 3, 2, 3) and kernels["fc"].shape == (48, 8)
    for name, kernel in kernels.items():
        for stat, value in ref.weight_stats(kernel).items():
            assert tb_read.at(base_sc[f"weights/{name}/{stat}"], 0) == pytest.approx(value, rel=1e-5, abs=1e-7)
