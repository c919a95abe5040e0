"""``python -m benchmarks``: the same command as ``scripts/benchmark.py`` (the worker processes are
started this way, so they do not depend on where the script is)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
