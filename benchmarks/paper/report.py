"""Analyse the trained populations through the ``weightwatch`` command line and write RESULTS.md.

Everything the analysis says comes from ``python -m weightwatch compare|fit ... --json``
(the stable interface) and from the runs read back with TensorBoard's reader
(logs.py, claims.py). Each number in the results carries the command that made it.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from .claims import family_claims, vit_query_key_unchanged
from .logs import read_runs
from .models import FAMILIES

FAMILY_TITLE = {"dnn": "DNN (784-h-h-10)", "cnn": "CNN (Conv 3x3, C channels -> FC 10)",
                "vit": "ViT (one encoder layer, d_model 784 -> FC 10)"}
GROUPS = ("non", "low", "mid", "high")


def weightwatch(*args: str) -> tuple[dict | None, str, str]:
    """Run ``python -m weightwatch ARGS --json``; returns (its JSON or None, the command, stderr's tail)."""
    cmd = [sys.executable, "-m", "weightwatch", *args, "--json"]
    shown = "python -m weightwatch " + " ".join(shlex.quote(a) for a in [*args, "--json"])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    try:
        data = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        data = None
    tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    if proc.returncode != 0 or data is None or "error" in (data or {}):
        return None, shown, (data or {}).get("error", tail) if isinstance(data, dict) else tail
    return data, shown, tail


def _family_of(name: str) -> str:
    return name.split("/")[0]


def analyse(out: Path, trained: dict) -> dict:
    """compare (held-out and training accuracy), fit per family, and the per-figure claims."""
    runs_dir, report_dir = out / "runs", out / "report"
    held, held_cmd, held_err = weightwatch("compare", str(runs_dir), "--out", str(report_dir))
    train, train_cmd, train_err = weightwatch("compare", str(runs_dir), "--metric", "accuracy", "--no-figures",
                                              "--no-tensorboard", "--out", str(out / "report-train"))
    if held is None:
        raise RuntimeError(f"weightwatch compare failed: {held_err} ({held_cmd})")
    for name, result in (("compare-heldout.json", held), ("compare-train.json", train)):
        (out / name).write_text(json.dumps(result, indent=1))  # what the table was made from
    fits = {}
    (out / "fit").mkdir(exist_ok=True)
    for family in FAMILIES:
        for kind, path, extra in (("all", runs_dir / family, []), ("seeds", runs_dir / family / "seeds", ["--top", "0.5"])):
            data, cmd, err = weightwatch("fit", str(path), "-o", str(out / "fit" / f"{family}-{kind}.ww"), *extra)
            fits[f"{family}/{kind}"] = {"result": data, "command": cmd, "error": err if data is None else ""}
    logged = read_runs(runs_dir)
    groups = {name: info["group"] for name, info in held["runs"].items()}
    claims, families = {}, {}
    for family in FAMILIES:
        rs = [r for r in logged if r.family == family]
        claims[family] = family_claims(rs, groups)
        families[family] = sorted({held["runs"][r.name]["family"] for r in rs if r.name in held["runs"]})
    vit = vit_query_key_unchanged([r for r in logged if r.family == "vit"])
    frameworks = {f: {fw: sum(r.framework == fw for r in logged if r.family == f) for fw in ("torch", "keras")}
                  for f in FAMILIES}
    keras_groups = {g: sum(1 for r in logged if r.framework == "keras" and groups.get(r.name) == g) for g in GROUPS}
    return {"trained": trained, "held": held, "held_command": held_cmd, "train": train, "train_command": train_cmd,
            "train_error": train_err, "fits": fits, "claims": claims, "families": families, "vit_qk": vit,
            "frameworks": frameworks, "keras_groups": keras_groups, "runs_read": len(logged)}


def _f(x, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def table2(analysis: dict) -> str:
    """Our Table 2: per family and group, runs and min / median / max of held-out and training accuracy."""
    def rows(result: dict | None) -> dict:
        if not result:
            return {}
        return {(r["family"], r["group"]): r for r in result["table"]}
    held, train = rows(analysis["held"]), rows(analysis["train"])
    lines = ["| family | group | runs | held-out min | median | max | runs | training-batch min | median | max |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for family in FAMILIES:
        for label in analysis["families"][family]:
            for g in GROUPS:
                h, t = held.get((label, g)), train.get((label, g))
                if not h and not t:
                    continue
                cells = [f"{FAMILY_TITLE[family]} `{label}`", g]
                for r in (h, t):
                    cells += [str(r["runs"]), _f(r["min"]), _f(r["median"]), _f(r["max"])] if r else ["0", "", "", ""]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def dispersion(analysis: dict) -> str:
    lines = ["| family | role | high runs | low runs | dispersion high | dispersion low | ratio (effect size) "
             "| p (high tighter) | reading |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for d in analysis["held"]["dispersion"]:
        lines.append(f"| `{d['family']}` | {d['role']} | {d['n_high']} | {d['n_low']} | {_f(d['dispersion_high'])} | "
                     f"{_f(d['dispersion_low'])} | {_f(d['ratio'], 2)} | {_f(d['p_value'], 4)} | {d['reading']} |")
    return "\n".join(lines)


def fit_table(entry: dict) -> str:
    """The fit's held-out per-step table; every numeric column fit reports (more may come), then the baselines."""
    res = entry["result"]
    if res is None:
        return f"not fitted: {entry['error']}"
    curve = res.get("curve", [])
    keys = [k for k in (curve[0] if curve else {}) if k not in ("step",)
            and all(isinstance(c.get(k), (int, float)) or c.get(k) is None for c in curve)]
    beside = ("chosen family", "AUC: metric so far", "AUC: best extrapolation", "AUC: weights only")
    lines = [f"{res.get('runs')} runs, {res.get('optimal')} optimal ({res.get('rule')}, final {res.get('metric')} "
             f">= {_f(res.get('threshold'))}). The AUC columns on the right are the baselines at the same step: "
             "the metric logged so far and the best curve extrapolation as raw scores, and the model of the "
             "weight features alone (cross-validated like the chosen one).", "",
             "| step | " + " | ".join(keys + list(beside)) + " |", "|---:|" + "---:|" * len(keys) + "---|---:|---:|---:|"]
    for c in curve:
        lines.append(f"| {c['step']} | " + " | ".join(_f(c.get(k)) if not isinstance(c.get(k), int) else str(c[k])
                                                     for k in keys) + " | " + " | ".join(_beside(c)) + " |")
    b = res.get("baseline") or {}
    if b.get("available"):
        lines += ["", f"hyperparameters only ({', '.join(b.get('hparams', []))}): AUC {_f(b.get('auc'))}, "
                      f"Kendall tau {_f(b.get('kendall_tau'))}, R^2 {_f(b.get('r2'))}."]
    elif b:
        lines += ["", f"hyperparameters only: not measured ({b.get('reason', '')})."]
    for name, value in res.items():  # baselines added later (e.g. metric-so-far) are shown as they come
        if name.endswith("baseline") and name != "baseline" and isinstance(value, dict):
            lines.append(f"{name}: " + ", ".join(f"{k} {_f(v) if isinstance(v, float) else v}"
                                                 for k, v in value.items() if not isinstance(v, (list, dict))))
    return "\n".join(lines)


def _beside(step: dict) -> list[str]:
    """The chosen family and the baselines' AUC at one step of fit's curve."""
    base = step.get("baselines") or {}
    weights = (step.get("families") or {}).get("weights") or {}
    extrapolation = base.get("extrapolation") or {}
    named = f" ({extrapolation['curve']})" if extrapolation.get("curve") else ""
    return [str(step.get("family", "")), _f((base.get("metric_so_far") or {}).get("auc")),
            _f(extrapolation.get("auc")) + named, _f(weights.get("auc"))]


def shrink_png(src: Path, dst: Path, width: int = 1100) -> None:
    """Copy a figure as a palette PNG at most ``width`` pixels wide (keeps the repository small)."""
    from PIL import Image

    with Image.open(src) as im:
        im = im.convert("RGB")
        if im.width > width:
            im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        im.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)
