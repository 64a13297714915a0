"""``weightwatch fit PATH -o reference.ww``: learn from labelled runs to tell the optimal ones."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="learn from labelled runs to tell the optimal ones by their weights",
                       description="Fit a reference (models per logged step) on the runs under PATH and print "
                                   "its cross-validated quality; see docs/classify.md.")
    p.add_argument("path", help="directory holding the labelled runs (any depth)")
    p.add_argument("-o", "--output", default="reference.ww", help="the reference file to write")
    p.add_argument("--metric", help="final-metric tag (default: val_accuracy, eval_accuracy, accuracy, "
                                    "test_accuracy, acc)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--threshold", type=float, help="optimal: final metric >= THRESHOLD (default: the high group)")
    group.add_argument("--top", type=float, help="optimal: the best fraction TOP of the runs (0.5: the better half)")
    p.add_argument("--cv", type=int, default=5, help="cross-validation folds")
    p.add_argument("--seed", type=int, default=0, help="random_state of the models and folds")
    p.add_argument("--no-baseline", action="store_true", help="skip the hyperparameters-only baseline")
    p.add_argument("--families", nargs="+", metavar="FAMILY",
                   help="the feature families the reference may use (default: all; e.g. 'weights' for a "
                        "weights-only reference; see docs/classify.md)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exit code 0: the reference was written; 1: nothing could be fitted."""
    from weightwatch.analysis import fit, format_fit, load_runs

    try:
        loaded = load_runs(args.path, progress=not args.json)
    except FileNotFoundError as exc:
        print(f"weightwatch fit: {exc}", file=sys.stderr)
        return 1
    for name, problems in loaded.problems.items():
        print(f"weightwatch fit: skipped {name}: {'; '.join(problems)}", file=sys.stderr)
    if not loaded.runs:
        print(f"weightwatch fit: no runs found under {args.path!r}", file=sys.stderr)
        return 1
    try:
        result = fit(loaded.runs, metric=args.metric, threshold=args.threshold, top=args.top,
                     cv=args.cv, random_state=args.seed, baseline=not args.no_baseline, families=args.families,
                     progress=None if args.json else lambda line: print(f"  {line}", file=sys.stderr))
    except ValueError as exc:
        print(f"weightwatch fit: {exc}", file=sys.stderr)
        return 1
    path = result.reference.save(Path(args.output))
    if args.json:
        print(json.dumps({**result.to_json(), "reference": str(path)}, indent=1))
    else:
        print(format_fit(result, str(path), args.cv))
    return 0
