"""``python -m weightwatch.cli``: the same as ``python -m weightwatch`` and the ``weightwatch`` command."""

from weightwatch.cli import run

run()
