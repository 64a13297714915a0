"""Stage 1 of the analysis: find runs and read their event files into :class:`~.run.Run` objects.

Modules, in the order the data flows: :mod:`.find` (which directories are
runs) -> :mod:`.records` (TFRecord framing and checksums) -> :mod:`.wire`
(the compiled protobuf decoder) -> :mod:`.parse` (bytes to :mod:`.columns`)
-> :mod:`.cache` (what was parsed, kept on disk) -> :mod:`.one_run` (one run
directory) -> :mod:`.loader` (many, in parallel). :mod:`.run` and
:mod:`.lazy` are the loaded run's data model; :mod:`.metric` finds its final
performance. Only the core (:mod:`weightwatch.events`, ``layers``) is below.
"""
