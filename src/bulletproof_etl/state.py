"""The library's own schema (``bulletproof`` by default): its tables, their names, the run log.

Everything the library keeps lives in one schema that is created without any privilege for
PUBLIC: the snapshots hold users' messages. Every stage reads and writes it through the
names here; the stages own what goes into the tables:

- ``runs``: every run, with its outcome and report (here: :func:`start_run`, :func:`finish_run`).
- ``ledger``: every id ever seen per entity, with its natural key (first observation
  wins: ids are never re-used for another key by PostgreSQL sequences, so a later
  different key means someone re-used an id by hand, which health reports);
  written by :mod:`.identity.ledger`.
- ``snap_entities``: the entity rows of one run, with keys (to bring a team back).
- ``snap_rows``: the user-owned rows of one run that the run could delete (see
  :mod:`.snapshot.keys`), whole, as JSON, with ``refs``: the natural key of the entity each
  reference column pointed at (``{"team_id": [...]}``).
- ``snap_keys``: every other user-owned row of one run, as its primary key and the ids it
  referenced (arrays, one row per table and column); the keys are in ``snap_entities``.
  The three snapshot tables are written by :mod:`.snapshot`.
- ``mappings`` and ``quarantine``: what the restore did and what it could not map (:mod:`.restore`).
- ``review_actions`` and ``alert_deliveries``: what operators decided about them, and the alerts
  sent (:mod:`.review`).
- ``captured``: what the capture triggers recorded (:mod:`.snapshot.capture`).
"""

from __future__ import annotations

import io
import json
import re
from itertools import chain

from psycopg2 import sql

from .config import PreservationConfig

