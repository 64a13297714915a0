"""Stage 4 of the analysis: draw and write what the earlier stages found.

:mod:`.figures` (the seed paper's figures as PNGs; shared helpers in
:mod:`.plots`, the t-SNE in :mod:`.embedding`), :mod:`.html` (index.html),
:mod:`.tbexport` (the population's TensorBoard view), :mod:`.terminal`
(what the commands print, and JSON), :mod:`.numbers` (how numbers are shown),
:mod:`.report` (compare and write, in one call).
"""
