"""Stage 2 of the analysis: compare a population of loaded runs.

:mod:`.groups` (non / low / mid / high by final metric, per family) ->
:mod:`.final` (each run's final weight statistics per layer and role) ->
:mod:`.dispersion` (are the high runs' weights more alike?) ->
:mod:`.compare` (all of it for a directory, with every problem named).
"""
