"""The transaction of a protected run: one savepoint or one connection, one commit, one lock.

:class:`RunTransaction` is the half of :class:`~.preservation.BulletproofTeamPreservation`
that opens, commits and rolls back. On the caller's connection it works inside a savepoint
and never commits or closes; with its own connection it commits once, at the end. Durable
bookkeeping (the snapshot, the run log) goes through a second connection that commits at
once (:meth:`RunTransaction._side`). A rollback also sets back the id sequences the run
moved, and a failed rollback never hides the original error.
"""

from __future__ import annotations

import enum
import logging

import psycopg2
import psycopg2.errors

from . import db, failures, lock_wait
from .catalog import read_catalog
from .config_check import check_config
from .errors import BulletproofError, ConcurrentRun
from .identity import sequences
from .snapshot import capture
from .state import finish_run

logger = logging.getLogger(__name__)

#: pg_advisory lock key: two protected imports never run at once on one database.
LOCK_KEY = 0x62756C6C  # "bull"


class RunTransaction:
    """Opening, committing and rolling back one protected run (see the module docstring).

    The subclass sets ``config``, ``conn``, ``dsn``, ``dry_run``, ``durable``, ``report``,
    ``stage``, ``_own``, ``_entered`` and ``_xact_started`` in its ``__init__``.
    """

    def __enter__(self):
        if self._own:
            self.conn = db.connect(self.dsn)
        elif self.conn.autocommit:
            raise BulletproofError("the connection is in autocommit mode; one transaction is needed",
                                   stage="start")
        with self.conn.cursor() as cur:
            if not self._own:
                cur.execute("SAVEPOINT bp_run")
            cur.execute("SELECT now()")
            self._xact_started = cur.fetchone()[0]
            cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,))
            if not cur.fetchone()[0]:
                self._rollback()
                if self._own:  # nobody else will close the connection we opened
                    self.conn.close()
                raise ConcurrentRun("another protected import is running on this database; "
                                    "this one did nothing (try again when it has finished)", stage="lock")
            # every statement of the run waits at most lock_timeout for a lock (a protected ETL run
            # bounds only the library's own stages: the ETL's statements share the transaction)
            self._lock_timeout_before = None
            if self.mode != "etl" and self.config.lock_timeout:
                self._lock_timeout_before = lock_wait.set_local_timeout(self.conn, self.config.lock_timeout)
        try:
            # nextval() survives a rollback: remember the sequences the run may move (see identity/sequences.py)
            self._sequences = sequences.capture(self.conn, self.config)
            self._side_target = self._side_dsn() if self.durable else None
            check_config(self.conn, self.config)
            self.catalog = read_catalog(self.conn, self.config)
        except Exception as exc:  # nothing was written: give back the savepoint and say why, clearly
            self._rollback()
            error = failures.translate(exc, stage="start", in_stage=True, run_id=None, conn=self.conn,
                                       schemas=(self.config.schema, self.config.state_schema))
            if self._own:
                self.conn.close()
            if error is not None:
                raise error from exc
            raise
        self._entered = True
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self._entered:
            return False
        error = None
        try:
            if exc_type is not None or self.dry_run:
                self._rollback()
                self.report.outcome = "dry_run" if exc_type is None else "rolled_back"
                if exc_type is not None:
                    self._record_failure(exc)
            else:
                try:
                    self._before_commit()
                    self._commit()
                except psycopg2.Error as err:
                    if self.report.outcome != "running":  # committed; only recording the run failed
                        logger.error("the import was committed, but recording run %s failed: %s",
                                     self.report.run_id, err)
                    else:  # COMMIT itself failed (a killed connection): nothing was committed
                        exc, tb = err, err.__traceback__
                        self._rollback()
                        self._record_failure(err)
            if exc is not None:  # one clear error: the stage, the cause, the blocking lock, the privilege
                explained = lock_wait.explain(exc, dsn=self._side_dsn(), timeout=self.config.lock_timeout,
                                              stage=self.stage, schemas=(self.config.schema, self.config.state_schema))
                error = failures.translate(explained, stage=self.stage, in_stage=self.stage == "commit"
                                           or failures.raised_in_stage(tb, type(self)), run_id=self.report.run_id,
                                           conn=self.conn, schemas=(self.config.schema, self.config.state_schema))
                if error is None and explained is not exc:
                    error = explained
        finally:
            if self._own:
                self.conn.close()
        if error is not None:
            raise error from exc
        return False

    def _before_commit(self) -> None:
        """What the subclass records in the run's transaction just before it commits."""

    def _same_transaction(self) -> bool:
        """False when the caller committed or rolled back while we ran (our savepoint is gone)."""
        if self._own:
            return True
        with self.conn.cursor() as cur:
            cur.execute("SELECT now()")
            return cur.fetchone()[0] == self._xact_started

    def _rollback(self) -> None:
        try:
            if self._own:
                self.conn.rollback()
            else:
                try:  # first, as it works in an aborted transaction too (where nothing can be asked)
                    with self.conn.cursor() as cur:
                        cur.execute("ROLLBACK TO SAVEPOINT bp_run")
                        cur.execute("RELEASE SAVEPOINT bp_run")
                except psycopg2.errors.InvalidSavepointSpecification:
                    logger.warning("the caller's transaction ended during the protected run; "
                                   "only what it had not committed can be rolled back")
                    self.conn.rollback()
                    with self.conn.cursor() as cur:  # armed in the part the caller committed
                        capture.arm(cur, None)
                    return
        except psycopg2.Error as err:  # never let a failed rollback hide the original error
            logger.error("rollback failed too: %s", err)
            return
        self._reset_sequences()

    def undo_to_start(self) -> None:
        """Undo every write since ``__enter__`` and stay in the run (a wrapped ETL rolled back).

        The run itself is then bound to fail: its caller rolls back at the end as well.
        """
        with self.conn.cursor() as cur:
            if self._own:
                self.conn.rollback()
            else:
                cur.execute("ROLLBACK TO SAVEPOINT bp_run")
            cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,))
            cur.fetchone()
        self._reset_sequences()

    def _reset_sequences(self) -> None:
        """Set back the sequences the rolled-back run moved, under the lock (released by the rollback)."""
        if not getattr(self, "_sequences", None):
            return
        try:
            with self.conn.cursor() as cur:
                cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,))
                if cur.fetchone()[0]:
                    moved = sequences.reset(self.conn, self._sequences)
                    if moved:
                        logger.info("set %d id sequences back to where they were", moved)
            if self._own:
                self.conn.rollback()
        except psycopg2.Error as err:
            logger.warning("could not set the id sequences back (ids will have a gap): %s", err)
            if self._own and not self.conn.closed:
                self.conn.rollback()

    def _commit(self) -> None:
        self.stage = "commit"
        if self._own:
            self.conn.commit()
            self.report.outcome = "committed"
        elif not self._same_transaction():
            self.report.outcome = "completed (the caller committed during the run: not atomic)"
        else:
            with self.conn.cursor() as cur:
                if self._lock_timeout_before is not None:  # the caller's transaction goes on as it was
                    cur.execute("SELECT set_config('lock_timeout', %s, true)", (self._lock_timeout_before,))
                cur.execute("RELEASE SAVEPOINT bp_run")
            self.report.outcome = "completed (the caller commits)"
        if self.report.run_id is not None:
            self._side(lambda c: finish_run(c, self.config, self.report.run_id, "committed",
                                        report=_jsonable(self.report.to_dict())))

    def _record_failure(self, exc) -> None:
        self.report.outcome = "rolled_back"
        if self.report.error is None:
            self.report.error = str(exc).strip() or type(exc).__name__
        if self.report.run_id is not None:
            try:
                self._side(lambda c: finish_run(c, self.config, self.report.run_id, "failed", stage=self.stage,
                                                error=str(exc)[:2000]))
            except psycopg2.Error as err:  # never let the bookkeeping hide the original error
                logger.error("could not record run %s as failed: %s", self.report.run_id, err)

    def _side_dsn(self) -> str | None:
        if getattr(self, "_side_target", None):  # read while the connection lived (it may be dead now)
            return self._side_target
        if self.dsn or self._own:
            return db.resolve_dsn(self.dsn)
        return db.dsn_of(self.conn)

    def _side(self, action) -> bool:
        """Run ``action(conn)`` on a second connection and commit it (durable bookkeeping)."""
        if not self.durable:
            return False
        try:
            side = psycopg2.connect(self._side_dsn())
        except psycopg2.Error as err:
            logger.warning("no second connection for durable bookkeeping: %s", str(err).strip())
            return False
        try:
            lock_wait.set_session_timeout(side, self.config.lock_timeout)
            action(side)
            side.commit()
            return True
        except psycopg2.errors.LockNotAvailable as err:
            side.rollback()
            try:
                own = self.conn.get_backend_pid()
            except psycopg2.Error:
                own = None
            raise lock_wait.explain(err, dsn=self._side_dsn(), schemas=(self.config.schema, self.config.state_schema),
                                    timeout=self.config.lock_timeout, stage=self.stage, own_pid=own) from err
        finally:
            side.close()


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value
