"""The public API (``weightwatch.analysis``): its names, its examples, and that the docs use only it."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

import weightwatch.analysis as api
from reference_population import shared

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pop(tmp_path_factory):
    return shared(tmp_path_factory)


def test_the_four_steps_and_their_results_are_exported():
    assert {"load_runs", "compare", "fit", "classify"} <= set(api.__all__)
    assert {"LoadResult", "Run", "Comparison", "FitResult", "Classification", "Prediction", "Reference",
            "LiveScorer", "StopRule", "stop_rule", "load_reference", "ReferenceFileError"} <= set(api.__all__)
    for name in api.__all__:
        assert getattr(api, name) is not None, name
    # the functions, not the stage packages of the same spirit, answer to these names
    assert callable(api.compare) and callable(api.classify) and callable(api.fit) and callable(api.load_runs)
    assert issubclass(api.ReferenceFileError, ValueError) and api.ReferenceFileError is not ReferenceError


@pytest.mark.parametrize("name", ["load_runs", "compare", "fit", "classify"])
def test_examples_in_the_docstrings_run(name, pop, tmp_path):
    """Each step's docstring example, run on a real population (24 runs, 6 held out, a fitted reference)."""
    fn = getattr(api, name)
    assert ">>>" in fn.__doc__, f"{name} has no example"
    globs = {**vars(api), "runs_dir": pop.train, "new_runs": pop.held_out, "reference": pop.reference,
             "tmp": tmp_path}
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    (test,) = finder.find(fn, name, globs=globs)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_readme_docs_and_examples_import_only_the_public_api():
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").glob("*.py"))]
    deep = re.compile(r"weightwatch\.analysis\.[a-z_]+")
    found = {str(p.relative_to(ROOT)): deep.findall(p.read_text(encoding="utf-8")) for p in texts}
    assert not {p: names for p, names in found.items() if names}, "use `from weightwatch.analysis import ...`"
    assert "from weightwatch.analysis import" in (ROOT / "docs" / "compare.md").read_text()
