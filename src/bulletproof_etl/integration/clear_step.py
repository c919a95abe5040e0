"""The clear step of a protected run: rebuild what the ETL owns, keep what it must not delete.

The legacy clear deletes leagues, clubs, series and teams with foreign keys switched off;
that is where every id (and every user reference) is lost. In a protected run the clear
deletes only the rows of the ETL-owned tables (``config.etl_tables``) that are not user
rows (``config.user_rows_in_etl_tables``: practice rows in ``schedule``), children first,
with foreign keys on. With a league it deletes only that league's rows. The four entity
tables are left alone: the import upserts them in place.
"""

from __future__ import annotations

import logging

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
