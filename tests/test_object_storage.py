"""Runs on object storage, against a real S3-compatible server (moto's, a separate process).

Written by the real callback into ``s3://`` (killed mid-run, uploads failing),
read back by TensorBoard itself (its reader and its server, straight from the
bucket) and by ``weightwatch compare / fit / classify``, whose output must be
the same as for the same runs on local disk.
"""

from __future__ import annotations

import doctest
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("s3fs")
pytest.importorskip("moto")

import bounded  # noqa: E402
import tb_read  # noqa: E402
from objectstore import s3_server, s3fs_client, upload  # noqa: E402
from populations import shared_population  # noqa: E402
from torch import nn  # noqa: E402

import weightwatch.storage  # noqa: E402
from weightwatch import object_events  # noqa: E402
from weightwatch.analysis import load_runs  # noqa: E402
from weightwatch.analysis.loading.find import find_runs  # noqa: E402
from weightwatch.integrations.torch import WeightWatch  # noqa: E402

pytestmark = pytest.mark.slow
BUCKET = "weightwatch-tests"


@pytest.fixture(scope="module")
def s3():
    with s3_server() as endpoint:
        fs = s3fs_client()
        fs.mkdir(BUCKET)
        yield fs, endpoint


@pytest.fixture(scope="module")
def population(tmp_path_factory, s3):
    """The shared digits population, on local disk and uploaded as is to s3://BUCKET/pop."""
    fs, _ = s3
    root, truth = shared_population(tmp_path_factory)
    upload(fs, root, f"{BUCKET}/pop")
    return root, f"s3://{BUCKET}/pop", truth


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """The CLI in a process group of its own: cluster workers it leaves behind are killed, and never hang the suite."""
    return bounded.run([sys.executable, "-m", "weightwatch.cli", *args], timeout=timeout)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def test_storage_doctests():
    assert doctest.testmod(weightwatch.storage).failed == 0


def test_killed_run_on_s3_reads_back_every_epoch_it_logged(s3, tmp_path):
    url = f"s3://{BUCKET}/killed/run"
    tb_read.train_and_kill(url, epoch=2)
    sc = tb_read.scalars(url)  # TensorBoard's own reader, straight from the bucket
    assert [s for s, _ in sc["weights/0/mean"]] == [0, 1, 2] and [s for s, _ in sc["val_accuracy"]] == [0, 1, 2]
    assert len(tb_read.load(url).Histograms("weights/0")) == 3
    out = cli("compare", f"s3://{BUCKET}/killed", "--json", "--no-figures", "--no-tensorboard", "--no-cache",
              "--out", str(tmp_path / "report"))
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["runs"]["run"]["value"] == pytest.approx(0.7, rel=1e-6)


def test_full_objects_roll_over_and_tensorboard_serves_them_from_the_bucket(s3, monkeypatch):
    fs, _ = s3
    monkeypatch.setattr(object_events, "OBJECT_BYTES", 6000)  # a few logs per object
    url = f"s3://{BUCKET}/rolled/run"
    model = mlp()
    with WeightWatch(model, url, example_input=torch.zeros(1, 6)) as ww:
        for epoch in range(12):
            with torch.no_grad():
                model[0].weight.add_(0.01)
            ww.log(epoch, val_accuracy=epoch / 12)
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.find(f"{BUCKET}/rolled/run") if "tfevents" in p)
    assert len(names) >= 3 and all(n.startswith(names[0]) for n in names)
    assert [n[len(names[0]):] for n in names[1:]] == [f".part{k:04d}" for k in range(1, len(names))]
    expected = [(e, pytest.approx(e / 12, rel=1e-6)) for e in range(12)]
    assert tb_read.scalars(url)["val_accuracy"] == expected

    def has_run(base: str) -> bool:
        with urllib.request.urlopen(f"{base}/data/plugin/scalars/tags", timeout=5) as r:
            return "run" in json.load(r)

    from browser import tensorboard

    with tensorboard(f"s3://{BUCKET}/rolled", "--load_fast", "false", ready=has_run) as base:
        query = f"{base}/data/plugin/scalars/scalars?run=run&tag=val_accuracy"
        deadline = time.time() + 60
        while True:  # the server reads the run's objects one after another
            with urllib.request.urlopen(query, timeout=10) as r:
                points = [(step, value) for _, step, value in json.load(r)]
            if len(points) == 12 or time.time() > deadline:
                break
            time.sleep(1)
    assert points == expected


