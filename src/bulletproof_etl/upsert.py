"""Staged, set-based upsert that gives every known natural key its old id back.

Per entity: stage the incoming rows (COPY into a temporary table), resolve ids (the row
now in the table with that key, else the newest id the ledger knows for the key, else a
new one), then one ``INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE ... IS DISTINCT FROM
...`` that writes only rows that really change. If that statement fails (a unique
constraint the staging could not foresee), a manual select-then-update-or-insert runs
inside savepoints so the transaction survives; the result says which path ran.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import psycopg2
from psycopg2 import sql

from .config import PreservationConfig
from .snapshot import _copy_rows, state
from .validate import TeamRecord

logger = logging.getLogger(__name__)


@dataclass
class UpsertResult:
    """What one entity's upsert did. ``preserved`` counts keys that kept an id they had."""

    entity: str
    read: int = 0
    duplicates: list = field(default_factory=list)
    preserved: int = 0
    preserved_from_ledger: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    retired: int = 0
    errors: list = field(default_factory=list)
    path: str = "set-based"
    new_ids: list = field(default_factory=list, repr=False)
    retired_ids: list = field(default_factory=list, repr=False)
    ids: dict = field(default_factory=dict, repr=False)  # key -> id

    def to_dict(self) -> dict:
        out = asdict(self)
        for private in ("ids", "new_ids", "retired_ids"):
            out.pop(private)
        return out


@dataclass(frozen=True)
class _Shape:
    """Column layout of one entity for the generic upsert."""

    entity: str
    key_column: str
    columns: tuple  # data columns written besides the key column


def shape(config: PreservationConfig, entity: str) -> _Shape:
    if entity == "leagues":
        return _Shape(entity, config.league_code, (config.league_name, "league_url"))
    if entity == "clubs":
        return _Shape(entity, config.club_name, ())
    if entity == "series":
        return _Shape(entity, config.series_name, (config.series_display,))
    raise ValueError(entity)


def _ledger_ids(cur, config, entity: str) -> None:
    """Give staged keys without an id the newest ledger id that no row uses now."""
    cur.execute(
        sql.SQL(
            "UPDATE _bp_stage s SET id = pick.id, from_ledger = true FROM ("
            " SELECT DISTINCT ON (st.ord) st.ord, l.id FROM _bp_stage st"
            " JOIN {ledger} l ON l.entity = %s AND l.key = st.key"
            " WHERE st.id IS NULL AND NOT EXISTS (SELECT 1 FROM {tbl} t WHERE t.id = l.id)"
            " ORDER BY st.ord, l.last_run DESC NULLS LAST, l.id DESC) pick"
            " WHERE s.ord = pick.ord"
        ).format(ledger=state(config, "ledger"), tbl=sql.Identifier(config.schema, config.table(entity))),
        (entity,),
    )


def _new_ids(cur, config, entity: str) -> None:
    table = f"{config.schema}.{config.table(entity)}"
    cur.execute(
        "UPDATE _bp_stage SET id = nextval(pg_get_serial_sequence(%s, 'id')) WHERE id IS NULL",
        (_quoted(table, config, entity),),
    )


def _quoted(_table, config, entity) -> str:
    """``"schema"."table"`` as text, for functions that take a relation name."""
    def q(name):
        return '"' + name.replace('"', '""') + '"'
    return f"{q(config.schema)}.{q(config.table(entity))}"


def keep_sequence_ahead(cur, config: PreservationConfig, entity: str) -> None:
    """Make the id sequence's next value larger than every id in the table."""
    rel = _quoted(None, config, entity)
    cur.execute(
        sql.SQL(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), m) FROM (SELECT max(id) AS m FROM {}) x "
            "WHERE m > coalesce(pg_sequence_last_value(pg_get_serial_sequence(%s, 'id')::regclass), 0)"
        ).format(sql.Identifier(config.schema, config.table(entity))),
        (rel, rel),
    )


def _stage(cur, columns, rows) -> None:
    cur.execute("DROP TABLE IF EXISTS _bp_stage")
    defs = ", ".join(f"c{i} text" for i in range(len(columns)))
    # the staging table's own column names are fixed; only its data varies
    cur.execute(
        "CREATE TEMP TABLE _bp_stage (ord int PRIMARY KEY, key text[], id bigint, "
        "from_ledger boolean NOT NULL DEFAULT false, existed boolean NOT NULL DEFAULT false, "
        + defs + ") ON COMMIT DROP"
    )
    names = ["ord", "key", "id", "existed"] + [f"c{i}" for i in range(len(columns))]
    _copy_rows(cur, sql.Identifier("_bp_stage"), names, rows)


