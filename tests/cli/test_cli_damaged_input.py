"""Damaged and odd input never stops the analysis of the rest: each situation, one row.

Every row damages one run of a private copy of the tiny population (or adds one), runs
``weightwatch compare --json`` and ``weightwatch classify`` on it and checks: exit code 0, every
other run analysed with its true final metric (the figures are left out here: they have tests below), the damaged run either kept (its problem named) or
skipped (named on one stderr line with the reason, and counted in the summary), nothing written
into the runs' folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tiny
from tiny import compare_json, event_file, snapshot, write_info
from weightwatch.analysis.loading.records import frame
from weightwatch.cli import main

DAMAGED = "run05"


def flip_a_data_byte(run_dir: Path) -> None:
    """Flip one byte inside the data of the event file's last record (its checksum then fails)."""
    path = event_file(run_dir)
    data = bytearray(path.read_bytes())
    framing = frame(bytes(data))
    data[int(framing.starts[-1])] ^= 0xFF
    path.write_bytes(bytes(data))


def layer(**over):
    return {"name": "fc0", "kind": "linear", "role": "fc", "shape": [8, 6], **over}


# (id, damage applied to runs/run05, "kept" or "skipped", words the message must hold)
CASES = [
    ("truncated event file", lambda d: event_file(d).write_bytes(event_file(d).read_bytes()[:-30]),
     "kept", "incomplete record at byte"),
    ("empty event file", lambda d: event_file(d).write_bytes(b""), "skipped", "no readable record"),
    ("random-bytes event file", lambda d: event_file(d).write_bytes(np.random.default_rng(0).bytes(4096)),
     "skipped", "corrupt record header at byte 0"),
    ("bad checksum", flip_a_data_byte, "kept", "fails its data checksum: skipped it"),
    ("weightwatch.json not JSON", lambda d: write_info(d, "{not json"), "kept",
     "weightwatch.json is unreadable (Expecting property name"),
    ("weightwatch.json a list", lambda d: write_info(d, "[1, 2]"), "kept", "weightwatch.json holds list"),
    ("weightwatch.json NaN", lambda d: write_info(d, '{"layers": [], "bins": NaN}'), "kept",
     "NaN is not valid JSON"),
    ("weightwatch.json Infinity", lambda d: write_info(d, '{"created": 1e999}'), "kept",
     "1e999 is out of range"),
    ("weightwatch.json nested deeply", lambda d: write_info(d, "[" * 200_000 + "]" * 200_000), "kept",
     "nested too deeply"),
    ("weightwatch.json huge", lambda d: write_info(d, '{"x": "' + "a" * (9 << 20) + '"}'), "kept",
     "more than the 8388608 a run's info can be"),
    ("weightwatch.json not UTF-8", lambda d: (d / "weightwatch.json").write_bytes(b'{"a": "\xff"}'), "kept",
     "can't decode byte 0xff"),
    ("layers a string", lambda d: write_info(d, json.dumps({"layers": "fc0, out"})), "kept",
     "layers is str, expected a list"),
    ("layer shape of strings", lambda d: write_info(d, json.dumps({"layers": [layer(shape=["8", "6"])]})), "kept",
     "layers[0] shape is ['8', '6']"),
    ("layer shape negative", lambda d: write_info(d, json.dumps({"layers": [layer(shape=[-8, 6])]})), "kept",
     "layers[0] shape is [-8, 6]"),
    ("layer role a number", lambda d: write_info(d, json.dumps({"layers": [layer(role=3)]})), "kept",
     "layers[0] role is 3, expected a string"),
    ("layer an int", lambda d: write_info(d, json.dumps({"layers": [7]})), "kept", "layers[0] is int"),
    ("hparams a list", lambda d: write_info(d, json.dumps({**tiny.info(d), "hparams": [1, 2]})), "kept",
     "hparams is list, expected an object; ignored"),
    ("hparam an object", lambda d: write_info(d, json.dumps({**tiny.info(d), "hparams": {"lr": {"a": 1}}})), "kept",
     "hparams 'lr' are not a string, number or boolean"),
    ("architecture a number", lambda d: write_info(d, json.dumps({**tiny.info(d), "architecture": 5})), "kept",
     "architecture is 5, expected a string"),
    ("architecture a path", lambda d: write_info(d, json.dumps({**tiny.info(d), "architecture": "../../../x"})),
     "kept", None),
    ("no metric", lambda d: (event_file(d).unlink(), tiny.tiny_run(d, None)), "skipped",
     "no val_accuracy / eval_accuracy / accuracy / test_accuracy / acc scalar (its scalars: loss)"),
]


