"""The legacy ETL's own steps around the team import (clear, leagues, clubs, series), run
uncounted and untimed, and the rows they wrote, so that no approach is charged for them."""

from __future__ import annotations

from .counting import CountingConnection


class _NoCommit:
    """The caller's connection as the legacy ETL sees it, minus its commits: the legacy
    ``clear_target_tables`` commits, which would end the protected run's transaction early."""

    def __init__(self, conn):
        self._conn = conn

    def cursor(self, *args, **kwargs):
        return self._conn.cursor(*args, **kwargs)

    def commit(self):
        pass


def xact_writes(conn) -> dict:
    """Rows this transaction has written so far, per table (``pg_stat_xact_user_tables``)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT schemaname || '.' || relname, n_tup_ins, n_tup_upd, n_tup_del "
            "FROM pg_stat_xact_user_tables"
        )
        return {name: (i, u, d) for name, i, u, d in cur.fetchall()}


def legacy_segment(conn, etl, clear: bool, commit: bool = False) -> dict:
    """The legacy ETL's own steps around the team import (untimed, uncounted): the rows they wrote."""
    CountingConnection.paused = True
    before = xact_writes(conn)
    if clear:
        etl.clear_target_tables(_NoCommit(conn))
    etl.import_leagues(conn, etl.extract_leagues())
    etl.import_clubs(conn, etl.extract_clubs())
    etl.import_series(conn, etl.extract_series())
    etl.import_club_leagues(conn)
    etl.import_series_leagues(conn)
    after = xact_writes(conn)
    if commit:  # the legacy ETL commits after each step; an unprotected approach starts afresh
        conn.commit()
    CountingConnection.paused = False
    out = {}
    for name, counts in after.items():
        prev = before.get(name, (0, 0, 0))
        delta = tuple(a - b for a, b in zip(counts, prev, strict=True))
        if any(delta):
            out[name] = delta
    return out
