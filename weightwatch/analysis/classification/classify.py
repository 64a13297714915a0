"""Judge runs with a reference: ``weightwatch classify``, and the verdicts ``compare --reference`` adds."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from weightwatch.storage import RemoteDir, is_remote, location

from ..loading.loader import load_runs
from ..loading.run import Run
from .reference import Prediction, Reference, load_reference

PathLike = str | os.PathLike[str]


@dataclass
class Classification:
    """What :func:`classify` found.

    Attributes:
        predictions: one per run judged, in the order the runs were given (below
            a directory: by name).
        problems: one message per path holding no run and per run that could not
            be judged (no logged weights, ...), in the same order.
    """

    predictions: list[Prediction] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def classify(runs: PathLike | Run | Sequence[PathLike | Run], reference: PathLike | Reference, *,
             step: int | None = None, cache: bool = True, workers: int | None = None,
             engine: str = "local") -> Classification:
    """P(optimal) and the predicted final metric of each run, finished or not.

    Args:
        runs: run directories, directories holding runs (at any depth), or runs
            already loaded; one or several. Runs found below a directory are
            named as written: the directory itself, or ``directory/run``.
        reference: a ``.ww`` file written by :func:`~.fit.fit` (or the Reference).
        step: judge each run at its latest logged step <= ``step`` (default: its latest).
        cache / workers / engine: how runs are loaded (see
            :func:`~weightwatch.analysis.loading.loader.load_runs`).

    Raises :class:`~.reffile.ReferenceFileError` (or OSError) when the reference
    cannot be read; paths and runs that cannot be judged are in ``problems``.

    With ``new_runs`` a directory of 6 runs the reference (fitted on others) never saw:

    >>> verdict = classify(new_runs, reference)
    >>> len(verdict.predictions), verdict.problems
    (6, [])
    >>> p = verdict.predictions[0]
    >>> p.group in ("optimal", "suboptimal"), 0.0 <= p.p_optimal <= 1.0, p.metric
    (True, True, 'val_accuracy')
    """
    ref = load_reference(reference)
    items = [runs] if isinstance(runs, (str, os.PathLike, Run)) else list(runs)
    out = Classification()
    for item in items:
        if isinstance(item, Run):
            found = [item]
        else:
            try:
                loaded = load_runs(item, progress=False, cache=cache, workers=workers, engine=engine)
            except FileNotFoundError as exc:
                out.problems.append(str(exc))
                continue
            found = loaded.runs
            if not found and not loaded.problems:
                out.problems.append(f"no run found in {str(item)!r}")

            for name, messages in loaded.problems.items():
                out.problems.append(f"{as_written(item, name, None)}: {'; '.join(messages)}")
            for run in found:
                run.name = as_written(item, run.name, run.path)
        for run in found:
            try:
                out.predictions.append(ref.classify(run, step))
            except ValueError as exc:
                out.problems.append(f"{run.name}: {exc}")
    return out


def as_written(item: PathLike, name: str, path: Path | RemoteDir | None) -> str:
    """A run named as the user wrote it: ``item`` itself when it is the run, else ``item/name``."""
    if isinstance(path, RemoteDir) or is_remote(item):
        here = str(path) if path is not None else None
        return str(item) if here == location(item).url else f"{str(item).rstrip('/')}/{name}"
    is_run = path is not None and Path(path).resolve() == Path(item).resolve()
    return str(item) if is_run else str(Path(item) / name)


def classify_below(root: PathLike | Sequence[PathLike], reference: PathLike | Reference, step: int | None = None,
                   problems: list[str] | None = None, cache: bool = True, workers: int | None = None,
                   engine: str = "local") -> list[Prediction]:
    """Classify every run below ``root``, named relative to it as compare names them (runs without
    logged weights are skipped, noted in ``problems``)."""
    ref = load_reference(reference)
    out = []
    for run in load_runs(root, progress=False, cache=cache, workers=workers, engine=engine).runs:
        try:
            out.append(ref.classify(run, step))
        except ValueError as exc:
            if problems is not None:
                problems.append(f"{run.name}: {exc}")
    return out
