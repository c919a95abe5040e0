"""Staged, set-based upsert that gives every known natural key its old id back.

Per entity: stage the incoming rows (COPY into a temporary table), de-duplicate their keys
(the first record wins, every later one is reported), resolve ids (the row now in the table
with that key, else the newest id the ledger knows for the key, else a new one from a
sequence kept ahead of every id the table or the ledger has seen), then one statement: an
``UPDATE`` of the existing rows whose values differ and an ``INSERT`` of the new ids, so an
unchanged row is neither written nor locked (:func:`set_based_statement`). Rows it skips are
not returned by ``RETURNING``; their ids are already known from the staging table. If that
statement fails (a unique constraint it could not foresee: two rows swapping names), a manual
select-then-update-or-insert runs row by row inside savepoints so the transaction survives;
the result says which path ran.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field, fields

import psycopg2
from psycopg2 import sql

from ..config import PreservationConfig
from ..errors import InvalidInput
from ..failures import first_line, must_abort
from ..state import copy_rows, ensure_state_schema, relname, state
from .write import Write, idents, source, write_row_by_row

logger = logging.getLogger(__name__)

@dataclass
class UpsertResult:
    """What one entity's upsert did.

    Every staged key is counted once in ``created`` (a new id), ``preserved_from_ledger``
    (re-inserted under the id the ledger knew), ``updated`` or ``unchanged``. ``preserved``
    counts keys whose id now is an id the ledger knew for that key before the import.
    ``rekeyed`` counts rows someone else re-inserted under a new id that got their ledger id
    back. ``duplicates`` lists ``{"record", "key", "winner"}`` for every record whose key an
    earlier record already had.
    """

    entity: str
    read: int = 0
    duplicates: list = field(default_factory=list)
    preserved: int = 0
    preserved_from_ledger: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    retired: int = 0
    rekeyed: int = 0
    blocked: int = 0
    errors: list = field(default_factory=list)
    # records not imported because a parent they name does not exist and the ETL imports that
    # parent itself (it skips such a record too): {"record", "team", "missing"}
    skipped: list = field(default_factory=list)
    path: str = "set-based"
    # existing rows given the import's spelling of their key (a club's capitalisation); the
    # rows a unique constraint kept on their old spelling: {"id", "kept", "import", "constraint"}
    respelled: int = 0
    kept_spelling: list = field(default_factory=list)
    # at the end of a protected run: rows the import no longer names that nothing references
    # (removed, as the legacy ETL removes them) and those still referenced (kept for references)
    removed: int = 0
    kept_for_references: int = 0
    new_ids: list = field(default_factory=list, repr=False)
    retired_ids: list = field(default_factory=list, repr=False)
    renamed_ids: list = field(default_factory=list, repr=False)  # teams that gave up their name
    ids: dict = field(default_factory=dict, repr=False)  # key -> id
    # parents: {name: id} of the rows of keys that several rows hold (one spelled as each team)
    spelled: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        # field by field: a whole-object copy would deep-copy the id maps (one entry per team)
        # only to drop them
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name not in _PRIVATE}


_PRIVATE = ("ids", "new_ids", "retired_ids", "renamed_ids", "spelled")


def _parent_write(config: PreservationConfig, entity: str) -> tuple:
    """``(key column, data columns, Write)`` for leagues, clubs or series."""
    tbl = sql.Identifier(config.schema, config.table(entity))

    def keep(i: int, column: str, fallback: sql.Composable) -> sql.Composable:
        # the record's value, else the row's, else the ledger's (a revived row), else a default
        return sql.SQL("coalesce(s.{ci}, cur.{c}, s.lrow->>{lc}, {fb})").format(
            ci=sql.Identifier(f"c{i}"), c=sql.Identifier(column), lc=sql.Literal(column), fb=fallback)

    if entity == "leagues":
        key, data = config.league_code, [config.league_name]
        if config.league_url:
            data.append(config.league_url)
        fallbacks = [sql.SQL("s.c0")] + [sql.SQL("NULL")] * (len(data) - 1)
    elif entity == "clubs":
        key, data, fallbacks = config.club_name, [], []
    elif entity == "series":
        key, data, fallbacks = config.series_name, [config.series_display], [sql.SQL("s.c0")]
    else:
        raise ValueError(f"not a parent entity: {entity}")
    values = [sql.SQL("s.c0")] + [keep(i, c, fb) for i, (c, fb) in enumerate(zip(data, fallbacks, strict=True), start=1)]
    return key, tuple(data), Write(tbl, (key, *data), tuple(values))


def shape(config: PreservationConfig, entity: str) -> tuple:
    """The key column and data columns a parent record may carry."""
    key, data, _write = _parent_write(config, entity)
    return key, data


# -- staging ------------------------------------------------------------------------------

def _stage(cur, columns, rows) -> None:
    """``rows``: [ord, key, id or None, existed, value per column]."""
    cur.execute("DROP TABLE IF EXISTS _bp_stage")
    # the staging table's own column names are fixed (c0, c1, ...); only its data varies
    defs = sql.SQL("").join(sql.SQL(", {} text").format(sql.Identifier(f"c{i}")) for i in range(len(columns)))
    # rows without an id get one by an UPDATE (resolve_ids): with room left on each page it
    # rewrites them in place (no new index entry), half the cost
    room = sql.SQL(" WITH (fillfactor = 50)" if any(row[2] is None for row in rows) else "")
    cur.execute(sql.SQL(
        "CREATE TEMP TABLE _bp_stage (ord int PRIMARY KEY, key text[] NOT NULL, id bigint, "
        "existed boolean NOT NULL DEFAULT false, from_ledger boolean NOT NULL DEFAULT false, "
        "lrow jsonb{defs}){room} ON COMMIT DROP").format(defs=defs, room=room))
    names = ["ord", "key", "id", "existed"] + [f"c{i}" for i in range(len(columns))]
    copy_rows(cur, sql.Identifier("_bp_stage"), names, rows)
    # statistics only for the columns whose counts the later plans need: how many ids are
    # missing (ord is unique by its key). Not the value columns (only copied), nor the keys: an
    # array's element statistics cost four fifths of the whole ANALYZE and no plan uses them
    cur.execute("ANALYZE _bp_stage (ord, id)")


def _ledger_ids(cur, config, entity: str) -> None:
    """Give staged keys without a row the newest ledger id of their key that no row uses."""
    cur.execute(
        sql.SQL(
            "UPDATE _bp_stage s SET id = pick.id, lrow = pick.row, from_ledger = true FROM ("
            " SELECT DISTINCT ON (st.ord) st.ord, l.id, l.row FROM _bp_stage st"
            " JOIN {ledger} l ON l.entity = %s AND l.key = st.key"
            " WHERE st.id IS NULL AND NOT EXISTS (SELECT 1 FROM {tbl} t WHERE t.id = l.id)"
            " ORDER BY st.ord, l.last_run DESC NULLS LAST, l.id DESC) pick"
            " WHERE s.ord = pick.ord"
        ).format(ledger=state(config, "ledger"), tbl=sql.Identifier(config.schema, config.table(entity))),
        (entity,),
    )


def _new_ids(cur, config, entity: str) -> None:
    # first past every id the ledger knows: a new key must never take a retired key's id
    keep_sequence_ahead(cur, config, entity, ledger=True)
    # the sequence's name looked up once (an InitPlan), not once per row; ids still in ord order
    cur.execute(
        "UPDATE _bp_stage SET id = nextval((SELECT pg_get_serial_sequence(%s, 'id'))) WHERE id IS NULL",
        (_relname(config, entity),),
    )


def _relname(config: PreservationConfig, entity: str) -> str:
    """``"schema"."table"`` of ``entity`` as text, for functions that take a relation name."""
    return relname(config.schema, config.table(entity))


def keep_sequence_ahead(cur, config: PreservationConfig, entity: str, *, ledger: bool | None = None) -> None:
    """Move the id sequence past every id in the table and every id the ledger has seen.

    ``ledger`` says whether the state schema exists (None: look it up).
    """
    has_ledger = ledger
    if has_ledger is None:
        cur.execute("SELECT to_regclass(%s)", (relname(config.state_schema, "ledger"),))
        has_ledger = cur.fetchone()[0] is not None
    ledger_max = (sql.SQL("(SELECT max(id) FROM {} WHERE entity = %(entity)s)").format(state(config, "ledger"))
                  if has_ledger else sql.SQL("NULL::bigint"))
    cur.execute(
        sql.SQL(
            "SELECT setval(seq, m) FROM (SELECT pg_get_serial_sequence(%(rel)s, 'id') AS seq, "
            "greatest((SELECT max(id) FROM {tbl}), {ledger_max}) AS m) x "
            "WHERE seq IS NOT NULL AND m IS NOT NULL "
            "AND m > coalesce(pg_sequence_last_value(seq::regclass), 0)"
        ).format(tbl=sql.Identifier(config.schema, config.table(entity)), ledger_max=ledger_max),
        {"rel": _relname(config, entity), "entity": entity},
    )


def resolve_ids(cur, config: PreservationConfig, entity: str, *, missing: bool = True) -> None:
    """Ledger ids for keys without a row, new ids for the rest.

    ``missing``: whether some staged row has no id yet. When none has (a repeated import),
    neither step has a row to change and the ids' statistics are still right: the sequence is
    kept ahead as before, and only the index is made."""
    if missing:
        _ledger_ids(cur, config, entity)
        _new_ids(cur, config, entity)
    else:
        keep_sequence_ahead(cur, config, entity, ledger=True)
    cur.execute("CREATE INDEX ON _bp_stage (id)")
    if missing:
        cur.execute("ANALYZE _bp_stage (id)")  # only the ids changed


# -- writing ------------------------------------------------------------------------------

def set_based_statement(write: Write) -> sql.Composed:
    """The one statement of a batch: an ``UPDATE`` of the existing rows whose values differ and
    an ``INSERT`` of the ids not in the table yet; returns ``(id, inserted)`` of each row written.

    Not ``INSERT ... ON CONFLICT DO UPDATE ... WHERE``: that locks every conflicting row (``FOR
    UPDATE``, the SET list names key columns) before it evaluates the WHERE, so every unchanged
    row the import names would stay locked until the commit and a user's foreign-key check
    (``FOR KEY SHARE``) on it would wait for the whole run. Here an unchanged row is neither
    locked nor written; a changed row whose key columns keep their values takes ``FOR NO KEY
    UPDATE``, which a foreign-key check does not wait for. In the UPDATE the row in the table is
    ``cur`` itself (the values may read it); in the INSERT ``cur`` is the missing row (NULLs)."""
    cols = sql.SQL(", ").join(idents(write.columns))
    vals = sql.SQL(", ").join(write.values)
    tcols = sql.SQL(", ").join(sql.SQL("cur.{}").format(c) for c in idents(write.columns))
    touch = sql.SQL("").join(sql.SQL(", {} = {}").format(sql.Identifier(c), e) for c, e in write.touch)
    return sql.SQL(
        "WITH u AS (UPDATE {tbl} cur SET ({cols}) = ROW({vals}){touch} FROM _bp_stage s "
        "WHERE cur.id = s.id AND ({tcols}) IS DISTINCT FROM ({vals}) RETURNING cur.id), "
        "i AS (INSERT INTO {tbl} (id, {cols}) SELECT s.id, {vals} {src} AND cur.id IS NULL ORDER BY s.ord "
        "RETURNING id) "
        "SELECT id, false FROM u UNION ALL SELECT id, true FROM i"
    ).format(tbl=write.table, cols=cols, vals=vals, src=source(write), tcols=tcols, touch=touch)


def write_staged(cur, write: Write, result: UpsertResult, config: PreservationConfig) -> None:
    """The set-based statement; on failure the manual path. Then count what happened."""
    cur.execute("SAVEPOINT bp_upsert")
    try:
        cur.execute(set_based_statement(write))
        written = cur.fetchall()
        cur.execute("RELEASE SAVEPOINT bp_upsert")
    except psycopg2.Error as exc:
        if must_abort(exc):  # a timeout or a lost connection: row by row cannot help
            raise
        cur.execute("ROLLBACK TO SAVEPOINT bp_upsert")
        cur.execute("RELEASE SAVEPOINT bp_upsert")
        message = first_line(exc)
        logger.warning("set-based upsert of %s failed (%s); using the manual path", result.entity, message)
        result.path = "manual"
        result.errors.append({"stage": "set-based", "error": message,
                              "constraint": getattr(getattr(exc, "diag", None), "constraint_name", None)})
        written = write_row_by_row(cur, write, result)
    _tally(cur, state(config, "ledger"), result, {i for i, ins in written if ins},
           {i for i, ins in written if not ins})


def _tally(cur, ledger: sql.Composable, result: UpsertResult, inserted: set, updated: set) -> None:
    # known: the id is one the ledger already holds for this key (identity preserved); asked
    # here rather than written into the staging table (an UPDATE of every staged row); the
    # ledger has one row per (entity, id) at most
    cur.execute(sql.SQL(
        "SELECT s.key, s.id, s.from_ledger, l.id IS NOT NULL FROM _bp_stage s LEFT JOIN {ledger} l "
        "ON l.entity = %s AND l.id = s.id AND l.key = s.key ORDER BY s.ord"
    ).format(ledger=ledger), (result.entity,))
    for key, id_, from_ledger, known in cur.fetchall():
        if id_ is None:
            continue  # reported in errors by the manual path
        result.ids[tuple(key)] = id_
        if known:
            result.preserved += 1
        else:
            result.new_ids.append(id_)
        if id_ in inserted:
            if from_ledger:
                result.preserved_from_ledger += 1
            else:
                result.created += 1
        elif id_ in updated:
            result.updated += 1
        else:
            result.unchanged += 1


# -- parents ------------------------------------------------------------------------------

def upsert_entities(conn, config: PreservationConfig, entity: str, records: list, current: dict) -> UpsertResult:
    """Upsert leagues, clubs or series. ``records``: dicts keyed by column name.

    ``current`` is ``{id: key}`` of the rows in the table now (from the catalog). A record
    without its key column is rejected before any SQL runs.
    """
    key_column, data, write = _parent_write(config, entity)
    result = UpsertResult(entity, read=len(records))
    for ord_, record in enumerate(records):
        value = record.get(key_column)
        if value is None or not str(value).strip():
            raise InvalidInput(f"{entity}: the key {key_column!r} is missing", record=ord_,
                               field=key_column, stage="upsert")
    ensure_state_schema(conn, config)  # the ledger is read below
    by_key = _ids_by_key(current)
    keys = [config.entity_key(entity, record[key_column]) for record in records]
    with conn.cursor() as cur:
        seen = _winners(cur, config, entity, key_column, records, keys, by_key)
        rows = []
        for ord_, (record, key) in enumerate(zip(records, keys, strict=True)):
            if seen[key] != ord_:
                result.duplicates.append({"record": ord_, "key": list(key), "winner": seen[key]})
                continue
            existing = by_key.get(key)
            rows.append([ord_, list(key), existing, existing is not None, record[key_column],
                         *(record.get(c) for c in data)])
        _stage(cur, (key_column, *data), rows)
        resolve_ids(cur, config, entity, missing=any(row[2] is None for row in rows))
        write_staged(cur, write, result, config)
        keep_sequence_ahead(cur, config, entity, ledger=True)
    return result


def _winners(cur, config: PreservationConfig, entity: str, key_column: str, records: list, keys: list,
             by_key: dict) -> dict:
    """``{key: ord of the record that is written}``: the first record of each key, except that
    an existing row whose spelling one of its key's records repeats keeps it (``LifeSport`` and
    ``Lifesport`` both imported: the row is not respelled back and forth from run to run)."""
    first: dict = {}
    spellings: dict = {}  # key -> {spelling: first ord}, for keys written more than one way
    for ord_, (record, key) in enumerate(zip(records, keys, strict=True)):
        if key in first:
            spellings.setdefault(key, {records[first[key]][key_column]: first[key]})
            spellings[key].setdefault(record[key_column], ord_)
        else:
            first[key] = ord_
    ids = {by_key[k]: k for k, s in spellings.items() if len(s) > 1 and k in by_key}
    if ids:
        cur.execute(sql.SQL("SELECT id, {} FROM {} WHERE id = ANY(%s)").format(
            sql.Identifier(key_column), sql.Identifier(config.schema, config.table(entity))), (list(ids),))
        for id_, name in cur.fetchall():
            kept = spellings[ids[id_]].get(name)
            if kept is not None:
                first[ids[id_]] = kept
    return first


def _ids_by_key(current: dict) -> dict:
    """``{key: id}``; when two rows share a key, the lowest id (deterministic)."""
    out: dict = {}
    for id_ in sorted(current):
        key = current[id_]
        if key is not None:
            out.setdefault(key, id_)
    return out
