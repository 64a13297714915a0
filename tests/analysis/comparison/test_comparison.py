"""``weightwatch compare`` end to end on a small real population, through ``main([...])``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.compat.proto import summary_pb2

import populations
from weightwatch.analysis.comparison.dispersion import permutation_test
from weightwatch.analysis.comparison.groups import GROUPS, natural_breaks
from weightwatch.analysis.loading.loader import load_runs
from weightwatch.cli import main
from weightwatch.events import EventFileWriter

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def population(tmp_path_factory):
    return populations.shared_population(tmp_path_factory)


def copy_population(population, dst: Path) -> tuple[Path, dict]:
    root, truth = population
    shutil.copytree(root, dst, ignore=shutil.ignore_patterns(".weightwatch-cache", "weightwatch-population"))
    return dst, truth


def run_json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["compare", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.fixture(scope="session")
def full_report(population, tmp_path_factory):
    """One complete compare (figures, HTML, TensorBoard) shared by the tests that inspect its files."""
    root, truth = copy_population(population, tmp_path_factory.mktemp("compare") / "runs")
    out = root.parent / "report"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["compare", str(root), "--out", str(out), "--json"])
    assert code == 0
    return root, truth, out, json.loads(buf.getvalue())


def test_table_matches_the_runs_real_final_metrics(full_report):
    root, truth, _, result = full_report
    assert result["metric"] == "val_accuracy"
    assert set(result["runs"]) == set(truth)
    for name, run in result["runs"].items():
        assert run["value"] == pytest.approx(truth[name].val_accuracy, rel=1e-6)
        if truth[name].init == "zeros":  # dead networks stay at chance
            assert run["group"] == "non" and run["reasons"]
    for row in result["table"]:
        members = [n for n, r in result["runs"].items() if r["family"] == row["family"] and r["group"] == row["group"]]
        values = np.array([truth[n].val_accuracy for n in members])
        assert row["runs"] == len(members)
        assert row["min"] == pytest.approx(values.min(), rel=1e-6)
        assert row["median"] == pytest.approx(np.median(values), rel=1e-6)
        assert row["max"] == pytest.approx(values.max(), rel=1e-6)
    assert {row["family"] for row in result["table"]} == {"DNN (fc×2, output)", "CNN (conv, output)"}
    # groups are ordered by the metric within each family
    for family in {r["family"] for r in result["runs"].values()}:
        ranked = [GROUPS.index(r["group"]) for r in sorted(
            (r for r in result["runs"].values() if r["family"] == family and r["group"] != "non"),
            key=lambda r: r["value"])]
        assert ranked == sorted(ranked)
    assert any("architecture families" in w for w in result["warnings"])


def test_every_figure_is_written_and_the_page_shows_them(full_report):
    root, _, out, result = full_report
    names = [Path(p).name for p in result["figures"]]
    for kind in ("convergence", "mean-std-layers", "mean-std-roles", "kde", "strength", "tsne"):
        for family in ("dnn-fc2-output", "cnn-conv-output"):
            assert any(n.startswith(f"{kind}-{family}") for n in names), (kind, family, names)
    html = (out / "index.html").read_text()
    for path in result["figures"]:
        assert Path(path).stat().st_size > 1000
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert Path(path).name in html
    assert html.count("data:image/png;base64,") == len(names)  # self-contained
    assert "Table 2" in html and "permutation" in html


def test_tensorboard_shows_the_population(full_report):
    root, truth, _, result = full_report
    pop = Path(result["tensorboard"])
    acc = ea.EventAccumulator(str(pop), size_guidance={ea.IMAGES: 0, ea.TENSORS: 0})
    acc.Reload()
    assert sorted(acc.Tags()["images"]) == sorted(f"compare/{Path(p).stem}" for p in result["figures"])
    assert "compare/table" in acc.Tags()["tensors"]
    config = (pop / "projector_config.pbtxt").read_text()
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2

    parsed = text_format.Parse(config, projector_config_pb2.ProjectorConfig())
    assert len(parsed.embeddings) == 2
    for emb in parsed.embeddings:
        tensors = np.loadtxt(pop / emb.tensor_path, delimiter="\t")
        metadata = (pop / emb.metadata_path).read_text().splitlines()
        assert tensors.shape == tuple(emb.tensor_shape) and len(metadata) == tensors.shape[0] + 1
        assert metadata[0].split("\t") == ["run", "group", "family", "val_accuracy"]
    # written under --out, never into the runs' folder; and not taken for a run should --out lie below the runs
    assert pop.parent == Path(result["report"]).parent and not (root / "weightwatch-population").exists()
    assert len(load_runs([root, pop.parent], progress=False).runs) == len(truth)


def test_terminal_table_and_python_dash_m(population, tmp_path, capsys):
    root, _ = copy_population(population, tmp_path / "runs")
    assert main(["compare", str(root), "--out", str(tmp_path / "r"), "--no-figures", "--no-tensorboard"]) == 0
    text = capsys.readouterr().out
    for word in ("Family", "Median", "high", "non", "DNN (fc×2, output)", "dispersion", "index.html"):
        assert word in text
    proc = subprocess.run([sys.executable, "-m", "weightwatch", "compare", "--help"], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0 and "--thresholds" in proc.stdout


def test_thresholds_and_metric_options(population, tmp_path, capsys):
    root, truth = copy_population(population, tmp_path / "runs")
    code, result = run_json(capsys, str(root), "--thresholds", "0.5,0.9", "--no-figures", "--no-tensorboard",
                            "--out", str(tmp_path / "r"))
    assert code == 0
    for name, run in result["runs"].items():
        if run["group"] != "non":
            v = truth[name].val_accuracy
            assert run["group"] == ("low" if v < 0.5 else "mid" if v < 0.9 else "high")
    code, result = run_json(capsys, str(root), "--metric", "accuracy", "--no-figures", "--no-tensorboard",
                            "--out", str(tmp_path / "r"))
    assert code == 0 and result["metric"] == "accuracy"
    for name, run in result["runs"].items():
        assert run["value"] == pytest.approx(truth[name].accuracy, rel=1e-6)
    with pytest.raises(SystemExit) as exc:
        main(["compare", str(root), "--thresholds", "0.9,0.5"])
    assert exc.value.code == 2


def test_partial_problems_are_named_and_do_not_fail(population, tmp_path, capsys):
    root, truth = copy_population(population, tmp_path / "runs")
    names = sorted(truth)
    event = next(p for p in (root / names[0]).iterdir() if "tfevents" in p.name)
    event.write_bytes(event.read_bytes()[:-50])  # crashed mid-write
    (root / "garbage").mkdir()
    (root / "garbage" / "events.out.tfevents.0.x").write_bytes(b"\x00" * 40)
    writer = EventFileWriter(root / "no-metric")
    writer.write_summary(summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="loss", simple_value=1.0)]), 0)
    writer.close()
    (root / names[1] / "weightwatch_sketch.npz").unlink()
    code, result = run_json(capsys, str(root), "--out", str(tmp_path / "r"), "--no-tensorboard")
    assert code == 0
    assert "incomplete record" in " ".join(result["problems"][names[0]])
    assert "not loaded" in result["problems"]["garbage"][0]
    assert "no-metric" in result["unlabelled"] and "loss" in result["unlabelled"]["no-metric"]
    assert any("sketch" in m for m in result["problems"][names[1]])
    assert names[0] in result["runs"]  # what was readable still counts


def test_nothing_useful_exits_non_zero_with_a_clear_message(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compare", str(empty)]) == 1
    assert "no runs" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing")]) == 2  # unusable input
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad"
    (bad / "r1").mkdir(parents=True)
    (bad / "r1" / "events.out.tfevents.1.x").write_bytes(b"garbage!" * 10)
    assert main(["compare", str(bad), "--json"]) == 1
    captured = capsys.readouterr()
    assert "r1" in captured.err and "could be read" in json.loads(captured.out)["error"]
    nometric = tmp_path / "nometric"
    writer = EventFileWriter(nometric / "a")
    writer.write_summary(summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="loss", simple_value=1.0)]), 0)
    writer.close()
    assert main(["compare", str(nometric), "--no-tensorboard", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "--metric" in err and "loss" in err


def test_dispersion_test_finds_a_tight_group():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (20, 3)), rng.normal(0, 1.0, (20, 3))])
    is_high = np.arange(40) < 20
    hi, lo, ratio, p = permutation_test(x, is_high, permutations=500)
    assert ratio < 0.3 and p < 0.01
    _, _, ratio, p = permutation_test(x, ~is_high, permutations=500)
    assert ratio > 3 and p > 0.9
    _, _, _, p_exact = permutation_test(x[[0, 1, 2, 20, 21, 22]], is_high[[0, 1, 2, 20, 21, 22]])
    assert p_exact == pytest.approx(1 / 20)  # exact over the 20 relabellings: the observed one is the tightest


def test_natural_breaks_is_the_best_split():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(0.1, 0.01, 30), rng.normal(0.5, 0.05, 30), rng.normal(0.9, 0.02, 30)])
    a, b = natural_breaks(values)  # the lowest value of the middle and of the top cluster
    assert a == values[30:60].min() and b == values[60:].min()
    # brute force on a small sample: no other split has less within-group variance
    small = np.sort(rng.uniform(size=9))

    def cost(i, j):
        return sum(((g - g.mean()) ** 2).sum() for g in (small[:i], small[i:j], small[j:]))

    best = min((cost(i, j), i, j) for i in range(1, 8) for j in range(i + 1, 9))
    assert natural_breaks(small) == [small[best[1]], small[best[2]]]


def test_demo_runs_with_tiny_settings(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "examples"))
    import demo

    code = demo.main(["--log-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "report"), "--runs", "6",
                      "--epochs", "2"])
    assert code == 0
    assert (tmp_path / "report" / "index.html").exists()
    assert (tmp_path / "report" / "weightwatch-population" / "projector_config.pbtxt").exists()
    assert not (tmp_path / "runs" / "weightwatch-population").exists()


@pytest.mark.parametrize("module", ["comparison.groups", "comparison.final", "comparison.dispersion",
                                    "comparison.compare", "rendering.plots", "rendering.figures",
                                    "rendering.numbers", "rendering.tbexport", "rendering.output"])
def test_doctests(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"weightwatch.analysis.{module}")
    assert doctest.testmod(mod, optionflags=doctest.ELLIPSIS).failed == 0


@pytest.mark.slow
def test_a_real_tensorboard_serves_the_population(full_report):
    """The commands compare prints: ``tensorboard --logdir_spec runs:...,compare:...`` shows the runs and the
    population's figures (Images) and tables (Text) side by side; ``tensorboard --logdir <out>`` its projector
    embedding (TensorBoard's projector reads a plain --logdir only)."""
    import shlex
    import socket
    import tempfile
    import time
    import urllib.error
    import urllib.parse
    import urllib.request

    root, truth, _, result = full_report

    def serve(command: list[str], ready):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        base = f"http://127.0.0.1:{port}"

        def get(path: str) -> bytes:
            with urllib.request.urlopen(base + path, timeout=10) as resp:
                return resp.read()

        assert command[0] == "tensorboard"
        log = tempfile.TemporaryFile()  # not a pipe: one nobody reads fills up and blocks the server
        proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", *command[1:], "--host", "127.0.0.1",
                                 "--port", str(port), "--reload_interval", "1"],
                                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 90
        while True:
            try:
                if ready(get):
                    return proc, get
            except (urllib.error.URLError, ConnectionError, ValueError):
                pass
            if proc.poll() is not None or time.time() > deadline:
                proc.terminate()
                log.seek(0)
                raise RuntimeError(f"tensorboard did not come up: {log.read().decode()[-2000:]}")
            time.sleep(1)

    run = "compare/weightwatch-population"
    spec = shlex.split(result["tensorboard_command"])
    assert spec[1] == "--logdir_spec"
    proc, get = serve(spec, lambda get: len(json.loads(get("/data/plugin/images/tags")).get(run, {})) == len(
        result["figures"]) and len(json.loads(get("/data/runs"))) == len(truth) + 1)  # the runs, beside the view
    try:
        assert run in json.loads(get("/data/runs"))
        assert set(json.loads(get("/data/plugin/text/tags"))[run]) == {"compare/table", "compare/dispersion"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    run = "weightwatch-population"
    proc, get = serve(shlex.split(result["projector_command"]),
                      lambda get: run in json.loads(get("/data/plugin/projector/runs")))
    try:
        info = json.loads(get("/data/plugin/projector/info?" + urllib.parse.urlencode({"run": run})))
        name = info["embeddings"][0]["tensorName"]
        query = urllib.parse.urlencode({"run": run, "name": name})
        rows, dims = info["embeddings"][0]["tensorShape"]
        assert len(get(f"/data/plugin/projector/tensor?{query}")) == rows * dims * 4  # float32
        assert get(f"/data/plugin/projector/metadata?{query}").decode().count("\n") == rows + 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_permutation_p_value_is_the_share_of_relabellings_at_most_the_observed():
    """Against every relabelling enumerated by hand, and the random case against its definition."""
    import itertools

    from weightwatch.analysis.comparison.dispersion import spread

    rng = np.random.default_rng(7)
    x = rng.normal(size=(9, 2)) * np.r_[np.full(4, 0.5), np.ones(5)][:, None]
    is_high = np.arange(9) < 4

    def ratio(mask):
        return spread(x[mask]) / spread(x[~mask])

    observed = ratio(is_high)
    masks = [np.isin(np.arange(9), c) for c in itertools.combinations(range(9), 4)]
    by_hand = np.mean([ratio(m) <= observed * (1 + 1e-12) for m in masks])
    hi, lo, r, p = permutation_test(x, is_high, permutations=1000)  # 126 relabellings: exact
    assert (hi, lo, r) == pytest.approx((spread(x[:4]), spread(x[4:]), observed))
    assert p == pytest.approx(by_hand)
    p_random = permutation_test(x, is_high, permutations=100, seed=3)[3]  # 100 < 126: random relabellings
    assert p_random == permutation_test(x, is_high, permutations=100, seed=3)[3]  # reproducible
    hits = round(p_random * 101) - 1
    assert p_random == pytest.approx((1 + hits) / 101) and abs(p_random - by_hand) < 0.15
