"""What fit and classify print: the fit's held-out quality per step (each feature family beside the
baselines, and where the weights add nothing), each run's verdict."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..classification.families import WEIGHT_FAMILIES
from ..classification.fit import EARLY_AUC, FitResult
from ..classification.reference import Prediction, Reference


def _f(v: Any) -> str:
    return "  n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:5.3f}"


#: The columns of the per-step table: (header, where the AUC comes from).
_TABLE = (("metric so far", "baseline", "metric_so_far"), ("extrapolation", "baseline", "extrapolation"),
          ("hparams", "family", "hparams"), ("curve", "family", "curve"), ("tensor", "family", "tensor"),
          ("neurons", "family", "neurons"), ("updates", "family", "updates"), ("weights", "family", "weights"),
          ("combined", "family", "combined"))


def weights_statement(step: int, c: dict[str, Any]) -> str | None:
    """The plain statement for a step where the weights add nothing (None where they do)."""
    if not c.get("weights_add_nothing"):
        return None
    fams = c.get("families", {})
    best_w = max((q["auc"] for f, q in fams.items() if q.get("available") and f in WEIGHT_FAMILIES), default=None)
    return (f"step {step}: the weights add nothing here: {c['family']} alone validates at AUC {_f(c['auc']).strip()}"
            + (f", the best model with the weights at {_f(best_w).strip()}" if best_w is not None else "")
            + f"; the reference uses {c['family']} at this step")


def reference_notes(ref: Reference) -> list[str]:
    """Per step of ``ref``, the family it uses, and plainly where the weights add nothing."""
    notes = []
    for m in ref.steps:
        c = {"step": m.step, **m.cv}
        notes.append(weights_statement(m.step, c) or
                     f"step {m.step}: the reference uses {c.get('family', 'its model')} (cross-validated AUC "
                     f"{_f(c.get('auc')).strip()})")
    return notes


def family_table(curve: Sequence[dict[str, Any]], key: str = "auc") -> list[str]:
    """The per-step table of cross-validated ``key`` (auc, kendall_tau, r2) per family and baseline."""
    head = " step  " + "  ".join(f"{h:>{max(len(h), 5)}}" for h, _, _ in _TABLE) + "  chosen"
    lines = [head]
    for c in curve:
        cells = []
        for h, kind, name in _TABLE:
            q = (c.get("baselines", {}) if kind == "baseline" else c.get("families", {})).get(name, {})
            v = q.get(key) if (kind == "baseline" or q.get("available")) else None
            cells.append(f"{_f(v):>{max(len(h), 5)}}")
        lines.append(f"{c['step']:5d}  " + "  ".join(cells) + f"  {c.get('family', '')}")
    return lines


def format_fit(result: FitResult, output: str | None = None, cv: int | None = None) -> str:
    """What ``weightwatch fit`` prints."""
    f = _f
    ref = result.reference
    lines = [f"{result.runs} runs with {result.metric}; optimal: final {result.metric} >= {result.threshold:.4g} "
             f"({result.rule}): {result.optimal} runs, suboptimal: {result.runs - result.optimal}"]
    if result.unlabelled:
        lines.append(f"not used, no {result.metric}: {', '.join(result.unlabelled)}")
    lines += ["", f"held-out quality ({cv or ref.info['population'].get('cv', '')}-fold cross-validation: every run "
              "is scored by models that did not see it) of what the reference uses per step",
              " step  runs    AUC  bal.acc  Kendall tau    R^2  used: P(optimal) / final metric"]
    for c in result.curve:
        lines.append(f"{c['step']:5d} {c['runs']:5d}  {f(c['auc'])}    {f(c['balanced_accuracy'])}        "
                     f"{f(c['kendall_tau'])}  {f(c['r2'])}  {c.get('family', '')} ({c['classifier']}) / "
                     f"{c.get('regressor_family', '')} ({c['regressor']})")
    earliest = result.earliest
    lines.append(f"earliest step with AUC >= {EARLY_AUC}: {earliest if earliest is not None else 'none'}")
    if any("families" in c for c in result.curve):
        lines += ["", "cross-validated AUC per step: baselines as they are (the metric so far, the best curve "
                  "extrapolation), each feature family alone and combined",
                  *family_table(result.curve),
                  "", "Kendall tau of the predicted final metric, same columns", *family_table(result.curve, "kendall_tau"),
                  "", "R^2 of the predicted final metric, same columns", *family_table(result.curve, "r2")]
        statements = [s for s in (weights_statement(c["step"], c) for c in result.curve) if s]
        lines += [""] + (statements or ["the weights add to the curves and hyperparameters at every step"])
    non = result.non
    if non.get("available"):
        lines.append(f"early non detection (step {non['step']}): {non['flagged']} flagged, precision "
                     f"{f(non['precision']).strip()}, recall {f(non['recall']).strip()} for the {non['non']} runs "
                     f"that stayed at chance (cross-validated)")
    elif non:
        lines.append(f"early non detection: not fitted ({non.get('reason', '')})")
    b = result.baseline
    if b.get("available"):
        lines.append(f"hyperparameters only ({', '.join(b['hparams'])}): AUC {f(b['auc'])}, balanced accuracy "
                     f"{f(b['balanced_accuracy'])}, Kendall tau {f(b['kendall_tau'])}, R^2 {f(b['r2'])}; "
                     f"reference: AUC {f(result.final['auc'])}")
    elif b:
        lines.append(f"hyperparameters only: not measured ({b.get('reason', '')})")
    if output:
        lines.append(f"wrote {output} ({len(ref.steps)} steps)")
    return "\n".join(lines)


def format_predictions(predictions: Sequence[Prediction]) -> str:
    """What ``weightwatch classify`` prints: one block per run."""
    def g(v: float) -> str:
        return f"{v:.4g}" if math.isfinite(v) else "missing"

    lines = []
    for p in predictions:
        lines.append(f"{p.run}: {p.group.upper()}  P(optimal) {p.p_optimal:.3f}  predicted {p.metric} "
                     f"{p.predicted:.4f}  (step {p.step}, model of step {p.model_step})"
                     + (f"  P(stays at chance) {p.p_non:.3f}" if p.p_non is not None else ""))
        for d in p.drivers:
            sign = "+" if d.contribution > 0 else "-"
            lines.append(f"    {sign} {d.feature} = {g(d.value)}{' (missing: filled)' if d.missing else ''}  "
                         f"(optimal runs ~{g(d.typical_optimal)}, suboptimal ~{g(d.typical_suboptimal)})")
        lines += [f"    note: {n}" for n in p.notes]
    return "\n".join(lines)


def format_prediction_table(predictions: Sequence[Prediction]) -> str:
    """One line per run (what ``weightwatch compare --reference`` adds to its report)."""
    if not predictions:
        return "no run could be classified"
    width = max(len(p.run) for p in predictions)
    metric = predictions[0].metric
    lines = [f"{'run':<{width}}  P(optimal)  predicted {metric}  group", ]
    lines += [f"{p.run:<{width}}  {p.p_optimal:10.3f}  {p.predicted:{10 + len(metric)}.4f}  {p.group}"
              + ("  (" + "; ".join(p.notes) + ")" if p.notes else "") for p in predictions]
    return "\n".join(lines)
