"""``weightwatch classify RUN... --reference reference.ww``: P(optimal) and the predicted metric of runs."""

from __future__ import annotations

import argparse
import json
import sys


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="P(optimal) and the predicted final metric of runs, finished or not",
                       description="Judge each RUN with a reference written by `weightwatch fit`.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (or directories holding runs)")
    p.add_argument("--reference", "-r", required=True, help="the reference file written by `weightwatch fit`")
    p.add_argument("--step", type=int, help="judge each run as it stood at STEP, exactly as if it had stopped there "
                                            "(its latest logged step <= STEP)")
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exit code 0 when at least one run was classified (those that could not be are reported
    on stderr); 1 when none was."""
    from weightwatch.analysis import ReferenceFileError, classify, format_predictions, json_safe

    try:
        verdict = classify(args.runs, args.reference, step=args.step)
    except (ReferenceFileError, FileNotFoundError) as exc:
        print(f"weightwatch classify: {exc}", file=sys.stderr)
        return 1
    for problem in verdict.problems:
        print(f"weightwatch classify: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps(json_safe([p.to_json() for p in verdict.predictions]), indent=1))
    elif verdict.predictions:
        print(format_predictions(verdict.predictions))
    return 0 if verdict.predictions else 1
