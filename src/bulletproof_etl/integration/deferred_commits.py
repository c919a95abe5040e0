"""A connection whose commits wait for the end of the protected run.

The legacy ETL commits after every step; inside a protected run those commits must not
happen, or a failure half-way would leave half an import behind. The proxy hands every
attribute to the real psycopg2 connection except:

- ``commit()`` does nothing (counted), ``close()`` does nothing: the run commits once and
  closes at the end;
- ``rollback()`` undoes everything the run wrote so far (back to the start of the run,
  inside the one transaction) and marks the run failed: nothing of it will be committed;
- ``with conn:`` (which commits on a clean exit) follows the same two rules;
- switching ``autocommit`` on is refused: it would end the one transaction.

Cursors are wrapped (:class:`GuardedCursor`): ``cursor.connection`` is the proxy, so an ETL
that commits through ``cursor.connection.commit()`` (the real rally ETL does) is deferred
too; and while a :class:`~.clear_step.StatementGuard` is set (the ETL's own clear step runs),
each statement passes through it first: a ``DELETE``/``TRUNCATE`` of a preserved entity table
is skipped, a plain ``DELETE FROM`` of a table holding user rows keeps those rows.
"""

from __future__ import annotations

import logging

from ..errors import BulletproofError

logger = logging.getLogger(__name__)


class DeferredConnection:
    """Wraps a psycopg2 connection for the duration of one protected run."""

    __slots__ = ("_real", "_on_rollback", "commits_deferred", "closes_deferred", "rolled_back", "guard")

    def __init__(self, real, on_rollback) -> None:
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_on_rollback", on_rollback)
        object.__setattr__(self, "commits_deferred", 0)
        object.__setattr__(self, "closes_deferred", 0)
        object.__setattr__(self, "rolled_back", False)
        object.__setattr__(self, "guard", None)  # a StatementGuard while the ETL's clear runs

    @property
    def real(self):
        """The psycopg2 connection underneath."""
        return self._real

    def commit(self) -> None:
        object.__setattr__(self, "commits_deferred", self.commits_deferred + 1)
        logger.debug("commit deferred to the end of the protected run (%d so far)", self.commits_deferred)

    def close(self) -> None:
        object.__setattr__(self, "closes_deferred", self.closes_deferred + 1)

    def rollback(self) -> None:
        object.__setattr__(self, "rolled_back", True)
        self._on_rollback("the ETL rolled back its connection")

    def __enter__(self) -> DeferredConnection:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()
        return False

    def cursor(self, *args, **kwargs):
        return GuardedCursor(self._real.cursor(*args, **kwargs), self)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __setattr__(self, name, value) -> None:
        if name == "guard":
            object.__setattr__(self, name, value)
            return
        if name == "autocommit":
            if value:
                raise BulletproofError("autocommit cannot be switched on inside a protected run: "
                                       "the run is one transaction", stage="etl")
            return  # already off: the run's transaction is open
        setattr(self._real, name, value)

    def __repr__(self) -> str:
        return f"<DeferredConnection of {self._real!r}>"


class GuardedCursor:
    """A psycopg2 cursor whose ``connection`` is the proxy and whose statements may be guarded."""

    __slots__ = ("_cursor", "_proxy")

    def __init__(self, cursor, proxy: DeferredConnection) -> None:
        object.__setattr__(self, "_cursor", cursor)
        object.__setattr__(self, "_proxy", proxy)

    @property
    def connection(self) -> DeferredConnection:
        return self._proxy

    def execute(self, query, vars=None):
        guard = self._proxy.guard
        if guard is not None:
            query, vars = guard.filter(self._cursor, query, vars)
            if query is None:  # skipped: rowcount says 0, as a DELETE of nothing would
                return self._cursor.execute("SELECT 1 WHERE false")
            result = self._cursor.execute(query, vars)
            guard.done(self._cursor.rowcount)
            return result
        return self._cursor.execute(query, vars)

    def executemany(self, query, vars_list):
        guard = self._proxy.guard
        if guard is not None:
            query, _vars = guard.filter(self._cursor, query, None)
            if query is None:
                return None
            if _vars is not None:  # a statement the guard rewrote takes its own parameters
                return self._cursor.execute(query, _vars)
        return self._cursor.executemany(query, vars_list)

    def __enter__(self) -> GuardedCursor:
        self._cursor.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        return self._cursor.__exit__(exc_type, exc, tb)

    def __iter__(self):
        return iter(self._cursor)

    def __getattr__(self, name):
        return getattr(self._cursor, name)

    def __setattr__(self, name, value) -> None:
        setattr(self._cursor, name, value)


def real_connection(conn):
    """The psycopg2 connection behind ``conn`` (itself when it is not a proxy)."""
    return conn.real if isinstance(conn, DeferredConnection) else conn