def test_failed_uploads_lose_nothing_and_training_goes_on(s3):
    fs, _ = s3
    url = f"s3://{BUCKET}/flaky/run"
    model = mlp()
    ww = WeightWatch(model, url, example_input=torch.zeros(1, 6), strict=False)
    writer = ww.run.recorder.writer
    real = writer._fs.pipe_file
    failing = {"on": False}

    def pipe_file(path, data, **kwargs):
        if failing["on"]:
            raise ConnectionError("network is unreachable")  # not an OSError: what aiohttp raises
        return real(path, data, **kwargs)

    writer._fs.pipe_file = pipe_file
    with pytest.warns(RuntimeWarning) as said:
        for epoch in range(6):
            failing["on"] = epoch in (2, 3)
            ww.log(epoch, val_accuracy=epoch / 10)
        ww.close()
    messages = [str(w.message) for w in said if "weightwatch" in str(w.message)]
    assert len(messages) == 1 and "network is unreachable" in messages[0], messages
    # the logs made while the store was unreachable went up with the next upload that worked
    assert [s for s, _ in tb_read.scalars(url)["val_accuracy"]] == list(range(6))


def test_unusable_urls_fail_with_what_to_do(s3, tmp_path):
    with pytest.raises(OSError, match="no-such-bucket.*bucket exists"):
        WeightWatch(mlp(), "s3://no-such-bucket/runs/a")
    out = cli("compare", "s3://no-such-bucket/runs", "--out", str(tmp_path / "r"))
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr
    out = cli("compare", "nosuchfs://bucket/runs", "--out", str(tmp_path / "r"))
    assert out.returncode == 2 and "nosuchfs://" in out.stderr and "Traceback" not in out.stderr
    out = cli("compare", f"s3://{BUCKET}/pop-*-none", "--out", str(tmp_path / "r"))
    assert out.returncode == 2 and "matches no directory" in out.stderr
    for args in (["compare", str(tmp_path), "--out", f"s3://{BUCKET}/report"],
                 ["fit", str(tmp_path), "-o", f"s3://{BUCKET}/ref.ww"]):
        out = cli(*args)  # the outputs are local: no folder named "s3:" appears
        assert out.returncode == 2 and "is a URL" in out.stderr and not Path("s3:").exists()


def test_discovery_on_the_bucket_follows_the_local_rules(s3, tmp_path):
    fs, _ = s3
    root = tmp_path / "tree"
    for run in ("a", "b/c", "keras/run", ".hidden/x", "report/inner"):
        with WeightWatch(mlp(), root / run, example_input=torch.zeros(1, 6)) as ww:
            ww.log(0, val_accuracy=0.5)
    # a Keras TensorBoard callback's train/ and validation/ inside a weightwatch run are not runs
    for sub in ("train", "validation"):
        (root / "keras/run" / sub).mkdir()
        shutil.copy(tb_read.event_files(root / "a")[0], root / "keras/run" / sub)
    (root / "report" / "weightwatch-population.json").write_text("{}")  # compare's own output
    upload(fs, root, f"{BUCKET}/tree")
    local = [p.relative_to(root).as_posix() for p in find_runs(root)]
    remote = [str(p)[len(f"s3://{BUCKET}/tree/"):] for p in find_runs(f"s3://{BUCKET}/tree")]
    assert local == remote == ["a", "b/c", "keras/run"]
    assert [str(p) for p in find_runs(f"s3://{BUCKET}/tree/*")] == [f"s3://{BUCKET}/tree/{r}" for r in
                                                                    ("a", "b/c", "keras/run")]


def _same_report(local: dict, remote: dict) -> None:
    for key in ("metric", "table", "thresholds", "runs", "unlabelled", "skipped", "dispersion"):
        assert local[key] == remote[key], key