@pytest.mark.parametrize("case, damage, outcome, words", CASES, ids=[c[0] for c in CASES])
def test_damaged_run(runs, tmp_path, capsys, tiny_reference, case, damage, outcome, words):
    root, truth = runs
    damage(root / DAMAGED)
    before = snapshot(root)
    code, result, err = compare_json(capsys, str(root), "--out", str(tmp_path / "report"), "--no-figures")
    assert code == 0, err
    others = {n: v for n, v in truth.items() if n != DAMAGED}
    for name, value in others.items():
        assert result["runs"][name]["value"] == pytest.approx(value, rel=1e-6)
    messages = result["problems"].get(DAMAGED, [])
    if outcome == "skipped":
        assert DAMAGED not in result["runs"] and list(result["skipped"]) == [DAMAGED]
        assert words in result["skipped"][DAMAGED]
        lines = [ln for ln in err.splitlines() if ln.startswith("weightwatch compare: skipped ")]
        assert len(lines) == 1 and lines[0].startswith(f"weightwatch compare: skipped {DAMAGED}: ") and words in lines[0]
    else:
        assert DAMAGED in result["runs"] and result["skipped"] == {}
        if words:
            assert any(words in m for m in messages), messages
    assert snapshot(root) == before  # nothing written into the runs
    assert "Traceback" not in err
    # classify judges the others and names the damaged run when it cannot judge it
    assert main(["classify", str(root), "--reference", str(tiny_reference), "--json"]) == 0
    captured = capsys.readouterr()
    judged = {Path(p["run"]).name for p in json.loads(captured.out)}
    assert set(others) <= judged
    if outcome == "skipped" and case != "no metric":  # judging a run does not need its final metric
        assert DAMAGED not in judged and f"skipped {root / DAMAGED}: " in captured.err


def test_an_architecture_id_that_is_a_path_writes_nothing_outside_out(runs, tmp_path, capsys):
    root, truth = runs
    for name in truth:
        write_info(root / name, json.dumps({**tiny.info(root / name), "architecture": "../../../escape/x"}))
    code, result, _ = compare_json(capsys, str(root), "--out", str(tmp_path / "out" / "report"))
    assert code == 0
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()} - {
        p.relative_to(tmp_path) for p in root.rglob("*") if p.is_file()}
    assert written and all(p.parts[:2] == ("out", "report") for p in written), written
    assert any(Path(f).name.startswith("tsne-dnn-fc-output-escape-x") for f in result["figures"])


