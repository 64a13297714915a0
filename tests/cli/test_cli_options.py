"""Bad option values, exit codes, Ctrl-C (no partial file left), and what the report shows."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tiny
from tiny import compare_json, snapshot
from weightwatch.cli import main


def one_line_error(capsys, argv: list[str], code: int, words: str) -> str:
    """``main(argv)`` exits ``code`` (argparse's own errors included) with one line on stderr holding ``words``."""
    try:
        got = main(argv)
    except SystemExit as exc:
        got = exc.code
    err = capsys.readouterr().err
    assert got == code, err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("argv, words", [
    (["compare", "R", "--thresholds", "nan,inf"], "thresholds must be finite numbers, got 'nan,inf'"),
    (["compare", "R", "--thresholds", "0.5,inf"], "thresholds must be finite numbers"),
    (["compare", "R", "--thresholds", "0.9,0.5"], "thresholds must be increasing, got 0.9 > 0.5"),
    (["compare", "R", "--thresholds", "0.5"], "expected two numbers 'a,b'"),
    (["compare", "R", "--thresholds", "a,b"], "expected two numbers 'a,b'"),
    (["compare", "R", "--workers", "0"], "expected a number >= 1, got 0"),
    (["compare", "R", "--workers", "many"], "expected a whole number, got 'many'"),
    (["fit", "R", "--cv", "1"], "cross-validation needs at least 2 folds"),
    (["fit", "R", "--top", "2"], "expected a fraction in (0, 1], got '2'"),
    (["fit", "R", "--threshold", "nan"], "expected a finite number, got 'nan'"),
    (["fit", "R", "--top", "0.5", "--threshold", "0.5"], "not allowed with argument"),
    (["classify", "R"], "the following arguments are required: --reference"),
    (["compare", "R", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["nonsense"], "invalid choice: 'nonsense'"),
])
def test_bad_option_values_get_one_line_and_exit_2(tiny_population, capsys, argv, words):
    root, _ = tiny_population
    argv = [str(root) if a == "R" else a for a in argv]
    one_line_error(capsys, argv, 2, words)


def test_unusable_paths_exit_2_and_nothing_useful_exits_1(tiny_population, tiny_reference, tmp_path, capsys):
    root, _ = tiny_population
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    one_line_error(capsys, ["compare", str(root), "--out", str(a_file / "report")], 2,
                   f"cannot write to --out {str(a_file / 'report')!r}: not a directory")
    one_line_error(capsys, ["fit", str(root), "-o", str(a_file / "ref.ww")], 2, "cannot write to -o")
    one_line_error(capsys, ["fit", str(root), "-o", str(tmp_path)], 2, "is a directory")
    one_line_error(capsys, ["compare", str(tmp_path / "missing")], 2, "missing' does not exist")
    one_line_error(capsys, ["fit", str(tmp_path / "missing")], 2, "missing' does not exist")
    one_line_error(capsys, ["classify", str(tmp_path / "missing"), "-r", str(tiny_reference)], 2, "does not exist")
    one_line_error(capsys, ["classify", str(root), "-r", str(tmp_path / "missing.ww")], 2,
                   "cannot read the reference")
    (tmp_path / "empty").mkdir()
    one_line_error(capsys, ["compare", str(tmp_path / "empty"), "--out", str(tmp_path / "r")], 1, "no runs under")
    one_line_error(capsys, ["fit", str(tmp_path / "empty"), "-o", str(tmp_path / "x.ww")], 1, "no runs found")
    one_line_error(capsys, ["classify", str(tmp_path / "empty"), "-r", str(tiny_reference)], 1,
                   f"no run found in {str(tmp_path / 'empty')!r}")
    assert not (tmp_path / "r").exists() and not (tmp_path / "x.ww").exists()
    assert main([]) == 2 and "COMMAND" in capsys.readouterr().out


def test_the_exit_codes_are_documented(capsys):
    """docs/compare.md, docs/classify.md and the cli module say the same: 0, 1, 2, 130."""
    import weightwatch.cli as cli

    repo = Path(__file__).resolve().parents[2]
    for text in (cli.__doc__, (repo / "docs" / "compare.md").read_text(), (repo / "docs" / "classify.md").read_text()):
        flat = " ".join(text.split())
        for code, meaning in (("0", "done"), ("1", "nothing useful"), ("2", "bad arguments or unusable input"),
                              ("130", "Ctrl-C")):
            assert re.search(rf"\b{code}\b[^.;]*{meaning}", flat, re.IGNORECASE), (code, meaning, flat[:300])


@pytest.mark.parametrize("where", ["loading", "figures", "report", "publish"])
def test_ctrl_c_during_compare_leaves_no_partial_file(runs, tmp_path, capsys, monkeypatch, where):
    """A first compare fills --out; an interrupted second one leaves it exactly as it was."""
    from weightwatch.analysis.rendering import html, output, report

    root, _ = runs
    out = tmp_path / "report"
    assert main(["compare", str(root), "--out", str(out), "--no-figures"]) == 0
    capsys.readouterr()
    before = snapshot(out)

    def interrupt(*args, **kwargs):
        if where == "figures":  # half a PNG written, as a real Ctrl-C in savefig would leave it
            (Path(args[1]) / "convergence-half.png").write_bytes(b"\x89PNG\r\n")
        raise KeyboardInterrupt

    def publish_one_then_interrupt(self):  # Ctrl-C between two of the atomic renames
        first = sorted(p for p in self.dir.rglob("*") if p.is_file())[0]
        os.replace(first, self.out / first.relative_to(self.dir))
        raise KeyboardInterrupt

    target = {"loading": (report, "compare_runs", interrupt), "figures": (report, "write_figures", interrupt),
              "report": (html, "render", interrupt),
              "publish": (output.Staging, "publish", publish_one_then_interrupt)}[where]
    monkeypatch.setattr(*target)
    assert main(["compare", str(root), "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert err == "weightwatch compare: interrupted; no partial output was left\n"
    after = snapshot(out)
    assert not [p for p in after if ".weightwatch-staging-" in p]
    if where == "publish":  # one file moved in complete (new, or replacing its old version), the others untouched
        changed = [p for p in after if before.get(p) != after[p]]
        assert set(before) <= set(after) and len(changed) == 1
        data = (out / changed[0]).read_bytes()
        assert not changed[0].endswith(".png") or data.endswith(b"IEND\xaeB`\x82")  # a whole PNG
    else:
        assert after == before


class _SwallowsCtrlC:
    """Receives SIGINT inside ``__del__``, where CPython prints the KeyboardInterrupt as
    "Exception ignored in ..." and drops it: what a Ctrl-C landing in an import lock's clean-up does."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)  # the handler runs here, and its KeyboardInterrupt goes no further than __del__


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("command", ["compare", "fit"])
def test_a_swallowed_ctrl_c_still_stops_the_command(runs, tmp_path, capsys, monkeypatch, command):
    """Ctrl-C whose KeyboardInterrupt never reaches the command still gives 130 and publishes nothing.

    Seen in CI: SIGINT arrived in importlib's module-lock callback, the interrupt was swallowed,
    and compare finished with exit 0 and its report written."""
    from weightwatch.analysis.classification import fit
    from weightwatch.analysis.rendering import report

    root, _ = runs
    out = tmp_path / "out"
    module, name = (report, "write_figures") if command == "compare" else (fit, "fit_step")
    original = getattr(module, name, None)
    assert original is not None, f"{module.__name__}.{name} is gone: point the test at a step of {command}"

    def swallow_then_go_on(*args, **kwargs):
        _SwallowsCtrlC()  # dropped at once: __del__ receives the signal
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, swallow_then_go_on)
    target = ["--out", str(out)] if command == "compare" else ["-o", str(out / "ref.ww")]
    assert main([command, str(root), *target]) == 130
    err = capsys.readouterr().err
    assert err.endswith(f"weightwatch {command}: interrupted; no partial output was left\n"), err
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]
    monkeypatch.undo()  # not interrupted: the same command publishes (fit creates -o's missing directory)
    assert main([command, str(root), *target]) == 0 and [p for p in out.rglob("*") if p.is_file()]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the command put the handler back


@pytest.mark.slow
def test_ctrl_c_sent_to_a_running_compare(tiny_population, tmp_path):
    """SIGINT to ``python -m weightwatch compare`` while it writes its report: exit 130, one line, and
    no file in --out (it was empty before)."""
    root, _ = tiny_population
    out = tmp_path / "report"
    proc = subprocess.Popen([sys.executable, "-m", "weightwatch", "compare", str(root), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out.exists() and any(p.name.startswith(".weightwatch-staging-") for p in out.iterdir())):
        assert proc.poll() is None and time.time() < deadline, "compare ended before it was interrupted"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "weightwatch compare: interrupted; no partial output was left"
    assert "Traceback" not in err
    assert list(out.iterdir()) == []


def test_two_groups_show_one_boundary(tmp_path, capsys):
    """A family whose converged runs take two values: one boundary, low|high, not the same number twice."""
    root = tmp_path / "runs"
    for i in range(6):
        tiny.tiny_run(root / f"r{i}", 0.8 if i < 3 else 0.918, seed=i)
    code, result, _ = compare_json(capsys, str(root), "--out", str(tmp_path / "r"), "--no-figures")
    assert code == 0 and list(result["thresholds"].values()) == [[pytest.approx(0.918, rel=1e-6)]]
    html = (tmp_path / "r" / "index.html").read_text()
    assert "DNN (fc, output): low|high 0.918" in html and "0.918, 0.918" not in html
    assert main(["compare", str(root), "--out", str(tmp_path / "r"), "--no-figures"]) == 0
    assert "group boundaries: DNN (fc, output): low|high 0.918" in capsys.readouterr().out
    code, result, _ = compare_json(capsys, str(root), "--out", str(tmp_path / "r"), "--no-figures",
                                   "--thresholds", "0.5,0.9")
    assert "low|mid 0.500, mid|high 0.900" in (tmp_path / "r" / "index.html").read_text()


def test_the_report_lists_each_runs_prediction(runs, tiny_reference, tmp_path, capsys):
    root, truth = runs
    code, result, _ = compare_json(capsys, str(root), "--out", str(tmp_path / "r"), "--reference",
                                   str(tiny_reference))
    assert code == 0 and sorted(p["run"] for p in result["predictions"]) == sorted(truth)
    html = (tmp_path / "r" / "index.html").read_text()
    table = html[html.index("<table class='sortable' id='predictions'>"):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == len(truth) + 1  # header + one row per run
    for p in result["predictions"]:
        row = table[table.index(f"<tr><td>{p['run']}</td>"):]
        row = row[:row.index("</tr>")]
        assert f"data-value='{float(p['p_optimal'])!r}'" in row and f"<td>{p['group']}</td>" in row
        assert all(d["feature"] in row for d in p["drivers"])
    assert "<script>" in html and "http://" not in html and "https://" not in html  # nothing loaded from elsewhere
    assert "src='data:image/png;base64," in html and " src='http" not in html
    code, plain, _ = compare_json(capsys, str(root), "--out", str(tmp_path / "r2"))
    assert "id='predictions'" not in (tmp_path / "r2" / "index.html").read_text() and "predictions" not in plain


def test_json_mode_prints_json_even_on_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, result, err = compare_json(capsys, str(tmp_path / "empty"), "--out", str(tmp_path / "r"))
    assert code == 1 and "no runs under" in result["error"] and err.count("\n") == 1
    code, result, _ = compare_json(capsys, str(tmp_path / "gone"), "--out", str(tmp_path / "r"))
    assert code == 2 and "does not exist" in result["error"]
    json.dumps(result)


def test_ctrl_c_while_fit_writes_the_reference_leaves_no_file(runs, tmp_path, capsys, monkeypatch):
    import zipfile

    root, _ = runs
    real = zipfile.ZipFile.writestr
    calls = []

    def interrupt(self, name, data, *args, **kwargs):
        calls.append(name)
        if len(calls) == 3:  # part of the archive written
            raise KeyboardInterrupt
        return real(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", interrupt)
    assert main(["fit", str(root), "-o", str(tmp_path / "ref.ww"), "--cv", "2", "--no-baseline"]) == 130
    assert capsys.readouterr().err.endswith("weightwatch fit: interrupted; no partial output was left\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
