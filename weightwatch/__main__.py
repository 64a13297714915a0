"""``python -m weightwatch``: the same as the ``weightwatch`` command."""

from weightwatch.cli import run

run()
