"""``python -m benchmarks.paper``: see benchmarks/paper/run.py."""

from benchmarks.paper.run import main

raise SystemExit(main())
