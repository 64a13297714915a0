"""Where runs are found and where nothing is written: links, several roots and globs, read-only
folders (chmod, and a real non-root user), the cache in its own directory."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import tiny
from tiny import compare_json, snapshot
from weightwatch.analysis import load_runs
from weightwatch.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_symlinked_runs_are_found_by_compare_fit_and_classify(runs, tmp_path, capsys, tiny_reference):
    root, truth = runs
    subset = tmp_path / "subset"
    subset.mkdir()
    picked = sorted(truth)[::2]
    for name in picked:
        (subset / f"pick-{name}").symlink_to(root / name, target_is_directory=True)
    code, result, _ = compare_json(capsys, str(subset), "--out", str(tmp_path / "r"), "--no-figures")
    assert code == 0 and sorted(result["runs"]) == [f"pick-{n}" for n in picked]
    for name in picked:
        assert result["runs"][f"pick-{name}"]["value"] == pytest.approx(truth[name], rel=1e-6)
    assert main(["fit", str(subset), "-o", str(tmp_path / "ref.ww"), "--cv", "2", "--no-baseline", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == len(picked)
    assert main(["classify", str(subset), "--reference", str(tiny_reference), "--json"]) == 0
    assert sorted(p["run"] for p in json.loads(capsys.readouterr().out)) == sorted(
        str(subset / f"pick-{n}") for n in picked)


def test_a_link_loop_and_a_second_link_to_a_run_are_walked_once(runs):
    root, truth = runs
    (root / "run00" / "back-to-root").symlink_to(root, target_is_directory=True)  # a loop
    (root / "again").symlink_to(root / "run03", target_is_directory=True)  # the same run twice
    (root / "dangling").symlink_to(root / "no-such-run")
    loaded = load_runs(root, progress=False)
    names = [r.name for r in loaded.runs]
    assert sorted(names) == sorted(set(truth) - {"run03"} | {"again"})  # the first way there, in name order
    assert not loaded.problems


def test_several_roots_and_glob_patterns(runs, tmp_path, capsys):
    root, truth = runs
    other = tmp_path / "other"
    tiny.tiny_run(other / "extra", 0.9, seed=99)
    pattern = str(root / "run0[0-4]")
    code, result, _ = compare_json(capsys, pattern, str(other), "--out", str(tmp_path / "r"), "--no-figures",
                                   "--no-tensorboard")
    assert code == 0
    want = [f"{root.as_posix()}/run0{i}" for i in range(5)] + [f"{other.as_posix()}/extra"]
    assert sorted(result["runs"]) == sorted(want) and result["roots"] == [*(str(root / f"run0{i}")
                                                                           for i in range(5)), str(other)]
    assert main(["compare", str(tmp_path / "nothing-*"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing-*' matches no directory" in err


def test_compare_writes_nothing_into_a_read_only_runs_folder(runs, tmp_path, capsys, cache_dir):
    """chmod a-w on every file and directory; the report, the TensorBoard view and the cache go elsewhere."""
    root, truth = runs
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = snapshot(root)
    try:
        code, result, _ = compare_json(capsys, str(root), "--out", str(tmp_path / "report"))
        assert code == 0 and len(result["runs"]) == len(truth)
        code, again, _ = compare_json(capsys, str(root), "--out", str(tmp_path / "report"))
        assert code == 0 and again["load"]["runs_from_cache"] == len(truth)  # the cache works, elsewhere
        assert snapshot(root) == before
        assert sorted(p.suffix for p in cache_dir.iterdir()) == [".wwc"] * len(truth)
        assert (tmp_path / "report" / "weightwatch-population" / "weightwatch-population.json").exists()
        assert (tmp_path / "report" / "index.html").exists()
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _python_for(user: str) -> list[str] | None:
    """A python command ``user`` can run with this venv's packages, or None."""
    candidates = [sys.executable, os.path.realpath(sys.executable),
                  f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"]
    for exe in candidates:
        ok = subprocess.run(["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", exe, "-c",
                             "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
        if ok.returncode == 0 and ok.stdout.strip() == str(sys.version_info[:2]):
            return [exe]
    return None


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to run the command as the unprivileged user 'nobody'")
def test_compare_fit_classify_as_a_non_root_user_on_someone_elses_read_only_runs(tiny_population, tiny_reference):
    """The runs belong to root and are read-only for 'nobody', who runs the commands with a writable --out and
    cache dir; nobody's HOME does not exist (so numba's default caches are not writable either)."""
    python = _python_for("nobody")
    if python is None:
        pytest.skip("no python interpreter that the user 'nobody' may run")
    base = tiny.world_readable_tmp()
    try:
        root = base / "runs"
        shutil.copytree(tiny_population[0], root)
        shutil.copy(tiny_reference, base / "reference.ww")
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)  # others may read, only root may write
        out = base / "out"
        out.mkdir()
        shutil.chown(out, "nobody")
        before = snapshot(root)
        env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "MPLBACKEND": "agg",
               "WEIGHTWATCH_CACHE_DIR": str(out / "cache"),
               "PYTHONPATH": os.pathsep.join([sysconfig.get_paths()["purelib"], str(REPO)])}

        def as_nobody(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *python,
                                   "-m", "weightwatch", *args], capture_output=True, text=True, env=env, cwd=out,
                                  timeout=600)

        proc = as_nobody("compare", str(root), "--out", str(out / "report"), "--json")
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert len(result["runs"]) == len(tiny_population[1]) and not result["problems"]
        assert Path(result["tensorboard"]) == out / "report" / "weightwatch-population"
        proc = as_nobody("fit", str(root), "-o", str(out / "ref.ww"), "--cv", "2", "--no-baseline")
        assert proc.returncode == 0 and (out / "ref.ww").exists(), proc.stderr
        proc = as_nobody("classify", str(root), "--reference", str(base / "reference.ww"), "--json")
        assert proc.returncode == 0, proc.stderr
        assert len(json.loads(proc.stdout)) == len(tiny_population[1])
        proc = as_nobody("compare", str(root), "--out", str(root / "report"))  # asked to write into the runs
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Permission denied" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert snapshot(root) == before
        assert any(p.suffix == ".wwc" for p in (out / "cache").iterdir())
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_no_cache_writes_no_cache(runs, tmp_path, capsys, cache_dir):
    root, _ = runs
    code, result, _ = compare_json(capsys, str(root), "--out", str(tmp_path / "r"), "--no-figures", "--no-cache")
    assert code == 0 and result["load"]["bytes_read"] > 0
    assert not cache_dir.exists()


