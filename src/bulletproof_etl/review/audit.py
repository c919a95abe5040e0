"""The audit table ``review_actions`` and the versions that tell a stale action from a fresh one.

A version is the first 12 hex digits of the MD5 of the row as JSON: whatever changes in the
row (its reference, its text, anything) changes the version, so an action taken on what an
operator saw refuses when the row moved meanwhile.
"""

from __future__ import annotations

import getpass
import json
from contextlib import contextmanager
from dataclasses import dataclass

from psycopg2 import sql

from .._transaction import LOCK_KEY
from ..config import PreservationConfig
from ..errors import BulletproofError
from ..state import ensure_state_schema, state


class ReviewRefused(BulletproofError):
    """A review action that was not done: nothing changed. ``why`` is a short code."""

    def __init__(self, message: str, *, why: str = "refused", **payload) -> None:
        super().__init__(message, stage="review", why=why, **payload)
        self.why = why


def default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container): say so rather than guess
        return "unknown"


@contextmanager
def review_transaction(conn, config: PreservationConfig):
    """One transaction, under the import's advisory lock: committed at the end, else rolled back."""
    try:
        ensure_state_schema(conn, config)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,))
            if not cur.fetchone()[0]:
                raise ReviewRefused("a protected import or repair is running on this database; "
                                    "nothing was changed (try again when it has finished)", why="locked")
            yield cur
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def version_sql(alias: str) -> sql.Composed:
    return sql.SQL("left(md5(to_jsonb({})::text), 12)").format(sql.Identifier(alias))


def pk_where(pk: dict, alias: str = "t") -> tuple:
    """``t.a = %s AND t.b = %s`` for a primary key as JSON (values compared as text)."""
    parts = [sql.SQL("{}::text = %s").format(sql.Identifier(alias, column)) for column in pk]
    return sql.SQL(" AND ").join(parts), [str(v) for v in pk.values()]


def lock_row(cur, config: PreservationConfig, table: str, pk: dict, *, lock: bool = True):
    """``(row as dict, version)`` of one user row (locked unless ``lock=False``), or ``(None, None)``."""
    where, params = pk_where(pk)
    cur.execute(sql.SQL("SELECT to_jsonb(t), {v} FROM {tbl} t WHERE {w}{lock}").format(
        v=version_sql("t"), tbl=sql.Identifier(config.schema, table), w=where,
        lock=sql.SQL(" FOR UPDATE OF t" if lock else "")), params)
    found = cur.fetchone()
    return (found[0], found[1]) if found else (None, None)


def lock_entity(cur, config: PreservationConfig, entity: str, entity_id: int):
    """``(row, version)`` of a league, club, series or team, share-locked; ``(None, None)`` if absent."""
    cur.execute(sql.SQL("SELECT to_jsonb(e), {v} FROM {tbl} e WHERE e.id = %s FOR SHARE OF e").format(
        v=version_sql("e"), tbl=sql.Identifier(config.schema, config.table(entity))), (entity_id,))
    found = cur.fetchone()
    return (found[0], found[1]) if found else (None, None)


@dataclass
class Action:
    """One row of ``review_actions``."""

    id: int
    at: str
    actor: str
    action: str
    quarantine_id: int | None
    mapping: str | None
    table_name: str | None
    pk: dict | None
    column_name: str | None
    before: dict | None
    after: dict | None
    reason: str | None
    undoes: int | None
    undone_by: int | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @property
    def target(self) -> str:
        if self.quarantine_id is not None:
            return f"quarantine {self.quarantine_id}"
        if self.mapping is not None:
            return f"mapping {self.mapping}"
        return f"action {self.undoes}"


_COLUMNS = ("id", "at", "actor", "action", "quarantine_id", "mapping", "table_name", "pk", "column_name",
            "before", "after", "reason", "undoes", "undone_by")


def record(cur, config: PreservationConfig, *, actor: str, action: str, quarantine_id=None, mapping=None,
           table_name=None, pk=None, column_name=None, before=None, after=None, reason=None,
           undoes=None) -> int:
    cur.execute(
        sql.SQL("INSERT INTO {} (actor, action, quarantine_id, mapping, table_name, pk, column_name, before, "
                "after, reason, undoes) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id").format(
            state(config, "review_actions")),
        (actor, action, quarantine_id, mapping, table_name, _json(pk), column_name, _json(before),
         _json(after), reason, undoes))
    return cur.fetchone()[0]


def _json(value):
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def read_actions(cur, config: PreservationConfig, *, where: sql.Composable | None = None, params=(),
                 limit: int = 200, lock: bool = False) -> list:
    """Actions, newest first, optionally filtered by ``where`` (a composed SQL condition)."""
    cur.execute(
        sql.SQL("SELECT {cols} FROM {t} WHERE {w} ORDER BY id DESC LIMIT %s{lock}").format(
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in _COLUMNS), t=state(config, "review_actions"),
            w=where or sql.SQL("true"), lock=sql.SQL(" FOR UPDATE" if lock else "")),
        (*params, limit))
    out = []
    for row in cur.fetchall():
        values = dict(zip(_COLUMNS, row, strict=True))
        values["at"] = values["at"].isoformat(timespec="seconds")
        out.append(Action(**values))
    return out


def open_decision(cur, config: PreservationConfig, *, quarantine_id=None, mapping=None, lock: bool = False):
    """The action in force on a quarantine entry or a mapping (not undone), or None."""
    column, value = ("quarantine_id", quarantine_id) if quarantine_id is not None else ("mapping", mapping)
    where = sql.SQL("{} = %s AND undone_by IS NULL AND action <> 'undo'").format(sql.Identifier(column))
    found = read_actions(cur, config, where=where, params=(value,), limit=1, lock=lock)
    return found[0] if found else None