_DDL = [
    "CREATE SCHEMA IF NOT EXISTS {s}",
    "REVOKE ALL ON SCHEMA {s} FROM PUBLIC",
    """CREATE TABLE IF NOT EXISTS {s}.runs (
        run_id bigserial PRIMARY KEY,
        started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        finished_at timestamptz,
        outcome text NOT NULL DEFAULT 'running',
        mode text,
        stage text,
        error text,
        durable boolean NOT NULL DEFAULT false,
        report jsonb)""",
    """CREATE TABLE IF NOT EXISTS {s}.ledger (
        entity text NOT NULL,
        id bigint NOT NULL,
        key text[],
        row jsonb,
        first_run bigint,
        last_run bigint,
        PRIMARY KEY (entity, id))""",
    "CREATE INDEX IF NOT EXISTS ledger_key_idx ON {s}.ledger (entity, key)",
    """CREATE TABLE IF NOT EXISTS {s}.snap_entities (
        run_id bigint NOT NULL,
        entity text NOT NULL,
        id bigint NOT NULL,
        key text[],
        row jsonb NOT NULL,
        PRIMARY KEY (run_id, entity, id))""",
    """CREATE TABLE IF NOT EXISTS {s}.snap_rows (
        run_id bigint NOT NULL,
        table_name text NOT NULL,
        pk jsonb NOT NULL,
        row jsonb NOT NULL,
        PRIMARY KEY (run_id, table_name, pk))""",
    """CREATE TABLE IF NOT EXISTS {s}.mappings (
        run_id bigint NOT NULL,
        table_name text NOT NULL,
        pk jsonb NOT NULL,
        column_name text NOT NULL,
        old_id bigint,
        new_id bigint,
        strategy text NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS mappings_run_idx ON {s}.mappings (run_id, table_name)",
    """CREATE TABLE IF NOT EXISTS {s}.quarantine (
        id bigserial PRIMARY KEY,
        run_id bigint NOT NULL,
        table_name text NOT NULL,
        pk jsonb NOT NULL,
        column_name text,
        original jsonb NOT NULL,
        reason text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now())""",
    "CREATE INDEX IF NOT EXISTS quarantine_run_idx ON {s}.quarantine (run_id)",
    # columns added after the first release: an older state schema is brought up to date
    "ALTER TABLE {s}.runs ADD COLUMN IF NOT EXISTS counts jsonb",
    "ALTER TABLE {s}.snap_rows ADD COLUMN IF NOT EXISTS refs jsonb",
    # user rows that no run can delete, as keys: one row per table and reference column ('' for
    # the table's primary keys alone), arrays aligned by position (see snapshot/keys.py)
    """CREATE TABLE IF NOT EXISTS {s}.snap_keys (
        run_id bigint NOT NULL,
        table_name text NOT NULL,
        column_name text NOT NULL,
        pk_column text NOT NULL,
        pks bigint[] NOT NULL,
        ids bigint[],
        PRIMARY KEY (run_id, table_name, column_name))""",
    # integers barely compress: store them out of line as they are, without the CPU for trying
    "ALTER TABLE {s}.snap_keys ALTER COLUMN pks SET STORAGE EXTERNAL, ALTER COLUMN ids SET STORAGE EXTERNAL",
    # true: the table's rows are in snap_rows too, the arrays only make its checks cheap
    "ALTER TABLE {s}.snap_keys ADD COLUMN IF NOT EXISTS whole boolean NOT NULL DEFAULT false",
    # the operators' review (issue 15, review/): every review action is audited (who, when, what,
    # the row before and after; a mapping is named "run:table:column:primary key"); alert
    # deliveries are recorded
    """CREATE TABLE IF NOT EXISTS {s}.review_actions (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT clock_timestamp(),
        actor text NOT NULL,
        action text NOT NULL,
        quarantine_id bigint,
        mapping text,
        table_name text,
        pk jsonb,
        column_name text,
        before jsonb,
        after jsonb,
        reason text,
        undoes bigint,
        undone_by bigint)""",
    "CREATE INDEX IF NOT EXISTS review_actions_quarantine_idx ON {s}.review_actions (quarantine_id)",
    """CREATE TABLE IF NOT EXISTS {s}.alert_deliveries (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT clock_timestamp(),
        target text NOT NULL,
        ok boolean NOT NULL,
        error text,
        message jsonb NOT NULL)""",
    # what the capture triggers recorded (snapshot/capture.py): one row per statement that deleted
    # or updated rows; run_id is the protected run whose transaction made it (NULL: anyone else);
    # seen_by the committed run that took it into account
    """CREATE TABLE IF NOT EXISTS {s}.captured (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT clock_timestamp(),
        xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
        table_name text NOT NULL,
        op text NOT NULL,
        rows bigint,
        ids bigint[],
        run_id bigint,
        seen_by bigint)""",
    "CREATE INDEX IF NOT EXISTS captured_run_idx ON {s}.captured (run_id)",
    "CREATE INDEX IF NOT EXISTS captured_unseen_idx ON {s}.captured (id) WHERE seen_by IS NULL",
]
#: (table, column) created by the last statements of _DDL: present means the schema is current
_NEWEST = ("captured", "seen_by")

STATE_TABLES = ("runs", "ledger", "snap_entities", "snap_rows", "snap_keys", "mappings", "quarantine",
                "review_actions", "alert_deliveries", "captured")


def ensure_state_schema(conn, config: PreservationConfig) -> None:
    """Create the state schema and its tables if missing, closed to PUBLIC."""
    s = sql.Identifier(config.state_schema)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s "
            "AND NOT attisdropped", (relname(config.state_schema, _NEWEST[0]), _NEWEST[1]))
        if cur.fetchone() is not None:
            return  # current already: no DDL, no lock on every run
        for statement in _DDL:
            cur.execute(sql.SQL(statement).format(s=s))
        for table in STATE_TABLES:
            cur.execute(
                sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(sql.Identifier(config.state_schema, table))
            )


#: A state table is analysed by the run that changed at least this share of the rows the planner
#: believed it held (``pg_class.reltuples``), or that was never analysed.
ANALYZE_FRACTION = 0.1


def analyze_if_grown(cur, config: PreservationConfig, table: str, written: int, believed=None, *,
                     columns=()) -> bool:
    """ANALYZE ``table`` of the state schema (only ``columns`` if given) if ``written`` rows changed
    it materially: ``believed`` is its ``pg_class.reltuples`` before the write (-1: never
    analysed); None for rows the planner cannot know whatever the table's size (this run's id),
    analysed whenever there are any. True if it analysed. Without it a new database plans against
    empty tables until autovacuum comes round (issue 14: the ledger update nested-looped 10,000 x
    10,000 ids). Its lock (SHARE UPDATE EXCLUSIVE) blocks no reader or writer; inside the
    transaction it samples the transaction's own rows. No statement when nothing is due."""
    if written <= 0 or (believed is not None and 0 <= believed and written < ANALYZE_FRACTION * believed):
        return False
    cur.execute(sql.SQL("ANALYZE {} {}").format(state(config, table), sql.SQL("({})").format(
        sql.SQL(", ").join(map(sql.Identifier, columns))) if columns else sql.SQL("")))
    return True


def relname(schema: str, table: str) -> str:
    """``"schema"."table"`` as text, for ``to_regclass``."""
    return ".".join('"' + p.replace('"', '""') + '"' for p in (schema, table))


def state(config: PreservationConfig, table: str) -> sql.Composed:
    return sql.Identifier(config.state_schema, table)


def start_run(conn, config: PreservationConfig, mode: str) -> int:
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("INSERT INTO {} (mode) VALUES (%s) RETURNING run_id").format(state(config, "runs")),
            (mode,),
        )
        return cur.fetchone()[0]


