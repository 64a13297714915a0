"""What fit and classify print: the fit's held-out quality per step, each run's verdict."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..classification.fit import EARLY_AUC, FitResult
from ..classification.reference import Prediction


def format_fit(result: FitResult, output: str | None = None, cv: int | None = None) -> str:
    """What ``weightwatch fit`` prints."""
    def f(v: Any) -> str:
        return "  n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:5.3f}"

    ref = result.reference
    lines = [f"{result.runs} runs with {result.metric}; optimal: final {result.metric} >= {result.threshold:.4g} "
             f"({result.rule}): {result.optimal} runs, suboptimal: {result.runs - result.optimal}"]
    if result.unlabelled:
        lines.append(f"not used, no {result.metric}: {', '.join(result.unlabelled)}")
    lines += ["", f"held-out quality ({cv or ref.info['population'].get('cv', '')}-fold cross-validation: every run "
              "is scored by models that did not see it)",
              " step  runs    AUC  bal.acc  Kendall tau    R^2  models: P(optimal) / final metric"]
    for c in result.curve:
        lines.append(f"{c['step']:5d} {c['runs']:5d}  {f(c['auc'])}    {f(c['balanced_accuracy'])}        "
                     f"{f(c['kendall_tau'])}  {f(c['r2'])}  {c['classifier']} / {c['regressor']}")
    earliest = result.earliest
    lines.append(f"earliest step with AUC >= {EARLY_AUC}: {earliest if earliest is not None else 'none'}")
    b = result.baseline
    if b.get("available"):
        lines.append(f"hyperparameters only ({', '.join(b['hparams'])}): AUC {f(b['auc'])}, balanced accuracy "
                     f"{f(b['balanced_accuracy'])}, Kendall tau {f(b['kendall_tau'])}, R^2 {f(b['r2'])}; "
                     f"weights: AUC {f(result.final['auc'])}")
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
                     f"{p.predicted:.4f}  (step {p.step}, model of step {p.model_step})")
        for d in p.drivers:
            sign = "+" if d.contribution > 0 else "-"
            lines.append(f"    {sign} {d.feature} = {g(d.value)}  (optimal runs ~{g(d.typical_optimal)}, "
                         f"suboptimal ~{g(d.typical_suboptimal)})")
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
