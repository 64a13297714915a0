"""The ``weightwatch`` command (also ``python -m weightwatch``).

One module per subcommand (:mod:`.compare`, :mod:`.fit`, :mod:`.classify`),
each with ``add(sub)``, which creates its subparser and sets ``func``, and
``run(args) -> int`` (the exit code), which calls the public API
(:mod:`weightwatch.analysis`) and prints. ``run`` imports the analysis when it
runs, so ``weightwatch --help`` stays fast. :mod:`.common` holds what they share.

Exit codes (every subcommand): 0 done (problems with single runs are reported
on stderr or in the output, not fatal); 1 nothing useful found (no runs, no
readable run, no run with the metric, nothing that could be fitted or
classified); 2 bad arguments or unusable input (an option value, a path that
does not exist, an unreadable or unsafe reference, an output that cannot be
written); 130 interrupted by Ctrl-C (nothing partial left behind). Every error
is one line on stderr, never a traceback (``WEIGHTWATCH_DEBUG=1`` shows one for
an unexpected error).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from weightwatch import __version__, interrupts

from . import classify, compare, fit
from .common import EXIT_INTERRUPTED, EXIT_NOTHING, EXIT_USAGE, Parser

#: The subcommands, in the order ``--help`` lists them.
COMMANDS = (compare, fit, classify)


def build_parser() -> Parser:
    parser = Parser(prog="weightwatch", description="Watch, compare and classify the weights of training runs "
                                                    "logged by weightwatch.")
    parser.add_argument("--version", action="version", version=f"weightwatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        with interrupts.latched():
            code = int(args.func(args))
            # A Ctrl-C whose KeyboardInterrupt was swallowed on the way (printed as
            # "Exception ignored in ...") still counts: publishing refused it, so say so.
            interrupts.raise_if_interrupted()
        return code
    except KeyboardInterrupt:
        print(f"weightwatch {args.command}: interrupted; no partial output was left", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - one line for the user; WEIGHTWATCH_DEBUG=1 for the traceback
        if os.environ.get("WEIGHTWATCH_DEBUG"):
            raise
        print(f"weightwatch {args.command}: unexpected error: {type(exc).__name__}: {exc} (please report it; "
              "WEIGHTWATCH_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_NOTHING


def run() -> None:
    """The ``weightwatch`` command and ``python -m weightwatch``: :func:`main`, then exit with its code.

    After Ctrl-C the exit is immediate, with 130: the output was already cleaned up on the way
    out of the command, and CPython would otherwise re-raise SIGINT at exit once an interrupt
    passed through some library code, even one the command caught (a status that is 130 in a
    shell, but -2 to ``subprocess``, unpredictably).
    """
    code = main()
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    run()
