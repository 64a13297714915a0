import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "agg")
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("WEIGHTWATCH_STRICT", "1")  # weightwatch raises its own errors in tests (see WatchOptions.strict)
sys.path.insert(0, str(Path(__file__).parent))  # tests/reference.py and helpers
# the loader's cache goes to a directory of the test session, never to ~/.cache (subprocesses inherit it)
os.environ.setdefault("WEIGHTWATCH_CACHE_DIR", tempfile.mkdtemp(prefix="weightwatch-test-cache-"))
