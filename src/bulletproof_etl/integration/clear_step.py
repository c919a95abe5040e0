"""The clear step of a protected run: rebuild what the ETL owns, keep what it must not delete.

The legacy clear deletes leagues, clubs, series and teams with foreign keys switched off;
that is where every id (and every user reference) is lost. In a protected run the clear
deletes only the rows of the ETL-owned tables (``config.etl_tables``) that are not user
rows (``config.user_rows_in_etl_tables``: practice rows in ``schedule``), children first,
with foreign keys on. With a league it deletes only that league's rows. The four entity
tables are left alone: the import upserts them in place.

That replacement is ``EtlHooks(clear_mode="replace")``. By default (``"guard"``) the ETL's own
clear step runs instead, as written, under a :class:`StatementGuard`: its backups of user
data and every other side effect happen, only the deletes of entity rows are skipped.
"""

from __future__ import annotations

import logging
import re

import psycopg2.errors
from psycopg2 import sql

from ..catalog import Catalog
from ..config import PreservationConfig

logger = logging.getLogger(__name__)


def _order(tables: set, edges) -> list:
    """Children before parents, so no delete waits for a foreign key."""
    order: list = []
    pending = set(tables)
    while pending:
        ready = sorted(t for t in pending
                       if not any(parent == t and child in pending and child != t for child, parent, *_ in edges))
        if not ready:  # a cycle among ETL tables: a stable order, the delete will say if it matters
            ready = sorted(pending)
        order.extend(ready)
        pending.difference_update(ready)
    return order


def _league_column(catalog: Catalog, table: str) -> str | None:
    for dep in catalog.dependents:
        if dep.table == table and dep.entity == "leagues" and dep.owner == "etl":
            return dep.column
    return None


def clear_statements(config: PreservationConfig, catalog: Catalog, league: str | None = None) -> list:
    """``[(table, statement, params)]`` for the clear; runs nothing."""
    present = set(catalog.primary_keys) | {child for child, *_ in catalog.fk_edges}
    tables = {t for t in config.etl_tables if t in present}
    out = []
    for table in _order(tables, catalog.fk_edges):
        conditions, params = [], []
        keep = config.user_rows_in_etl_tables.get(table)
        if keep:
            column, pattern = keep
            conditions.append(sql.SQL("NOT coalesce({} ILIKE %s, false)").format(sql.Identifier(column)))
            params.append(pattern)
        if league is not None:
            column = _league_column(catalog, table)
            if column is None:
                logger.warning("%s has no league column; left as it is in a single-league run", table)
                continue
            conditions.append(sql.SQL("{} IN (SELECT id FROM {} WHERE upper({}) = upper(%s))").format(
                sql.Identifier(column), sql.Identifier(config.schema, config.table("leagues")),
                sql.Identifier(config.league_code)))
            params.append(league)
        where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true")
        statement = sql.SQL("DELETE FROM {} WHERE {}").format(sql.Identifier(config.schema, table), where)
        out.append((table, statement, params))
    return out


def clear_etl_rows(conn, config: PreservationConfig, catalog: Catalog, league: str | None = None) -> dict:
    """Delete the ETL-owned rows (never entities, never user rows); ``{table: rows deleted}``."""
    deleted = {}
    with conn.cursor() as cur:
        for table, statement, params in clear_statements(config, catalog, league):
            cur.execute(statement, params)
            deleted[table] = cur.rowcount
            logger.info("cleared %d rows of %s", cur.rowcount, table)
    return deleted