def upsert_entities(conn, config: PreservationConfig, entity: str, records: list, current: dict) -> UpsertResult:
    """Upsert leagues, clubs or series. ``records``: dicts keyed by column name.

    ``current`` is ``{id: key}`` of the rows in the table now (from the catalog).
    """
    sh = shape(config, entity)
    result = UpsertResult(entity, read=len(records))
    by_key = {k: i for i, k in current.items() if k is not None}
    seen: dict = {}
    rows = []
    for ord_, record in enumerate(records):
        key = config.entity_key(entity, record[sh.key_column])
        if key in seen:
            result.duplicates.append({"record": ord_, "key": list(key), "winner": seen[key]})
            continue
        seen[key] = ord_
        existing = by_key.get(key)
        values = [record[sh.key_column]] + [record.get(c) for c in sh.columns]
        rows.append([ord_, list(key), existing, existing is not None] + values)
    cols = (sh.key_column,) + sh.columns
    with conn.cursor() as cur:
        _stage(cur, cols, rows)
        _ledger_ids(cur, config, entity)
        _new_ids(cur, config, entity)
        tbl = sql.Identifier(config.schema, config.table(entity))
        # a column the records do not carry keeps its value (COALESCE with the row now)
        select_cols = [sql.SQL("s.c0")]
        for i, c in enumerate(sh.columns, start=1):
            fallback = sql.SQL("s.c0") if c == config.series_display else sql.SQL("NULL")
            select_cols.append(sql.SQL("coalesce(s.{}, cur.{}, {})").format(
                sql.Identifier(f"c{i}"), sql.Identifier(c), fallback))
        ident_cols = [sql.Identifier(c) for c in cols]
        statement = sql.SQL(
            "INSERT INTO {tbl} AS t (id, {cols}) SELECT s.id, {vals} FROM _bp_stage s "
            "LEFT JOIN {tbl} cur ON cur.id = s.id ORDER BY s.ord "
            "ON CONFLICT (id) DO UPDATE SET ({cols}) = ROW({excl}) "
            "WHERE ({tcols}) IS DISTINCT FROM ({excl}) RETURNING t.id, (xmax = 0)"
        ).format(
            tbl=tbl,
            cols=sql.SQL(", ").join(ident_cols),
            vals=sql.SQL(", ").join(select_cols),
            excl=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(c) for c in ident_cols),
            tcols=sql.SQL(", ").join(sql.SQL("t.{}").format(c) for c in ident_cols),
        )
        _run_upsert(conn, cur, statement, result)
        _collect(cur, result)
        keep_sequence_ahead(cur, config, entity)
    return result


def _run_upsert(conn, cur, statement, result: UpsertResult) -> list:
    cur.execute("SAVEPOINT bp_upsert")
    try:
        cur.execute(statement)
    except psycopg2.Error as exc:
        cur.execute("ROLLBACK TO SAVEPOINT bp_upsert")
        logger.warning("set-based upsert of %s failed (%s); using the manual path", result.entity,
                       str(exc).strip().splitlines()[0])
        result.path = "manual"
        result.errors.append({"stage": "set-based", "error": str(exc).strip().splitlines()[0]})
        return []
    written = cur.fetchall()
    cur.execute("RELEASE SAVEPOINT bp_upsert")
    result.created += sum(1 for _, inserted in written if inserted)
    result.updated += sum(1 for _, inserted in written if not inserted)
    return written


def _collect(cur, result: UpsertResult) -> None:
    cur.execute("SELECT key, id, existed, from_ledger FROM _bp_stage")
    staged = cur.fetchall()
    for key, id_, existed, from_ledger in staged:
        if id_ is not None:
            result.ids[tuple(key)] = id_
        if existed or from_ledger:
            result.preserved += 1
        elif id_ is not None:
            result.new_ids.append(id_)
        if from_ledger:
            result.preserved_from_ledger += 1
    # a ledger id re-inserted counts as preserved, not created
    result.created -= result.preserved_from_ledger
    if result.path == "set-based":
        result.unchanged = len(staged) - result.created - result.updated - result.preserved_from_ledger


def team_rows(records: list, config: PreservationConfig, parents: dict, current: dict, result: UpsertResult):
    """Staging rows for teams: dedupe by key (first record wins) and resolve parent ids."""
    by_key = {k: i for i, k in current.items() if k is not None}
    seen: dict = {}
    rows = []
    for rec in records:
        assert isinstance(rec, TeamRecord)
        key = config.team_key(rec.league_code, rec.club_name, rec.series_name)
        if key in seen:
            result.duplicates.append({"record": rec.index, "key": list(key), "winner": seen[key]})
            continue
        seen[key] = rec.index
        league_id = parents["leagues"][config.entity_key("leagues", rec.league_code)]
        club_id = parents["clubs"][config.entity_key("clubs", rec.club_name)]
        series_id = parents["series"][config.entity_key("series", rec.series_name)]
        existing = by_key.get(key)
        rows.append([rec.index, list(key), existing, existing is not None, club_id, series_id, league_id,
                     rec.team_name, rec.team_alias, rec.display_name])
    return rows
