"""The analysis of logged runs, as a pipeline: load -> compare -> classify -> render.

The public API; everything a script needs is importable from here::

    from weightwatch.analysis import load_runs, compare, fit, classify

- :func:`load_runs`: every run below a directory, as :class:`Run` objects
  (:class:`LoadResult`); stage :mod:`.loading`.
- :func:`compare`: group a population by final metric, test whether the good
  runs' weights are more alike, write the figures, index.html and the
  TensorBoard view (:class:`Comparison`); stages :mod:`.comparison` and
  :mod:`.rendering`.
- :func:`fit`: learn from finished runs which ones end well (:class:`FitResult`,
  holding a :class:`Reference`, saved as a ``.ww`` file); stage :mod:`.classification`.
- :func:`classify`: judge runs, finished or not, with a reference
  (:class:`Classification` of :class:`Prediction` objects).
- While training: :class:`LiveScorer`, :class:`StopRule` / :func:`stop_rule`
  and :func:`load_reference`, used by the integrations.
- What the commands print: :func:`print_terminal` / :func:`to_json` (a
  comparison), :func:`format_fit`, :func:`format_predictions`,
  :func:`format_prediction_table`, :func:`skipped_lines`, and :func:`json_safe`
  for strict JSON; :func:`printable` (a name for one terminal line);
  :func:`logdir_spec` (the TensorBoard command showing runs and report together).
- The command line's checks: :func:`expand_roots` (paths and glob patterns to
  directories), :func:`check_writable` (an output directory).

The layout is described in docs/architecture.md.
"""

from __future__ import annotations

from .classification.classify import Classification, classify
from .classification.fit import FitResult, fit
from .classification.live import P_OPTIMAL, PREDICTED, LiveScorer, Score, StopRule, stop_rule
from .classification.reference import Driver, Prediction, Reference, load_reference
from .classification.reffile import ReferenceFileError, json_safe
from .comparison.compare import Comparison, Figure, NothingToCompare
from .loading.find import expand_roots, printable
from .loading.loader import LoadResult, LoadStats, load_runs
from .loading.metric import METRIC_NAMES, final_metric, find_metric
from .loading.run import HistogramSeries, Run, Series
from .rendering.output import check_writable
from .rendering.report import compare
from .rendering.tbexport import logdir_spec
from .rendering.terminal import print_terminal, skipped_lines, to_json
from .rendering.verdicts import format_fit, format_prediction_table, format_predictions

__all__ = [
    # the four steps
    "load_runs", "compare", "fit", "classify",
    # what they return
    "LoadResult", "LoadStats", "Run", "Series", "HistogramSeries", "Comparison", "Figure", "FitResult",
    "Reference", "Classification", "Prediction", "Driver",
    # errors
    "NothingToCompare", "ReferenceFileError",
    # reading runs and references
    "METRIC_NAMES", "final_metric", "find_metric", "load_reference",
    # live scoring and stopping (the integrations)
    "LiveScorer", "Score", "StopRule", "stop_rule", "P_OPTIMAL", "PREDICTED",
    # what the commands print
    "print_terminal", "to_json", "format_fit", "format_predictions", "format_prediction_table", "json_safe",
    "skipped_lines", "printable", "logdir_spec",
    # the command line's checks
    "expand_roots", "check_writable",
]