def test_compare_fit_and_classify_read_the_bucket_as_they_read_disk(population, tmp_path):
    root, url, truth = population
    reports = {}
    for name, where in (("local", str(root)), ("s3", url)):
        out = cli("compare", where, "--json", "--no-tensorboard", "--out", str(tmp_path / f"report-{name}"))
        assert out.returncode == 0, out.stderr[-2000:]
        reports[name] = json.loads(out.stdout)
    _same_report(reports["local"], reports["s3"])
    assert sorted(reports["s3"]["runs"]) == sorted(truth)
    refs = {}
    for name, where in (("local", str(root)), ("s3", url)):
        out = cli("fit", where, "-o", str(tmp_path / f"{name}.ww"), "--json", "--seed", "0")
        assert out.returncode == 0, out.stderr[-2000:]
        refs[name] = json.loads(out.stdout)
        refs[name].pop("reference")
    assert refs["local"] == refs["s3"]
    verdicts = {}
    for name, base in (("local", str(root)), ("s3", url)):
        out = cli("classify", f"{base}/*", "-r", str(tmp_path / "local.ww"), "--json")
        assert out.returncode == 0, out.stderr[-2000:]
        verdicts[name] = {p["run"][len(base) + 1:]: p for p in json.loads(out.stdout)}
        for p in verdicts[name].values():
            p.pop("run")
    assert verdicts["local"] == verdicts["s3"] and sorted(verdicts["s3"]) == sorted(truth)


def test_bucket_cache_rereads_only_what_grew(s3, tmp_path):
    """The cache of a remote run is keyed by its URL, each object by size, time and ETag: a second
    load downloads nothing, and an object replaced by a longer one is read from where the cache ends."""
    fs, _ = s3
    local = tmp_path / "run"
    url = f"s3://{BUCKET}/growing/run"
    model = mlp()
    cache = tmp_path / "cache"
    with WeightWatch(model, local, example_input=torch.zeros(1, 6)) as ww:
        sizes = []
        for epoch in range(4):
            ww.log(epoch, val_accuracy=epoch / 4)
            ww.run.recorder.flush()
            if epoch in (1, 3):
                upload(fs, local, f"{BUCKET}/growing/run")
                (event,) = tb_read.event_files(local)
                sizes.append(event.stat().st_size)
                first = load_runs(url, progress=False, cache=cache)
                assert first.runs[0].scalars["val_accuracy"].steps.tolist() == list(range(epoch + 1))
                assert first.stats.bytes_read == (sizes[0] if epoch == 1 else sizes[1] - sizes[0])
                again = load_runs(url, progress=False, cache=cache)
                assert again.stats.runs_from_cache == 1 and again.stats.bytes_read == 0


def _compare_json(out_dir: Path, *args: str) -> dict:
    out = cli("compare", *args, "--json", "--no-figures", "--no-tensorboard", "--no-cache", "--out", str(out_dir))
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def both_roots(population, tmp_path_factory):
    """The population on disk and in the bucket as two roots of one compare, and its local-engine JSON."""
    root, url, _ = population
    return [str(root), url], _compare_json(tmp_path_factory.mktemp("local-engine"), str(root), url)


#: one trivial task on a fresh local cluster of 2 workers: whether this machine can host one at all
CLUSTER_PROBES = {
    "ray": "import ray; ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False); "
           "print(ray.get(ray.remote(lambda: 41).remote()) + 1); ray.shutdown()",
    "dask": "import distributed\n"
            "with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as c, "
            "distributed.Client(c) as client:\n"
            "    print(client.submit(lambda: 41).result(timeout=120) + 1)",
}


def _skip_unless_a_cluster_starts(engine: str) -> None:
    """A machine that cannot start the engine's own local cluster (full disk, no shared memory) skips, saying
    why, instead of failing weightwatch's test; with a cluster that starts, a failure is weightwatch's."""
    try:
        probe = bounded.run([sys.executable, "-c", CLUSTER_PROBES[engine]], timeout=240)
    except pytest.fail.Exception as error:
        pytest.skip(f"a local {engine} cluster does not start on this machine: {str(error)[-600:]}")
    if probe.returncode != 0 or probe.stdout.split()[-1:] != ["42"]:
        pytest.skip(f"a local {engine} cluster does not run a task on this machine: {probe.stderr[-600:]}")


@pytest.mark.parametrize("engine", ["ray", "dask"])
def test_cluster_engines_give_the_local_engines_json(engine, both_roots, tmp_path):
    """One local cluster of 2 workers per engine loads runs from disk and from the bucket."""
    pytest.importorskip(engine if engine == "ray" else "distributed")
    _skip_unless_a_cluster_starts(engine)
    roots, local = both_roots
    _same_report(local, _compare_json(tmp_path, *roots, "--engine", engine, "--workers", "2"))
    remote = [n for n in local["runs"] if n.startswith("s3://")]
    assert len(remote) * 2 == len(local["runs"]) > 0  # both copies of the population were compared
