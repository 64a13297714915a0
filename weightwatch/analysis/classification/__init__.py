"""Stage 3 of the analysis: learn which runs end well, and judge new ones, finished or not.

:mod:`.features` (architecture-agnostic features of a run at each step) ->
:mod:`.population` (labels and features of a population) -> :mod:`.candidates`
(scikit-learn models, cross-validated) -> :mod:`.export` (to plain arrays,
:mod:`.models`) -> :mod:`.fit` (a :class:`~.reference.Reference`, stored by
:mod:`.reffile`) -> :mod:`.classify` (verdicts on runs) and :mod:`.live`
(verdicts while a run trains, and the stop rule).
"""