def test_cache_is_keyed_by_path_size_and_mtime_and_bounded(runs, tmp_path, cache_dir, monkeypatch):
    root, truth = runs
    first = load_runs(root, progress=False)
    assert first.stats.runs_from_cache == 0 and len(list(cache_dir.iterdir())) == len(truth)
    assert load_runs(root, progress=False).stats.runs_from_cache == len(truth)
    # the same runs under another path are other cache entries: the key is the resolved path
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    assert load_runs(moved, progress=False).stats.runs_from_cache == 0
    # a file whose size or mtime changed is read again
    path = tiny.event_file(root / "run05")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    again = load_runs(root, progress=False)
    assert again.stats.runs_from_cache == len(truth) - 1
    # bounded: the least recently used files go first
    sizes = sorted(p.stat().st_size for p in cache_dir.iterdir())
    limit = sum(sizes[:5])
    monkeypatch.setenv("WEIGHTWATCH_CACHE_MAX_BYTES", str(limit))
    load_runs(root, progress=False)
    assert sum(p.stat().st_size for p in cache_dir.iterdir()) <= limit


@pytest.mark.parametrize("damage", ["random bytes", "truncated", "empty", "wrong types", "object dtype",
                                    "other run's file"])
def test_a_damaged_cache_is_read_again_never_trusted(runs, cache_dir, damage):
    from weightwatch.analysis.loading.cache import CACHE_FORMAT, CACHE_VERSION, MAGIC, cache_file, cache_key, \
        load_cache

    root, truth = runs
    clean = {r.name: r.scalars["val_accuracy"].values.tolist() for r in load_runs(root, progress=False,
                                                                                  cache=False).runs}
    load_runs(root, progress=False)
    key = cache_key(root / "run04")
    path = cache_file(cache_dir, key)
    data = path.read_bytes()
    header_end = 16 + int.from_bytes(data[8:16], "little")
    header = data[16:header_end].decode()
    if damage == "random bytes":
        data = os.urandom(len(data))
    elif damage == "truncated":
        data = data[:len(data) // 2]
    elif damage == "empty":
        data = b""
    elif damage == "wrong types":
        doc = json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "run": key, "bytes": 0,
                          "files": [{"name": 5, "start": "zero", "arrays": [1, 2], "tags": None}]}).encode()
        data = MAGIC + len(doc).to_bytes(8, "little") + doc
    elif damage == "object dtype":
        data = data[:16] + header.replace('"<f8"', '"|O8"').replace('"<i8"', '"|O8"').encode() + data[header_end:]
    else:  # another run's cache under this run's name
        data = cache_file(cache_dir, cache_key(root / "run05")).read_bytes()
    assert data[:8] == MAGIC or damage in ("random bytes", "empty")
    path.write_bytes(data)
    loaded = load_runs(root, progress=False)
    assert not loaded.problems
    assert {r.name: r.scalars["val_accuracy"].values.tolist() for r in loaded.runs} == clean
    assert load_cache(path, key).sound  # rewritten whole
