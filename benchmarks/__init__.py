"""The benchmark behind ``scripts/benchmark.py``: the protected import against what a user
would otherwise run, each measured in its own process on a clone of the same database.

Modules, each importing only those listed before it: ``constants`` (what is measured),
``counting`` (the connection that counts statements), ``legacy`` (the legacy ETL's untimed steps),
``original`` and ``approaches`` (the four ways of importing the teams), ``worker`` (one
measurement inside its own process), ``databases`` (the server and the template databases),
``measure`` (one measurement from outside: clone, run the worker, recount), ``summary`` (ratios,
checks, the table) and ``cli`` (the command line; its docstring is the ``--help`` text).
"""
