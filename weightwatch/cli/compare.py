"""``weightwatch compare PATH...``: group a population, test the claim, write the report."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from .common import EXIT_NOTHING, EXIT_OK, EXIT_USAGE, add_load_options, expand_paths, fail, local_file, \
    writable_dir


def thresholds(text: str) -> tuple[float, float]:
    """``--thresholds A,B`` as (A, B): two finite numbers, A <= B."""
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers 'a,b' (low < a <= mid < b <= high), got {text!r}")
    if not (math.isfinite(a) and math.isfinite(b)):
        raise argparse.ArgumentTypeError(f"thresholds must be finite numbers, got {text!r}")
    if a > b:
        raise argparse.ArgumentTypeError(f"thresholds must be increasing, got {a} > {b}")
    return a, b


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="group a population of runs by final accuracy and compare their weights",
        description="Load every run under PATH (one or several directories or glob patterns; symbolic links "
                    "followed), group the runs (non / low / mid / high) per architecture family, print the table "
                    "and the dispersion test, and write figures, index.html and a TensorBoard view of the "
                    "population into --out. Nothing is written into PATH.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="directories of runs (any depth), or glob patterns")
    p.add_argument("--metric", help="scalar tag of the final performance (default: val_accuracy, eval_accuracy, "
                                    "accuracy, test_accuracy or acc, the first found)")
    p.add_argument("--thresholds", type=thresholds, metavar="A,B",
                   help="group boundaries on the metric instead of clustering: low < A <= mid < B <= high")
    p.add_argument("--out", type=local_file, default=Path("report"),
                   help="where figures, index.html and the TensorBoard view go (default: ./report)")
    p.add_argument("--json", action="store_true", help="print the table, groups and test as JSON on stdout")
    p.add_argument("--no-figures", action="store_true", help="skip the figures (index.html still written)")
    p.add_argument("--no-tensorboard", action="store_true",
                   help="do not write the population's TensorBoard view (--out/weightwatch-population)")
    add_load_options(p)
    p.add_argument("--reference", type=local_file, help="also classify every run with this reference (weightwatch fit)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from weightwatch.analysis import NothingToCompare, ReferenceFileError, compare, \
        format_prediction_table, load_reference, print_terminal, skipped_lines, to_json

    def error(message: str, code: int) -> int:
        if args.json:
            print(json.dumps({"error": message}, indent=1))
        return fail("compare", message, code)

    roots, code = expand_paths("compare", args.paths, json_errors=args.json)
    if roots is None:
        return code
    if (code := writable_dir("compare", "--out", args.out)) is not None:
        return code
    reference = None
    if args.reference is not None:  # read it first: a bad file fails fast
        try:
            reference = load_reference(args.reference)
        except (ReferenceFileError, OSError) as exc:
            return error(str(exc) if isinstance(exc, ReferenceFileError) else
                         f"cannot read the reference {str(args.reference)!r}: {exc.strerror or exc}", EXIT_USAGE)
    try:
        result = compare(roots, metric=args.metric, thresholds=args.thresholds, out=args.out,
                         figures=not args.no_figures, tensorboard=not args.no_tensorboard,
                         workers=args.workers, cache=not args.no_cache, progress=not args.json,
                         reference=reference, engine=args.engine)
    except NothingToCompare as exc:
        return error(str(exc), EXIT_NOTHING)
    except FileNotFoundError as exc:  # a root removed while loading
        return error(str(exc), EXIT_USAGE)
    except OSError as exc:
        return error(f"cannot write the report into {str(args.out)!r}: {exc.strerror or exc}", EXIT_USAGE)
    if args.json:
        for line in skipped_lines(result.skipped):
            print(f"weightwatch compare:{line[1:]}", file=sys.stderr)
        print(json.dumps(to_json(result), indent=1))
    else:
        print_terminal(result)
        if result.predictions is not None:
            print(f"\nprediction by {args.reference}:\n{format_prediction_table(result.predictions)}")
    return EXIT_OK
