"""Bounded lock waits: no statement of the library waits for a lock longer than configured.

``config.lock_timeout`` (a PostgreSQL interval such as ``"30s"``; None: wait as long as it
takes; a session's own tighter setting stays) is set on the second connection that writes the durable snapshot, and, transaction-
locally, around every stage of a protected run on the run's connection (the ETL's own
statements keep the session's setting). A lock that is not granted in time ends the run with
one :class:`LockWaitTimeout` naming the sessions that held conflicting locks and their
last statements, read on a fresh connection.
"""

from __future__ import annotations

import contextlib
import logging

import psycopg2
import psycopg2.errors

from .errors import StageFailed

logger = logging.getLogger(__name__)

# granted locks strong enough to block a read (ACCESS EXCLUSIVE) or a write (from SHARE on)
_HOLDERS = """
SELECT l.pid, l.mode, coalesce(n.nspname || '.' || c.relname, l.locktype), a.state,
       left(regexp_replace(a.query, '\\s+', ' ', 'g'), 300)
FROM pg_locks l
LEFT JOIN pg_class c ON c.oid = l.relation
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.pid <> pg_backend_pid() AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
  AND (n.nspname IS NULL OR n.nspname = ANY(%s))
ORDER BY l.pid, 3
"""


class LockWaitTimeout(StageFailed):
    """The library waited ``lock_timeout`` for a lock; ``holders`` lists who held conflicting locks."""

# the configured limit, or the session's own where that is tighter: never a longer wait
_SET = ("SELECT current_setting('lock_timeout'), set_config('lock_timeout', CASE "
        "WHEN current_setting('lock_timeout')::interval > interval '0' "
        "AND current_setting('lock_timeout')::interval < %(t)s::interval "
        "THEN current_setting('lock_timeout') ELSE %(t)s END, %(local)s)")


# the session's jit setting (NULL on a server without JIT), then off for this transaction
_JIT_OFF = ("SELECT j, CASE WHEN j IS NOT NULL THEN set_config('jit', 'off', true) END "
            "FROM (SELECT current_setting('jit', true) AS j) s")


def set_session_timeout(conn, timeout: str | None) -> None:
    """``lock_timeout`` for the whole session (the snapshot's own connection)."""
    if timeout:
        with conn.cursor() as cur:
            cur.execute(_SET, {"t": timeout, "local": False})


@contextlib.contextmanager
def bounded(conn, timeout: str | None):
    """``lock_timeout`` for the statements inside the block, on a connection in a transaction,
    and no JIT compilation: the planner prices the library's checks over whole tables (OR-ed
    EXISTS, hashed sub-plans) above ``jit_above_cost``, and compiling took 0.2-0.6 s per
    statement that then ran in 10 ms (issue 14: the first end-of-run retirement, 1.2 s of a
    protected ETL run at 10,000 teams; damage repair, 0.3 s per statement at 100,000)."""
    if conn is None or conn.closed:
        yield
        return
    with conn.cursor() as cur:
        cur.execute(_JIT_OFF)
        jit = cur.fetchone()[0]
    before = set_local_timeout(conn, timeout) if timeout else None
    try:
        yield
    finally:
        try:
            with conn.cursor() as cur:
                if before is not None:
                    cur.execute("SELECT set_config('lock_timeout', %s, true)", (before,))
                if jit is not None:
                    cur.execute("SELECT set_config('jit', %s, true)", (jit,))
        except psycopg2.Error:  # the transaction failed: it ends, and the settings with it
            pass


def set_local_timeout(conn, timeout: str) -> str:
    """``lock_timeout`` for the rest of the transaction (never longer than the session's);
    returns the setting it replaces."""
    with conn.cursor() as cur:
        cur.execute(_SET, {"t": timeout, "local": True})
        return cur.fetchone()[0]


def holders(dsn: str, schemas) -> list:
    """``[(pid, mode, relation, state, last statement)]`` of granted conflicting locks now."""
    try:
        conn = psycopg2.connect(dsn)
    except psycopg2.Error as err:
        logger.warning("could not ask who holds the locks: %s", err)
        return []
    try:
        with conn.cursor() as cur:
            cur.execute(_HOLDERS, (list(schemas),))
            return cur.fetchall()
    finally:
        conn.close()


def explain(exc: BaseException, *, dsn: str | None, schemas, timeout: str | None, stage: str,
            own_pid: int | None = None) -> BaseException:
    """A :class:`LockWaitTimeout` naming the blocking statements, for a lock timeout; else ``exc``."""
    if not isinstance(exc, psycopg2.errors.LockNotAvailable):
        return exc
    found = holders(dsn, schemas) if dsn else []
    parts = []
    for pid, mode, relation, state, query in found:
        who = "the protected run's own connection (the ETL's open transaction)" if pid == own_pid else f"pid {pid}"
        parts.append(f"{who} holds {mode} on {relation} ({state}; last statement: {query})")
    cause = "; ".join(parts) if parts else "no session holds a conflicting lock any more"
    return LockWaitTimeout(
        f"{stage} was canceled by lock timeout (lock_timeout={timeout}, or the session's own where tighter): "
        f"{cause}. Nothing of the run was committed", stage=stage, holders=found)