_TARGET = r'(?:ONLY\s+)?(?:"?(?P<schema>\w+)"?\s*\.\s*)?"?(?P<table>\w+)"?'
_DELETE = re.compile(r"^\s*DELETE\s+FROM\s+" + _TARGET + r"(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)
_TRUNCATE = re.compile(r"^\s*TRUNCATE\s+(?:TABLE\s+)?(?P<targets>[^;]*?)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_NAME = re.compile(r"^" + _TARGET + r"$", re.IGNORECASE)
_REPLICA = re.compile(r"^\s*SET\s+(?:SESSION\s+|LOCAL\s+)?session_replication_role\b", re.IGNORECASE)


class StatementGuard:
    """What the ETL's own clear step may do in a protected run (see ``deferred_commits``).

    Every statement the ETL's clear executes passes :meth:`filter` first:

    - ``DELETE FROM`` or ``TRUNCATE`` of an entity table (leagues, clubs, series, teams) is
      skipped: the rows keep their ids and the import upserts them in place;
    - a plain ``DELETE FROM t`` (no condition) of a table that holds user rows
      (``config.user_rows_in_etl_tables``, practice times in ``schedule``) keeps those rows;
    - everything else (backups, settings, the deletes of the ETL's own tables) runs as written.

    ``skipped`` and ``deleted`` count per table what was kept and what was deleted.
    """

    def __init__(self, config: PreservationConfig) -> None:
        self.config = config
        self.entities = {config.table(e) for e in ("leagues", "clubs", "series", "teams")}
        self.skipped: dict = {}
        self.deleted: dict = {}
        self._pending: str | None = None

    def _ours(self, schema: str | None, table: str) -> bool:
        return (schema or self.config.schema).lower() == self.config.schema.lower()

    def filter(self, cursor, query, params):
        """``(query, params)`` to execute, or ``(None, None)`` to skip the statement."""
        self._pending = None
        text = query.as_string(cursor) if isinstance(query, sql.Composable) else query
        if isinstance(text, bytes):
            text = text.decode()
        if not isinstance(text, str):
            return query, params
        if _REPLICA.match(text):
            self._set_role(cursor, text)
            return None, None
        delete = _DELETE.match(text)
        if delete and self._ours(delete["schema"], delete["table"]):
            table = delete["table"]
            if table in self.entities:
                return self._skip(table)
            keep = self.config.user_rows_in_etl_tables.get(table)
            if keep and not delete["rest"].strip().rstrip(";").strip():
                column, pattern = keep
                statement = sql.SQL("DELETE FROM {} WHERE NOT coalesce({} ILIKE %s, false)").format(
                    sql.Identifier(self.config.schema, table), sql.Identifier(column))
                self._pending = table
                logger.info("the ETL's clear of %s keeps its user rows (%s ILIKE %r)", table, column, pattern)
                return statement, [pattern]
            self._pending = table
            return query, params
        truncate = _TRUNCATE.match(text)
        if truncate:
            names = [n.strip() for n in truncate["targets"].split(",")]
            parsed = [_NAME.match(n) for n in names]
            if all(parsed):
                hit = [m["table"] for m in parsed if m["table"] in self.entities and self._ours(m["schema"], m["table"])]
                if hit:
                    rest = [n for n, m in zip(names, parsed, strict=True) if m["table"] not in hit]
                    for table in hit:
                        self._skip(table)
                    if not rest:
                        return None, None
                    return "TRUNCATE " + ", ".join(rest), None
        return query, params

    def _set_role(self, cursor, text: str) -> None:
        """Switching foreign keys off needs a superuser; with entity rows kept it is not needed,
        so a role that may not do it runs the clear with foreign keys on, with a warning."""
        cursor.execute("SAVEPOINT bp_guard")
        try:
            cursor.execute(text)
        except psycopg2.errors.InsufficientPrivilege as err:
            cursor.execute("ROLLBACK TO SAVEPOINT bp_guard")
            logger.warning("the ETL's clear could not switch foreign keys off (%s); it runs with them on",
                           str(err).strip())
        cursor.execute("RELEASE SAVEPOINT bp_guard")

    def _skip(self, table: str) -> tuple:
        self.skipped[table] = self.skipped.get(table, 0) + 1
        logger.info("the ETL's clear of %s is skipped: its rows keep their ids and are upserted", table)
        return None, None

    def done(self, rowcount: int) -> None:
        """Called after a statement ran: count what a DELETE removed."""
        if self._pending is not None and rowcount >= 0:
            self.deleted[self._pending] = self.deleted.get(self._pending, 0) + rowcount
        self._pending = None
