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

Cursors are the real ones, so ``cursor.connection`` is the real connection: an ETL that
commits through ``cursor.connection.commit()`` escapes the proxy (see docs/integration.md).
"""

from __future__ import annotations

import logging

from ..errors import BulletproofError

logger = logging.getLogger(__name__)


class DeferredConnection:
    """Wraps a psycopg2 connection for the duration of one protected run."""

    __slots__ = ("_real", "_on_rollback", "commits_deferred", "closes_deferred", "rolled_back")

    def __init__(self, real, on_rollback) -> None:
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_on_rollback", on_rollback)
        object.__setattr__(self, "commits_deferred", 0)
        object.__setattr__(self, "closes_deferred", 0)
        object.__setattr__(self, "rolled_back", False)

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

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __setattr__(self, name, value) -> None:
        if name == "autocommit":
            if value:
                raise BulletproofError("autocommit cannot be switched on inside a protected run: "
                                       "the run is one transaction", stage="etl")
            return  # already off: the run's transaction is open
        setattr(self._real, name, value)

    def __repr__(self) -> str:
        return f"<DeferredConnection of {self._real!r}>"


def real_connection(conn):
    """The psycopg2 connection behind ``conn`` (itself when it is not a proxy)."""
    return conn.real if isinstance(conn, DeferredConnection) else conn