def finish_run(conn, config: PreservationConfig, run_id: int, outcome: str, *, report=None,
               stage=None, error=None) -> None:
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "UPDATE {} SET finished_at = clock_timestamp(), outcome = %s, report = %s, stage = %s,"
                " error = %s WHERE run_id = %s"
            ).format(state(config, "runs")),
            (outcome, json.dumps(report) if report is not None else None, stage, error, run_id),
        )


def copy_rows(cur, target: sql.Composed, columns, rows) -> None:
    """COPY ``rows`` (tuples of str/int/None) into ``target`` in one round trip."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        target, sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    cur.copy_expert(statement, io.StringIO(_copy_text(rows)))


def _copy_text(rows) -> str:
    """The COPY text of ``rows``: column by column, so that a column of plain strings, numbers
    or string arrays with nothing to escape (the usual case) is encoded by a few C calls, not a
    Python call per value (issue 14); any other column value by value. The same text either way."""
    rows = rows if isinstance(rows, list) else list(rows)
    if not rows or len(set(map(len, rows))) != 1 or not rows[0]:  # ragged or empty rows: as given
        return "".join("\t".join(map(_copy_value, row)) + "\n" for row in rows)
    lines = map("\t".join, zip(*map(_copy_column, zip(*rows, strict=True)), strict=True))
    return "\n".join(lines) + "\n"


_NONE = type(None)
_ESCAPED = re.compile(r'[\\\t\n\r]')  # what _copy_value escapes; in arrays '"' too
_ESCAPED_IN_ARRAY = re.compile(r'[\\\t\n\r"]')


def _copy_column(values: tuple) -> list:
    kinds = set(map(type, values))
    if kinds <= {str, _NONE}:
        if _ESCAPED.search("".join(filter(None, values))) is None:
            return ["\\N" if v is None else v for v in values]
    elif kinds <= {int, bool, _NONE}:  # str() is what _copy_value gives both
        return ["\\N" if v is None else str(v) for v in values]
    elif kinds <= {list, tuple} and all(values):
        parts = list(chain.from_iterable(values))
        if set(map(type, parts)) == {str} and _ESCAPED_IN_ARRAY.search("".join(parts)) is None:
            return ['{"' + v + '"}' for v in map('","'.join, values)]
    return list(map(_copy_value, values))


def _copy_value(value) -> str:
    if value is None:
        return "\\N"
    if type(value) is int:
        return str(value)
    if isinstance(value, (list, tuple)):
        value = "{" + ",".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value) + "}"
    text = str(value)
    if "\\" not in text and text.isprintable():  # nothing to escape: most values, most of the time
        return text
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def add_counts(conn, config: PreservationConfig, run_id: int, what: str, counts: dict) -> None:
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("UPDATE {} SET counts = coalesce(counts, '{{}}'::jsonb) || jsonb_build_object(%s, %s::jsonb) "
                    "WHERE run_id = %s").format(state(config, "runs")),
            (what, json.dumps(counts), run_id),
        )


def written_here(alias: str) -> sql.Composed:
    """True for a row version written by this transaction or one of its subtransactions (a
    savepoint's rows carry the subtransaction's xid); false for a row committed by anyone else
    (a user, during the run), and for every row when this transaction has written nothing.

    ``xmin`` has 32 bits: it is widened to the 64-bit xid nearest this transaction's own, ``o``
    (``pg_current_xact_id_if_assigned``; its subtransactions' xids follow it). Below ``o``: not
    ours. At or past the statement snapshot's ``xmax``: a version we can see there is ours (no
    lookup: ``pg_xact_status`` refuses an xid it takes for the future, which a frozen row's raw
    ``xmin``, older than 2^31 xids, can widen to; such a row has not changed since any snapshot).
    In between, ``in progress`` for a row we can see can only be ourselves.
    """
    # o and m are uncorrelated subqueries: evaluated once per statement, not per row
    o = sql.SQL("(SELECT pg_current_xact_id_if_assigned()::text::bigint)")
    m = sql.SQL("(SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint)")
    f = sql.SQL("({o} + mod({x}.xmin::text::bigint - ({o} & 4294967295) + 6442450944, 4294967296) - 2147483648)").format(
        o=o, x=sql.Identifier(alias))
    return sql.SQL(
        "CASE WHEN {o} IS NULL OR {f} < {o} THEN false WHEN {f} >= {m} THEN true "
        "ELSE coalesce(pg_xact_status({f}::text::xid8) = 'in progress', false) END").format(o=o, f=f, m=m)


def pk_json(columns, alias: str) -> sql.Composed:
    """``jsonb_build_object('id', t.id, ...)`` for a primary key."""
    parts = []
    for column in columns:
        parts.append(sql.Literal(column))
        parts.append(sql.Identifier(alias, column))
    return sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(parts))
