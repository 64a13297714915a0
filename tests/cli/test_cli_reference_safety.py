"""Reference files that are damaged, foreign, oversized or hostile: refused with a clear message, exit
code 2, nothing executed (each hostile file would create a marker file if any of it ran)."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

import tiny
from weightwatch.analysis import ReferenceFileError, load_reference
from weightwatch.analysis.classification.reffile import ARRAY_PREFIX, JSON_MEMBER, MAX_FILE_BYTES
from weightwatch.cli import main


class Marker:
    """Unpickling this creates ``path``: proof that code from the file ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def rewrite(src: Path, dst: Path, *, members: dict[str, bytes] | None = None, json_text: str | None = None,
            drop: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            if item.filename in drop or item.filename in (members or {}):
                continue
            data = zin.read(item.filename)
            if item.filename == JSON_MEMBER and json_text is not None:
                data = json_text.encode()
            zout.writestr(item.filename, data)
        for name, data in (members or {}).items():
            zout.writestr(name, data)
    return dst


def first_array(ref: Path) -> str:
    with zipfile.ZipFile(ref) as zf:
        return next(n for n in zf.namelist() if n.startswith(ARRAY_PREFIX))


def doc_of(ref: Path) -> dict:
    with zipfile.ZipFile(ref) as zf:
        return json.loads(zf.read(JSON_MEMBER))


def npy_header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    """A .npy header declaring ``shape`` (and no data after it)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def hostile(ref: Path, tmp: Path, marker: Path, kind: str) -> Path:
    """A reference ``kind`` of hostile, built from the good ``ref``."""
    out = tmp / f"{kind}.ww"
    if kind == "pickle member":
        return rewrite(ref, out, members={"model.pkl": pickle.dumps(Marker(marker))})
    if kind == "pickle as the JSON":
        return rewrite(ref, out, members={JSON_MEMBER: pickle.dumps(Marker(marker))})
    if kind == "object .npy":
        arr = np.empty(3, dtype=object)
        arr[:] = Marker(marker)
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=True)
        return rewrite(ref, out, members={first_array(ref): buf.getvalue()})
    if kind == "the whole file a pickle":
        out.write_bytes(pickle.dumps(Marker(marker)))
        return out
    raise ValueError(kind)


@pytest.mark.parametrize("kind, words", [
    ("pickle member", "unexpected member 'model.pkl'"),
    ("pickle as the JSON", "reference.json is not valid JSON"),
    ("object .npy", "has dtype object, expected numbers"),
    ("the whole file a pickle", "not a ZIP archive"),
])
def test_a_reference_crafted_to_run_code_is_refused_and_nothing_runs(tiny_reference, tiny_population, tmp_path,
                                                                     capsys, kind, words):
    marker = tmp_path / "code-ran"
    bad = hostile(tiny_reference, tmp_path, marker, kind)
    with pytest.raises(ReferenceFileError, match=words):
        load_reference(bad)
    root, _ = tiny_population
    assert main(["classify", str(root), "--reference", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err
    assert main(["compare", str(root), "--reference", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert words in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "r").exists()  # refused before anything was written


def _json_edit(edit):
    def build(ref: Path, tmp: Path) -> Path:
        return rewrite(ref, tmp / "edited.ww", json_text=edit(json.dumps(doc_of(ref))))
    return build


def _truncated(ref: Path, tmp: Path) -> Path:
    out = tmp / "truncated.ww"
    out.write_bytes(ref.read_bytes()[: ref.stat().st_size // 2])
    return out


def _bit_flipped(ref: Path, tmp: Path) -> Path:
    """One byte of a compressed member flipped: the member fails its CRC (or does not inflate)."""
    data = bytearray(ref.read_bytes())
    with zipfile.ZipFile(ref) as zf:
        info = zf.getinfo(first_array(ref))
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size - 2] ^= 0xFF
    out = tmp / "flipped.ww"
    out.write_bytes(bytes(data))
    return out


def _oversized(ref: Path, tmp: Path) -> Path:
    out = tmp / "huge.ww"
    out.write_bytes(ref.read_bytes())
    os.truncate(out, MAX_FILE_BYTES + 1)  # sparse: no disk used
    return out


def _huge_array(ref: Path, tmp: Path) -> Path:
    """An array member declaring 10^12 float64 (8 TB) and holding none of it."""
    return rewrite(ref, tmp / "huge-array.ww", members={first_array(ref): npy_header((10**12,))})


def _short_array(ref: Path, tmp: Path) -> Path:
    return rewrite(ref, tmp / "short.ww", members={first_array(ref): npy_header((4,)) + b"\0" * 8})


def _nan_array(ref: Path, tmp: Path) -> Path:
    model = doc_of(ref)["steps"][0]["classifier"]
    key = f"{ARRAY_PREFIX}{next(iter(model['arrays'].values()))}.npy"
    with zipfile.ZipFile(ref) as zf:
        arr = np.load(io.BytesIO(zf.read(key)))
    arr = arr.astype(np.float64)
    arr.flat[0] = np.nan
    buf = io.BytesIO()
    np.save(buf, arr)
    return rewrite(ref, tmp / "nan-array.ww", members={key: buf.getvalue()})


CASES = [
    ("truncated", _truncated, "not a ZIP archive"),
    ("a byte flipped", _bit_flipped, "is damaged"),
    ("oversized", _oversized, "larger than any reference"),
    ("array declared larger than memory", _huge_array, "declares shape (1000000000000,) (8000000000000 bytes) "
                                                      "but holds 0 bytes"),
    ("array shorter than declared", _short_array, "declares shape (4,) (32 bytes) but holds 8 bytes"),
    ("NaN in a model", _nan_array, "holds NaN or infinite values"),
    ("no reference.json", lambda r, t: rewrite(r, t / "nojson.ww", drop=(JSON_MEMBER,)), "no reference.json"),
    ("another version", _json_edit(lambda s: s.replace('"version": 1,', '"version": 7,', 1)),
     "format version 7; this weightwatch reads version 1. Upgrade"),
    ("NaN in the JSON", _json_edit(lambda s: s.replace('"cv": 3', '"cv": NaN', 1)), "NaN is not valid JSON"),
    ("Infinity in the JSON", _json_edit(lambda s: s.replace('"cv": 3', '"cv": Infinity', 1)),
     "Infinity is not valid JSON"),
    ("1e999 in the JSON", _json_edit(lambda s: s.replace('"cv": 3', '"cv": 1e999', 1)), "out of range"),
    ("nesting deep enough to overflow the parser", _json_edit(lambda s: s[:-1] + ', "x": ' + "[" * 200_000
                                                              + "]" * 200_000 + "}"), "nested too deeply"),
    ("the JSON a list", _json_edit(lambda s: "[" + s + "]"), "holds list, not an object"),
    ("features a list", _json_edit(lambda s: s.replace('"features": {', '"features": [{', 1).replace(
        '}, "label"', '}], "label"', 1)), "was fitted on features None"),
    ("steps a string", _json_edit(lambda s: s[:s.index('"steps"')] + '"steps": "all"}'),
     "steps must be a non-empty list"),
    ("label without a metric", _json_edit(lambda s: s.replace('"metric": "val_accuracy"', '"metric": 3', 1)),
     "label.metric must be a string"),
    ("a step's runs a string", _json_edit(lambda s: s.replace('"runs": 12', '"runs": "many"')), "malformed"),
]


@pytest.mark.parametrize("case, build, words", CASES, ids=[c[0] for c in CASES])
def test_an_unusable_reference_is_refused_with_a_clear_message(tiny_reference, tiny_population, tmp_path, capsys,
                                                               case, build, words):
    bad = build(tiny_reference, tmp_path)
    with pytest.raises(ReferenceFileError) as exc:
        load_reference(bad)
    assert words in str(exc.value)
    root, _ = tiny_population
    assert main(["classify", str(root / "run03"), "--reference", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("weightwatch classify: ") and err.count("\n") == 1 and words in err


def test_the_good_reference_still_loads(tiny_reference):
    assert load_reference(tiny_reference).steps


def test_a_run_of_another_architecture_gets_a_warning_and_no_verdict(tiny_reference, tmp_path, capsys):
    run = tiny.tiny_run(tmp_path / "deeper", 0.9, seed=3, hidden=3)
    assert main(["classify", str(run), "--reference", str(tiny_reference), "--json"]) == 0
    [p] = json.loads(capsys.readouterr().out)
    assert p["group"] == "uncertain"
    assert any("another architecture: the reference was fitted on DNN (fc, output) runs, this run is "
               "DNN (fc×3, output); no verdict" in n for n in p["notes"])
    same = tiny.tiny_run(tmp_path / "same", 0.9, seed=3, width=16)  # wider, same family: judged
    assert main(["classify", str(same), "--reference", str(tiny_reference), "--json"]) == 0
    [p] = json.loads(capsys.readouterr().out)
    assert p["group"] in ("optimal", "suboptimal") and not any("another architecture" in n for n in p["notes"])
