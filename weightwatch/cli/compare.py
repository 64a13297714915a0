"""``weightwatch compare PATH``: group a population, test the claim, write the report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def thresholds(text: str) -> tuple[float, float]:
    """``--thresholds A,B`` as (A, B)."""
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers 'a,b' (low < a <= mid < b <= high), got {text!r}")
    if a > b:
        raise argparse.ArgumentTypeError(f"thresholds must be increasing, got {a} > {b}")
    return a, b


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="group a population of runs by final accuracy and compare their weights",
        description="Load every run under PATH, group the runs (non / low / mid / high) per architecture "
                    "family, print the table and the dispersion test, and write figures, index.html and a "
                    "TensorBoard view of the population.")
    p.add_argument("path", type=Path, metavar="PATH", help="a directory of runs (any depth)")
    p.add_argument("--metric", help="scalar tag of the final performance (default: val_accuracy, accuracy, "
                                    "test_accuracy or acc, the first found)")
    p.add_argument("--thresholds", type=thresholds, metavar="A,B",
                   help="group boundaries on the metric instead of clustering: low < A <= mid < B <= high")
    p.add_argument("--out", type=Path, default=Path("report"), help="where figures and index.html go "
                                                                     "(default: ./report)")
    p.add_argument("--json", action="store_true", help="print the table, groups and test as JSON on stdout")
    p.add_argument("--no-figures", action="store_true", help="skip the figures (index.html still written)")
    p.add_argument("--no-tensorboard", action="store_true",
                   help="do not write the population's images and projector under PATH")
    p.add_argument("--no-cache", action="store_true", help="parse every event file again, write no cache")
    p.add_argument("--workers", type=int, default=None, help="loader processes (default: one per CPU)")
    p.add_argument("--reference", type=Path, help="also classify every run with this reference (weightwatch fit)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from weightwatch.analysis import NothingToCompare, ReferenceFileError, compare, format_prediction_table, \
        load_reference, print_terminal, to_json

    reference = None
    if args.reference is not None:  # read it first: a bad file fails fast
        try:
            reference = load_reference(args.reference)
        except (ReferenceFileError, OSError) as exc:
            print(f"weightwatch compare: {exc}", file=sys.stderr)
            return 1
    try:
        result = compare(args.path, metric=args.metric, thresholds=args.thresholds, out=args.out,
                         figures=not args.no_figures, tensorboard=not args.no_tensorboard,
                         workers=args.workers, cache=not args.no_cache, progress=not args.json,
                         reference=reference)
    except (NothingToCompare, FileNotFoundError) as exc:
        message = str(exc) if isinstance(exc, NothingToCompare) else f"{str(args.path)!r} is not a directory"
        if args.json:
            print(json.dumps({"error": message}, indent=1))
        print(f"weightwatch compare: {message}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(to_json(result), indent=1))
    else:
        print_terminal(result)
        if result.predictions is not None:
            print(f"\nprediction by {args.reference}:\n{format_prediction_table(result.predictions)}")
    return 0
