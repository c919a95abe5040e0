"""The protected import side by side with what a user would otherwise run: the command line of the
``benchmarks`` package (``benchmarks/cli.py``; the same as ``python -m benchmarks``).

Usage::

    python scripts/benchmark.py --quick
    python scripts/benchmark.py --help
"""

import sys

from benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main())
