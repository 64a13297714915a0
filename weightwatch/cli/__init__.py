"""The ``weightwatch`` command (also ``python -m weightwatch``).

One module per subcommand (:mod:`.compare`, :mod:`.fit`, :mod:`.classify`),
each with ``add(sub)``, which creates its subparser and sets ``func``, and
``run(args) -> int`` (the exit code), which calls the public API
(:mod:`weightwatch.analysis`) and prints. ``run`` imports the analysis when it
runs, so ``weightwatch --help`` stays fast.

Exit codes: 0 done (possibly with problems reported), 1 nothing useful could
be done, 2 bad arguments.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from weightwatch import __version__

from . import classify, compare, fit

#: The subcommands, in the order ``--help`` lists them.
COMMANDS = (compare, fit, classify)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="weightwatch", description="Watch, compare and classify the weights of "
                                                                     "training runs logged by weightwatch.")
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
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
