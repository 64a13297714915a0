"""``weightwatch fit PATH... -o reference.ww``: learn from labelled runs to tell the optimal ones."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import EXIT_NOTHING, EXIT_OK, EXIT_USAGE, add_load_options, expand_paths, fail, finite_float, \
    local_file, positive_int, writable_dir


def fraction(text: str) -> float:
    """``--top F``: 0 < F <= 1."""
    value = finite_float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}")
    return value


def folds(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"cross-validation needs at least 2 folds, got {value}")
    return value


def repeats(text: str) -> int:
    """``--cv-repeats R``: a whole number, 0 or more."""
    value = finite_float(text)
    if value < 0 or value != int(value):
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(value)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="learn from labelled runs to tell the optimal ones by their weights",
                       description="Fit a reference (models per logged step) on the runs under PATH (one or "
                                   "several directories or glob patterns; symbolic links followed) and print its "
                                   "cross-validated quality; see docs/classify.md.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="directories holding the labelled runs (any depth)")
    p.add_argument("-o", "--output", type=local_file, default=Path("reference.ww"), help="the reference file to write")
    p.add_argument("--metric", help="final-metric tag (default: val_accuracy, eval_accuracy, accuracy, "
                                    "test_accuracy, acc)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--threshold", type=finite_float,
                       help="optimal: final metric >= THRESHOLD (default: the high group)")
    group.add_argument("--top", type=fraction, help="optimal: the best fraction TOP of the runs (0.5: the better half)")
    p.add_argument("--cv", type=folds, default=5, help="cross-validation folds (at least 2)")
    # the default is fit's own (CV_REPEATS, 4): the analysis modules are imported only when the command runs
    p.add_argument("--cv-repeats", type=repeats, metavar="R",
                   help="where a richer family than the metric so far validates best, cross-validate it again on "
                        "R further fold splits and use it only if its mean gain holds (default 4; 0: decide from "
                        "the first split; see docs/classify.md)")
    p.add_argument("--seed", type=int, default=0, help="random_state of the models and folds")
    p.add_argument("--no-baseline", action="store_true", help="skip the hyperparameters-only baseline")
    p.add_argument("--families", nargs="+", metavar="FAMILY",
                   help="the feature families the reference may use (default: all; e.g. 'weights' for a "
                        "weights-only reference; see docs/classify.md)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_load_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exit code 0: the reference was written; 1: nothing could be fitted; 2: bad arguments."""
    from weightwatch.analysis import fit, format_fit, load_runs, printable
    from weightwatch.analysis.classification.evaluation import CV_REPEATS

    roots, code = expand_paths("fit", args.paths)
    if roots is None:
        return code
    if args.output.is_dir():
        return fail("fit", f"-o {str(args.output)!r} is a directory; name the reference file to write", EXIT_USAGE)
    if (code := writable_dir("fit", "-o", args.output.parent)) is not None:
        return code
    loaded = load_runs(roots, progress=not args.json, cache=not args.no_cache, workers=args.workers,
                        engine=args.engine)
    for note in loaded.notes:
        print(f"weightwatch fit: note: {printable(note)}", file=sys.stderr)
    for name, problems in loaded.problems.items():
        print(f"weightwatch fit: skipped {printable(name)}: {printable('; '.join(problems))}", file=sys.stderr)
    if not loaded.runs:
        where = ", ".join(repr(str(r)) for r in roots)
        return fail("fit", f"no runs found under {where}" if not loaded.problems else
                    f"none of the {len(loaded.problems)} runs under {where} could be read", EXIT_NOTHING)
    cv_repeats = CV_REPEATS if args.cv_repeats is None else args.cv_repeats
    try:
        result = fit(loaded.runs, metric=args.metric, threshold=args.threshold, top=args.top, cv=args.cv,
                     cv_repeats=cv_repeats, random_state=args.seed, baseline=not args.no_baseline, families=args.families,
                     progress=None if args.json else lambda line: print(f"  {line}", file=sys.stderr))
    except ValueError as exc:
        return fail("fit", str(exc), EXIT_NOTHING)
    for name in result.unlabelled:
        print(f"weightwatch fit: skipped {printable(name)}: no {result.metric} scalar", file=sys.stderr)
    skipped = len(loaded.problems) + len(result.unlabelled)
    path = result.reference.save(args.output)
    if args.json:
        print(json.dumps({**result.to_json(), "reference": str(path), "skipped": skipped}, indent=1))
    else:
        print(format_fit(result, str(path), args.cv))
        print(f"{result.runs} runs used, {skipped} skipped")
    return EXIT_OK
