"""The ``weightwatch`` command (also ``python -m weightwatch``).

Each subcommand is added to the parser by one small function in
:data:`COMMANDS`: it creates its subparser, adds its arguments and sets
``func``, a callable ``func(args) -> int`` (the exit code). Commands import
their heavy dependencies inside ``func``, so ``weightwatch --help`` stays fast.

Exit codes: 0 done (possibly with problems reported), 1 nothing useful could
be done, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__

Subparsers = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _thresholds(text: str) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers 'a,b' (low < a <= mid < b <= high), got {text!r}")
    if a > b:
        raise argparse.ArgumentTypeError(f"thresholds must be increasing, got {a} > {b}")
    return a, b


def add_compare(sub: Subparsers) -> None:
    p = sub.add_parser(
        "compare", help="group a population of runs by final accuracy and compare their weights",
        description="Load every run under PATH, group the runs (non / low / mid / high) per architecture "
                    "family, print the table and the dispersion test, and write figures, index.html and a "
                    "TensorBoard view of the population.")
    p.add_argument("path", type=Path, metavar="PATH", help="a directory of runs (any depth)")
    p.add_argument("--metric", help="scalar tag of the final performance (default: val_accuracy, accuracy, "
                                    "test_accuracy or acc, the first found)")
    p.add_argument("--thresholds", type=_thresholds, metavar="A,B",
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
    p.set_defaults(func=compare_command)


def compare_command(args: argparse.Namespace) -> int:
    from weightwatch.analysis.report import NothingToCompare, compare, print_terminal, to_json

    reference = None
    if args.reference is not None:  # read it first: a bad file fails fast
        from weightwatch.analysis.reference import ReferenceError, load_reference

        try:
            reference = load_reference(args.reference)
        except (ReferenceError, OSError) as exc:
            print(f"weightwatch compare: {exc}", file=sys.stderr)
            return 1
    try:
        result = compare(args.path, metric=args.metric, thresholds=args.thresholds, out=args.out,
                         figures=not args.no_figures, tensorboard=not args.no_tensorboard,
                         workers=args.workers, cache=not args.no_cache, progress=not args.json)
    except (NothingToCompare, FileNotFoundError) as exc:
        message = str(exc) if isinstance(exc, NothingToCompare) else f"{str(args.path)!r} is not a directory"
        if args.json:
            print(json.dumps({"error": message}, indent=1))
        print(f"weightwatch compare: {message}", file=sys.stderr)
        return 1
    predictions = None
    if reference is not None:
        from weightwatch.analysis.reference import classify_path, format_prediction_table, json_safe

        predictions = classify_path(args.path, reference)
    if args.json:
        out = to_json(result)
        if predictions is not None:
            out["predictions"] = json_safe([p.to_json() for p in predictions])
        print(json.dumps(out, indent=1))
    else:
        print_terminal(result)
        if predictions is not None:
            print(f"\nprediction by {args.reference}:\n{format_prediction_table(predictions)}")
    return 0


def add_fit(sub: Subparsers) -> None:
    from weightwatch.analysis.model import add_fit_arguments, fit_command

    p = sub.add_parser("fit", help="learn from labelled runs to tell the optimal ones by their weights",
                       description="Fit a reference (models per logged step) on the runs under PATH and print "
                                   "its cross-validated quality; see docs/classify.md.")
    add_fit_arguments(p)
    p.set_defaults(func=fit_command)


def add_classify(sub: Subparsers) -> None:
    from weightwatch.analysis.reference import add_classify_arguments, classify_command

    p = sub.add_parser("classify", help="P(optimal) and the predicted final metric of runs, finished or not",
                       description="Judge each RUN with a reference written by `weightwatch fit`.")
    add_classify_arguments(p)
    p.set_defaults(func=classify_command)


#: The subcommands, each added by one function (see the module doc).
COMMANDS: list[Callable[[Subparsers], None]] = [add_compare, add_fit, add_classify]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="weightwatch", description="Watch, compare and classify the weights of "
                                                                     "training runs logged by weightwatch.")
    parser.add_argument("--version", action="version", version=f"weightwatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
