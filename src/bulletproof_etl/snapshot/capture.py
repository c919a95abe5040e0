"""Change capture: triggers that record every delete and update, so that a run that changes
nothing copies nothing.

``bulletproof-etl enable`` installs them once (:func:`install`: creating a trigger takes a
SHARE ROW EXCLUSIVE lock and needs the table's owner, so never inside a run); ``disable``
removes them (:func:`uninstall`). On the entity tables (leagues, clubs, series, teams),
statement-level ``AFTER UPDATE`` and ``AFTER DELETE`` triggers with a transition table write
one row to ``captured`` per statement that changed rows (its table, operation, row count and
ids), whoever runs it; a ``BEFORE TRUNCATE`` trigger records a truncation. On the tables that
hold user rows, and for inserts into entity tables, they record only inside a protected run
(the run sets ``bulletproof.capture_run`` for its transaction): a user's own changes cost them
one ``WHEN`` test. Every trigger is ``ENABLE ALWAYS``: it fires under
``session_replication_role = replica`` too, as the legacy ETL's clear runs.

A direct call takes the capture path (:func:`decide`) when every trigger is in place and no
change by anyone else since the last run is unseen: it starts the run without a snapshot and
takes the whole snapshot only when the run first deletes or updates a row
(``BulletproofTeamPreservation``). Otherwise the run takes the full path, as without triggers.
A row is ``seen`` once a committed run has taken it into account (:func:`mark_seen`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from psycopg2 import sql

from ..catalog import Catalog
from ..config import ENTITIES, PreservationConfig
from ..state import state

logger = logging.getLogger(__name__)

#: the transaction-local setting a run arms the capture with (its run id)
SETTING = "bulletproof.capture_run"
PREFIX = "bulletproof_capture_"
_ARMED = sql.SQL("(current_setting({}, true) <> '')").format(sql.Literal(SETTING))
_RUN = sql.SQL("nullif(current_setting({}, true), '')::bigint").format(sql.Literal(SETTING))

# (trigger suffix, timing and event, transition table, function, armed only) per kind of table
_ENTITY = (("delete", "AFTER DELETE", "OLD", "capture_ids", False),
           ("update", "AFTER UPDATE", "OLD", "capture_ids", False),
           ("insert", "AFTER INSERT", "NEW", "capture_new", True),
           ("truncate", "BEFORE TRUNCATE", None, "capture_truncate", False))
_USER = (("delete", "AFTER DELETE", "OLD", "capture_rows", True),
         ("update", "AFTER UPDATE", "OLD", "capture_rows", True),
         ("truncate", "BEFORE TRUNCATE", None, "capture_truncate", False))
_FUNCTIONS = {
    "capture_ids": "SELECT TG_TABLE_NAME, TG_OP, count(*), array_agg(o.id), r.run, r.run FROM old_rows o, r "
                   "GROUP BY r.run",
    "capture_rows": "SELECT TG_TABLE_NAME, TG_OP, count(*), NULL::bigint[], r.run, r.run FROM old_rows, r "
                    "GROUP BY r.run",
    "capture_new": "SELECT TG_TABLE_NAME, TG_OP, count(*), NULL::bigint[], r.run, r.run FROM new_rows, r "
                   "GROUP BY r.run",
    "capture_truncate": "SELECT TG_TABLE_NAME, TG_OP, NULL::bigint, NULL::bigint[], r.run, r.run FROM r",
}


@dataclass
class CaptureStatus:
    """Whether every capture trigger is in place: ``enabled``, ``missing`` (none), ``partial``."""

    state: str
    missing: list = field(default_factory=list)  # "table: trigger" not installed
    disabled: list = field(default_factory=list)  # installed, but not ENABLE ALWAYS

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def watched(config: PreservationConfig, catalog: Catalog) -> dict:
    """``{table: triggers}``: the entity tables and every table holding user rows."""
    out = {config.table(e): _ENTITY for e in ENTITIES}
    for table in catalog.user_tables():
        out.setdefault(table, _USER)
    return out


def install(conn, config: PreservationConfig, catalog: Catalog) -> list:
    """Create (or re-create) the functions and triggers; returns ``"table: trigger"`` per trigger.

    Records an ``ENABLE`` row where any user row exists: changes before it were not captured,
    so the next run takes the full path once (with no user row yet, nothing can have been
    damaged). Runs in the caller's transaction (the caller commits).
    """
    from ..state import ensure_state_schema

    ensure_state_schema(conn, config)
    made = []
    with conn.cursor() as cur:
        for name, select in _FUNCTIONS.items():
            body = sql.SQL(
                "BEGIN INSERT INTO {cap} (table_name, op, rows, ids, run_id, seen_by) "
                "WITH r AS (SELECT {run} AS run) {select}; RETURN NULL; END"
            ).format(cap=state(config, "captured"), run=_RUN, select=sql.SQL(select)).as_string(conn)
            cur.execute(sql.SQL(
                "CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
                "SET search_path = pg_catalog, pg_temp AS {body}").format(
                    fn=state(config, name), body=sql.Literal(body)))
            cur.execute(sql.SQL("REVOKE ALL ON FUNCTION {}() FROM PUBLIC").format(state(config, name)))
        for table, triggers in watched(config, catalog).items():
            tbl = sql.Identifier(config.schema, table)
            for suffix, event, transition, function, armed in triggers:
                trigger = sql.Identifier(PREFIX + suffix)
                cur.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(trigger, tbl))
                cur.execute(sql.SQL("CREATE TRIGGER {trg} {event} ON {tbl}{ref} FOR EACH STATEMENT{when} "
                                    "EXECUTE FUNCTION {fn}()").format(
                    trg=trigger, event=sql.SQL(event), tbl=tbl,
                    ref=sql.SQL(" REFERENCING {} TABLE AS {}").format(
                        sql.SQL(transition), sql.Identifier(transition.lower() + "_rows")) if transition else sql.SQL(""),
                    when=sql.SQL(" WHEN {}").format(_ARMED) if armed else sql.SQL(""),
                    fn=state(config, function)))
                cur.execute(sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(tbl, trigger))
                made.append(f"{table}: {PREFIX}{suffix}")
        users = [sql.SQL("EXISTS (SELECT 1 FROM {})").format(sql.Identifier(config.schema, t))
                 for t in catalog.user_tables()]
        cur.execute(sql.SQL("SELECT {}").format(sql.SQL(" OR ").join(users) if users else sql.SQL("false")))
        if cur.fetchone()[0]:  # user rows that changes before now, unrecorded, may have damaged
            cur.execute(sql.SQL("INSERT INTO {} (table_name, op) VALUES ('', 'ENABLE')").format(
                state(config, "captured")))
    return made


def uninstall(conn, config: PreservationConfig) -> list:
    """Drop every capture trigger of the schema and the functions; ``"table: trigger"`` dropped."""
    with conn.cursor() as cur:
        cur.execute("SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
                    "AND t.tgname LIKE %s ORDER BY 1, 2", (config.schema, PREFIX.replace("_", "\\_") + "%"))
        found = cur.fetchall()
        for table, trigger in found:
            cur.execute(sql.SQL("DROP TRIGGER {} ON {}").format(
                sql.Identifier(trigger), sql.Identifier(config.schema, table)))
        for name in _FUNCTIONS:
            cur.execute(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(state(config, name)))
    return [f"{t}: {g}" for t, g in found]


def status(conn, config: PreservationConfig, catalog: Catalog) -> CaptureStatus:
    """Which capture triggers are missing or not ``ENABLE ALWAYS`` (``pg_trigger.tgenabled``)."""
    wanted = {(t, PREFIX + s[0]) for t, triggers in watched(config, catalog).items() for s in triggers}
    with conn.cursor() as cur:
        cur.execute("SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
                    "AND c.relname = ANY(%s)", (config.schema, sorted({t for t, _ in wanted})))
        have = {(t, g): e for t, g, e in cur.fetchall()}
    missing = sorted(f"{t}: {g}" for t, g in wanted if (t, g) not in have)
    disabled = sorted(f"{t}: {g}" for t, g in wanted if (t, g) in have and have[(t, g)] != "A")
    if not missing and not disabled:
        return CaptureStatus("enabled")
    return CaptureStatus("missing" if len(missing) == len(wanted) else "partial", missing, disabled)


def unseen(cur, config: PreservationConfig) -> list:
    """Changes no committed run has taken into account yet: ``[(table, op, rows)]``."""
    cur.execute(sql.SQL("SELECT table_name, op, sum(rows) FROM {} WHERE seen_by IS NULL "
                        "GROUP BY 1, 2 ORDER BY 1, 2").format(state(config, "captured")))
    return cur.fetchall()


def current_snapshot(cur) -> str:
    cur.execute("SELECT pg_current_snapshot()::text")
    return cur.fetchone()[0]


def arm(cur, run_id: int | None) -> None:
    """Record this session's changes as run ``run_id``'s (None: stop recording them).

    For the session, not the transaction: should the caller commit in the middle of the run,
    what the run changes afterwards is still recorded as its own, and the run can say so."""
    cur.execute("SELECT set_config(%s, %s, false)", (SETTING, "" if run_id is None else str(run_id)))


def changed(cur, config: PreservationConfig, run_id: int) -> dict:
    """``{op: {table: rows}}`` that run ``run_id`` recorded (its own transaction's, armed)."""
    cur.execute(sql.SQL("SELECT op, table_name, sum(rows)::bigint FROM {} WHERE run_id = %s "
                        "GROUP BY 1, 2").format(state(config, "captured")), (run_id,))
    out: dict = {}
    for op, table, rows in cur.fetchall():  # rows is None for a truncation
        out.setdefault(op, {})[table] = rows
    return out


def describe(changes: dict) -> str:
    """``{op: {table: rows}}`` as words: "delete of 3 teams rows, update of all ..."."""
    return ", ".join(f"{op.lower()} of {rows if rows is not None else 'all'} {table} rows"
                     for op, tables in sorted(changes.items()) for table, rows in sorted(tables.items()))


def mark_seen(cur, config: PreservationConfig, run_id: int, snapshot: str) -> int:
    """Mark as seen by ``run_id`` the changes its transaction made and those committed before
    ``snapshot`` (taken when the run started, so one committed during the run stays unseen)."""
    cur.execute(sql.SQL(
        "UPDATE {} SET seen_by = %s WHERE seen_by IS NULL AND (xid = pg_current_xact_id_if_assigned() "
        "OR pg_visible_in_snapshot(xid, %s::pg_snapshot))").format(state(config, "captured")), (run_id, snapshot))
    return cur.rowcount


def prune(cur, config: PreservationConfig, oldest_kept_run: int) -> int:
    """Drop the records seen by runs older than ``oldest_kept_run`` (retention)."""
    cur.execute(sql.SQL("DELETE FROM {} WHERE seen_by < %s").format(state(config, "captured")), (oldest_kept_run,))
    return cur.rowcount