def test_text_output_names_each_skipped_run_in_one_line_and_counts_them(runs, tmp_path, capsys):
    root, truth = runs
    event_file(root / "run02").write_bytes(b"")
    tiny.tiny_run(root / "no metric here", None)
    assert main(["compare", str(root), "--out", str(tmp_path / "r"), "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert f"{len(truth) - 1} runs under {root} grouped by final val_accuracy, 2 skipped" in out
    assert "\n  skipped no metric here: no val_accuracy / eval_accuracy" in out
    assert "\n  skipped run02: events.out.tfevents" in out and ": no readable record\n" in out


def test_fit_skips_damaged_runs_and_fits_on_the_rest(runs, tmp_path, capsys):
    root, truth = runs
    event_file(root / "run02").write_bytes(b"")
    tiny.tiny_run(root / "nometric", None)
    assert main(["fit", str(root), "-o", str(tmp_path / "ref.ww"), "--cv", "2", "--no-baseline", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["runs"] == len(truth) - 1 and json.loads(captured.out)["skipped"] == 2
    assert "weightwatch fit: skipped run02: " in captured.err and "weightwatch fit: skipped nometric: " in captured.err


def test_one_step_runs(tmp_path, capsys):
    root = tmp_path / "runs"
    truth = tiny.population(root, 8, steps=1)
    code, result, err = compare_json(capsys, str(root), "--out", str(tmp_path / "r"))
    assert code == 0 and "Traceback" not in err
    assert {n: r["value"] for n, r in result["runs"].items()} == pytest.approx(truth, rel=1e-6)
    assert result["figures"]  # drawn from one step too


def test_runs_of_other_architectures_mixed_in(runs, tmp_path, capsys):
    root, truth = runs
    for i in range(4):
        tiny.tiny_run(root / f"deep{i}", 0.5 + 0.1 * i, seed=50 + i, hidden=2)
        tiny.tiny_run(root / f"wide{i}", 0.5 + 0.1 * i, seed=60 + i, width=16)
    code, result, _ = compare_json(capsys, str(root), "--out", str(tmp_path / "r"))
    assert code == 0
    families = {name: run["family"] for name, run in result["runs"].items()}
    assert {families[f"deep{i}"] for i in range(4)} == {"DNN (fc×2, output)"}
    assert {families[n] for n in truth} | {families[f"wide{i}"] for i in range(4)} == {"DNN (fc, output)"}
    assert any("2 architecture families" in w for w in result["warnings"])


NAMES = ["with space", "ünïcødé-λ", "tab\there", "new\nline", "quote'and\"double", "[bold]markup[/bold]"]


def test_odd_run_names(tmp_path, capsys):
    """Spaces, unicode, tabs, newlines, quotes, rich markup: found, grouped, shown on one line each, and
    the projector's metadata keeps one row per run."""
    root = tmp_path / "runs"
    for i, name in enumerate(NAMES):
        tiny.tiny_run(root / name, 0.4 + 0.1 * i, seed=i)
    tiny.tiny_run(root / "skipped\tbad", None)
    code, result, err = compare_json(capsys, str(root), "--out", str(tmp_path / "r"))
    assert code == 0 and sorted(result["runs"]) == sorted(NAMES)
    assert "weightwatch compare: skipped skipped\\tbad: no val_accuracy" in err
    pop = Path(result["tensorboard"])
    (metadata,) = pop.glob("metadata_*.tsv")
    rows = metadata.read_text(encoding="utf-8").split("\n")
    assert rows[-1] == "" and len(rows) == len(NAMES) + 2  # header + one line per run
    assert sorted(r.split("\t")[0] for r in rows[1:-1]) == sorted(n.replace("\t", "\\t").replace("\n", "\\n")
                                                                 for n in NAMES)
    assert all(len(r.split("\t")) == 4 for r in rows[:-1])
    assert main(["compare", str(root), "--out", str(tmp_path / "r2"), "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert "  skipped skipped\\tbad: " in out and "new\nline" not in out
    html = (tmp_path / "r2" / "index.html").read_text(encoding="utf-8")
    assert "ünïcødé-λ" in html and "quote&#x27;and&quot;double" in html


@pytest.mark.slow
def test_2000_runs_in_one_folder(tmp_path):
    """2000 tiny runs (one step each) in one directory, compared by the command in a subprocess."""
    root = tmp_path / "runs"
    for i in range(2000):
        tiny.tiny_run(root / f"r{i:04d}", 0.35 + 0.6 * (i % 100) / 99, seed=i, steps=1)
    proc = subprocess.run([sys.executable, "-m", "weightwatch", "compare", str(root), "--out", str(tmp_path / "r"),
                           "--json", "--no-figures"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert len(result["runs"]) == 2000 and not result["skipped"]
    assert sum(row["runs"] for row in result["table"]) == 2000
