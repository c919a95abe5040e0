"""The ``bulletproof-etl`` command: parsing (``main``), the commands, rendering, the demo.

The top of the stack: it calls the library and decides what a person sees (progress lines,
tables, exit codes 0, 1 and 2). Nothing below imports it.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
