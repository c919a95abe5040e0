"""Counting statements: a psycopg2 connection whose cursors count every round trip (and, with
``--profile``, time each statement), and ``counting_connect``, which the worker patches in."""

from __future__ import annotations

import time

import psycopg2
import psycopg2.extensions


# -- counting statements ------------------------------------------------------------------
class CountingCursor(psycopg2.extensions.cursor):
    """Counts every statement sent to the server (the tracer hook of the benchmark)."""

    def execute(self, query, vars=None):  # noqa: A002 - psycopg2's own parameter name
        CountingConnection.count(1)
        if CountingConnection.trace is None or CountingConnection.paused:
            return super().execute(query, vars)
        started = time.perf_counter()
        try:
            return super().execute(query, vars)
        finally:  # --profile: seconds per statement text (its first 160 characters, as sent)
            text = query.as_string(self) if hasattr(query, "as_string") else str(query)
            key = " ".join(text.split())[:160]
            seconds, calls = CountingConnection.trace.get(key, (0.0, 0))
            CountingConnection.trace[key] = (seconds + time.perf_counter() - started, calls + 1)

    def executemany(self, query, vars_list):
        vars_list = list(vars_list)
        CountingConnection.count(len(vars_list))
        return super().executemany(query, vars_list)

    def copy_expert(self, sql_, file, size=8192):
        CountingConnection.count(1)
        return super().copy_expert(sql_, file, size)

    def copy_from(self, *args, **kwargs):
        CountingConnection.count(1)
        return super().copy_from(*args, **kwargs)

    def callproc(self, procname, parameters=None):
        CountingConnection.count(1)
        return super().callproc(procname, parameters)


class CountingConnection(psycopg2.extensions.connection):
    """Every cursor counts; commits and rollbacks count too (each is a round trip)."""

    statements = 0  # process-wide: the worker process measures one approach
    trace = None  # --profile: {statement text: (seconds, calls)}
    paused = False  # while the legacy ETL's own steps run

    @classmethod
    def count(cls, n: int) -> None:
        if not cls.paused:
            cls.statements += n

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cursor_factory = CountingCursor

    def commit(self):
        CountingConnection.count(1)
        return super().commit()

    def rollback(self):
        CountingConnection.count(1)
        return super().rollback()


real_connect = psycopg2.connect


def counting_connect(*args, **kwargs):
    kwargs.setdefault("connection_factory", CountingConnection)
    return real_connect(*args, **kwargs)
