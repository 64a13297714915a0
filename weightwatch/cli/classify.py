"""``weightwatch classify RUN... --reference reference.ww``: P(optimal) and the predicted metric of runs."""

from __future__ import annotations

import argparse
import json
import sys

from .common import EXIT_NOTHING, EXIT_OK, EXIT_USAGE, add_load_options, expand_paths, fail


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="P(optimal) and the predicted final metric of runs, finished or not",
                       description="Judge each RUN with a reference written by `weightwatch fit`.")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run directories, directories holding runs, or glob patterns (symbolic links followed)")
    p.add_argument("--reference", "-r", required=True, help="the reference file written by `weightwatch fit`")
    p.add_argument("--step", type=int, help="judge each run as it stood at STEP, exactly as if it had stopped there "
                                            "(its latest logged step <= STEP)")
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    add_load_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exit code 0 when at least one run was classified (those that could not be are reported
    on stderr); 1 when none was; 2 for a missing path or an unusable reference."""
    from weightwatch.analysis import ReferenceFileError, classify, format_predictions, json_safe, load_reference, \
        printable

    roots, code = expand_paths("classify", args.runs)
    if roots is None:
        return code
    paths = [str(p) for p in roots]
    try:
        reference = load_reference(args.reference)
    except ReferenceFileError as exc:
        return fail("classify", str(exc), EXIT_USAGE)
    except OSError as exc:
        return fail("classify", f"cannot read the reference {args.reference!r}: {exc.strerror or exc}", EXIT_USAGE)
    verdict = classify(paths, reference, step=args.step, cache=not args.no_cache, workers=args.workers,
                       engine=args.engine)
    for problem in verdict.problems:
        kind = "" if problem.startswith("no run found") else "skipped "
        print(f"weightwatch classify: {kind}{printable(problem)}", file=sys.stderr)
    if args.json:
        print(json.dumps(json_safe([p.to_json() for p in verdict.predictions]), indent=1))
    elif verdict.predictions:
        print(format_predictions(verdict.predictions))
        print(f"{len(verdict.predictions)} runs classified, {len(verdict.problems)} skipped")
    if verdict.predictions:
        return EXIT_OK
    return EXIT_NOTHING if verdict.problems else fail("classify", "no run could be classified", EXIT_NOTHING)
