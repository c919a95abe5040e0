"""Ledger ids back (re-keying): a row that someone re-inserted under a new id gets its ledger id.

The legacy ETL deletes leagues, clubs and series and inserts them again, so they come back
under new serial ids before the protected upsert ever sees them. For every entity row whose
natural key the ledger knows under another, free id, the row is renumbered to that id and
every column referencing it (foreign keys in any schema, from the catalog, plus the declared
columns without a key) is re-pointed, all in one statement per entity: data-modifying CTEs
run as one statement, and foreign keys that are not deferred are checked at its end, when
the parent and its children agree again.

The id chosen for a key is the one the ledger saw last (``last_run``, then the highest id).
A row that already has that id is left alone, so rows present at the run's snapshot (which
the snapshot recorded in the ledger for this run) never move, and are not even planned. An id
another row holds is not taken, nor does a row move whose own id the ledger knows under another
key (a sequence set back by hand); such keys are reported as ``blocked``.

Changing a referenced id makes PostgreSQL check, per renumbered row, every foreign key to it; a
referencing column without an index is scanned once per row, dead rows included: quadratic. So
before renumbering many rows, such a column of a table big enough to matter gets a temporary
index, in the caller's transaction, dropped after the renumbering (where the role cannot, not
the owner or the table busy, the renumbering runs without it, only slower). An index build
writes the table's live row count to ``pg_class`` in place, outside the transaction, so the
parent tables (emptied by the legacy clear) are never indexed here; ``teams`` is (the upsert
analyses it after refilling it), and so are the ETL's own tables (empty until it refills them).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field

import psycopg2
from psycopg2 import sql

from ..catalog import referencing_columns
from ..config import PreservationConfig
from ..state import relname, state
from .reference_indexes import unindexed_keys

logger = logging.getLogger(__name__)

#: Renumbering can free an id another key is waiting for; a few passes settle every chain.
MAX_PASSES = 4
#: A temporary index is built when the scans it saves (rows renumbered x pages of the
#: referencing table) come to this many page reads (some 50 ms), and for 3 rows or more.
INDEX_WORTH = 5_000
#: How long index DDL waits for a table someone else is using before doing without.
LOCK_WAIT = "2s"


@dataclass
class RekeyResult:
    """What re-keying did for one entity."""

    entity: str
    rekeyed: int = 0
    blocked: list = field(default_factory=list)  # [{"id": current, "ledger_id": wanted, "key": [...]}]
    repointed: dict = field(default_factory=dict)  # "schema.table.column" -> rows re-pointed
    passes: int = 0
    indexes: list = field(default_factory=list)  # "schema.table(columns)" indexed for the renumbering
    indexes_kept: list = field(default_factory=list)  # "schema.index" not dropped: the table was busy
    moved: dict = field(default_factory=dict, repr=False)  # new id -> ledger id

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("moved")
        return out


_PLAN = """
WITH c AS (
    SELECT x.id, ARRAY(SELECT jsonb_array_elements_text(x.k)) AS key
    FROM jsonb_to_recordset(%(current)s::jsonb) AS x(id bigint, k jsonb))
SELECT c.id, best.id, c.key,
    -- taken: another row holds the id; or the row's own id once meant another key (a sequence
    -- set back by hand): references to that id are ambiguous, so the row does not move
    EXISTS (SELECT 1 FROM {tbl} t WHERE t.id = best.id)
    OR EXISTS (SELECT 1 FROM {ledger} o WHERE o.entity = %(entity)s AND o.id = c.id
               AND o.key IS DISTINCT FROM c.key)
FROM c
JOIN {tbl} cur ON cur.id = c.id
-- the id seen last; among ids seen in the same run, the one that had this row's very spelling
-- (a key written two ways is two rows, and each gets its own id back)
JOIN LATERAL (SELECT l.id, l.last_run FROM {ledger} l WHERE l.entity = %(entity)s AND l.key = c.key
              ORDER BY l.last_run DESC NULLS LAST, (l.row->>{name_text}) IS NOT DISTINCT FROM cur.{name}::text DESC,
                       l.id DESC LIMIT 1) best ON true
LEFT JOIN {ledger} own ON own.entity = %(entity)s AND own.id = c.id
WHERE best.id <> c.id
  -- two rows of one key seen side by side in the latest run ("Lakeview", "LAKEVIEW"): both stay
  AND NOT (own.key IS NOT DISTINCT FROM c.key AND own.last_run IS NOT DISTINCT FROM best.last_run)
ORDER BY c.id
"""


_NAME_COLUMN = {"leagues": lambda c: c.league_code, "clubs": lambda c: c.club_name,
                "series": lambda c: c.series_name, "teams": lambda c: c.team_name}


def _plan(cur, config: PreservationConfig, entity: str, current: dict) -> tuple:
    """``(moves, blocked)`` in one statement: moves is [(current id, ledger id)], one per ledger id."""
    payload = json.dumps([{"id": i, "k": list(k)} for i, k in current.items() if k is not None])
    name = _NAME_COLUMN[entity](config)
    cur.execute(
        sql.SQL(_PLAN).format(tbl=sql.Identifier(config.schema, config.table(entity)),
                              ledger=state(config, "ledger"), name=sql.Identifier(name),
                              name_text=sql.Literal(name)),
        {"current": payload, "entity": entity},
    )
    moves, blocked, claimed = [], [], set()
    for new_id, old_id, key, taken in cur.fetchall():
        # two new rows with one key want one id: the lowest id wins (rows come ordered by id)
        if taken or old_id in claimed:
            blocked.append({"id": new_id, "ledger_id": old_id, "key": list(key)})
        else:
            claimed.add(old_id)
            moves.append((new_id, old_id))
    return moves, blocked


def _settled(cur, config: PreservationConfig, entity: str, current: dict) -> set:
    """Ids of ``current`` that :data:`_PLAN` cannot return (a repeated import: all of them):
    the ledger holds the id under the row's very key, seen in the entity's latest run, so the
    key's best id is the row's own or one seen beside it, which the plan leaves alone."""
    cur.execute(sql.SQL("SELECT l.id, l.key FROM {l} l WHERE l.entity = %(e)s AND l.key IS NOT NULL AND "
                        "l.last_run = (SELECT max(m.last_run) FROM {l} m WHERE m.entity = %(e)s)").format(
                            l=state(config, "ledger")), {"e": entity})
    known = {i: tuple(k) for i, k in cur.fetchall()}
    return {i for i, k in current.items() if k is not None and known.get(i) == tuple(k)}


def _stage_moves(cur, moves: list) -> None:
    cur.execute("DROP TABLE IF EXISTS _bp_rekey_map")
    cur.execute("CREATE TEMP TABLE _bp_rekey_map ON COMMIT DROP AS "
                "SELECT * FROM unnest(%s::bigint[], %s::bigint[]) AS m(new_id, old_id)",
                ([m[0] for m in moves], [m[1] for m in moves]))
    cur.execute("CREATE UNIQUE INDEX ON _bp_rekey_map (new_id)")
    cur.execute("ANALYZE _bp_rekey_map")


def rekey_statement(config: PreservationConfig, entity: str, columns: list) -> tuple:
    """The one statement that renumbers ``_bp_rekey_map`` rows and re-points every column.

    Returns ``(statement, labels)``; the statement returns one count per CTE, the entity's
    own first, then one per referencing table (its label lists the table's columns).
    """
    tbl = sql.Identifier(config.schema, config.table(entity))
    ctes = [sql.SQL("e AS (UPDATE {tbl} t SET id = m.old_id FROM _bp_rekey_map m "
                    "WHERE t.id = m.new_id RETURNING 1)").format(tbl=tbl)]
    labels = [f"{config.schema}.{config.table(entity)}.id"]
    by_table: dict = {}
    for ref in columns:
        if (ref.schema, ref.table) == (config.schema, config.table(entity)):
            logger.warning("%s references its own table; not re-pointed", ref.label)
            continue
        by_table.setdefault((ref.schema, ref.table), []).append(ref.column)
    for n, ((schema, table), cols) in enumerate(sorted(by_table.items())):
        # a table with several columns for this entity is updated once (a row may be touched
        # only once per statement), each column through the map or left as it is
        if len(cols) == 1:  # the common case: a join the planner can hash
            ctes.append(sql.SQL(
                "{name} AS (UPDATE {t} r SET {c} = m.old_id FROM _bp_rekey_map m "
                "WHERE r.{c} = m.new_id RETURNING 1)").format(
                name=sql.Identifier(f"r{n}"), t=sql.Identifier(schema, table), c=sql.Identifier(cols[0])))
            labels.append(f"{schema}.{table}.{cols[0]}")
            continue
        sets = sql.SQL(", ").join(
            sql.SQL("{c} = coalesce((SELECT m.old_id FROM _bp_rekey_map m WHERE m.new_id = r.{c}), r.{c})")
            .format(c=sql.Identifier(c)) for c in cols)
        where = sql.SQL(" OR ").join(
            sql.SQL("r.{c} IN (SELECT m.new_id FROM _bp_rekey_map m)").format(c=sql.Identifier(c))
            for c in cols)
        ctes.append(sql.SQL("{name} AS (UPDATE {t} r SET {sets} WHERE {where} RETURNING 1)").format(
            name=sql.Identifier(f"r{n}"), t=sql.Identifier(schema, table), sets=sets, where=where))
        labels.append(f"{schema}.{table}." + "+".join(cols))
    counts = sql.SQL(", ").join(
        sql.SQL("(SELECT count(*) FROM {})").format(sql.Identifier(name))
        for name in ["e"] + [f"r{n}" for n in range(len(by_table))])
    statement = sql.SQL("WITH {ctes} SELECT {counts}").format(
        ctes=sql.SQL(", ").join(ctes), counts=counts)
    return statement, labels


def _rollback_to(cur, savepoint: str, exc: Exception) -> None:
    """Back to ``savepoint``; if even that fails (the connection is gone), the first error wins."""
    try:
        cur.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(sql.Identifier(savepoint)))
    except psycopg2.Error:
        raise exc from None


def _ddl(cur, statement: sql.Composable) -> Exception | None:
    """Run index DDL in a savepoint, waiting at most ``LOCK_WAIT`` for the table; the error, if any."""
    savepoint = sql.Identifier("bp_fk_index")
    cur.execute(sql.SQL("SAVEPOINT {}").format(savepoint))
    try:
        cur.execute(statement)
    except psycopg2.Error as exc:
        _rollback_to(cur, "bp_fk_index", exc)
        return exc
    cur.execute(sql.SQL("RELEASE SAVEPOINT {}").format(savepoint))
    return None


def _with_lock_wait(cur, work):
    """``work()`` with ``lock_timeout`` set to ``LOCK_WAIT``, then set back (in this transaction)."""
    cur.execute("WITH b AS MATERIALIZED (SELECT current_setting('lock_timeout') AS v) "
                "SELECT b.v, set_config('lock_timeout', %s, true) FROM b", (LOCK_WAIT,))
    before = cur.fetchone()[0]
    out = work()  # _ddl leaves the transaction usable; anything else fails the run anyway
    cur.execute("SELECT set_config('lock_timeout', %s, true)", (before,))
    return out


def create_fk_indexes(cur, config: PreservationConfig, entity: str, rows: int) -> list:
    """Temporary indexes for renumbering ``rows`` rows of ``entity``: ``[(schema, index, label)]``.

    One per foreign key to the entity whose columns lead no index, where the checks would
    read at least ``INDEX_WORTH`` pages. A table the role does not own, or that stays locked
    for ``LOCK_WAIT``, is left as it is (logged): the renumbering is then only slower.
    """
    if rows < 3:
        return []
    # Not on the parent tables: a build writes the table's row count to pg_class in place (not
    # undone by a rollback), and a table the legacy clear emptied counts 0. Teams may be
    # indexed: the team upsert analyses the table after refilling it (team_upsert.ANALYZE_AFTER).
    entities = {(config.schema, config.table(e)) for e in ("leagues", "clubs", "series")}
    wanted = [r for r in unindexed_keys(cur, config, entity)
              if rows * r[5] >= INDEX_WORTH and (r[0], r[1]) not in entities]
    if not wanted:
        return []

    def build() -> list:
        made = []
        for schema, table, relid, attnums, columns, pages in wanted:
            name = f"_bp_fk_{relid}_{'_'.join(str(a) for a in attnums)}"
            error = _ddl(cur, sql.SQL("CREATE INDEX {} ON {} ({})").format(
                sql.Identifier(name), sql.Identifier(schema, table),
                sql.SQL(", ").join(sql.Identifier(c) for c in columns)))
            if error is not None:
                logger.warning("no temporary index on %s.%s (%s): %s", schema, table, ", ".join(columns),
                               str(error).strip().splitlines()[0])
                continue
            logger.info("temporary index on %s.%s (%s, %d pages) for renumbering %d %s rows",
                        schema, table, ", ".join(columns), pages, rows, entity)
            made.append((schema, name, f"{schema}.{table}({', '.join(columns)})"))
        return made

    return _with_lock_wait(cur, build)


def drop_fk_indexes(cur, indexes: list) -> list:
    """Drop what :func:`create_fk_indexes` built; returns the ones kept because the table was busy
    (held longer than ``LOCK_WAIT``: its index on a foreign key column is kept, logged and
    reported, rather than making the run wait or deadlock; a drop locks the table until commit)."""
    if not indexes:
        return []

    def drop() -> list:
        kept = []
        for schema, name, _label in indexes:
            error = _ddl(cur, sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, name)))
            if error is not None:
                logger.warning("temporary index %s.%s kept: %s", schema, name, str(error).strip().splitlines()[0])
                kept.append(f"{schema}.{name}")
        return kept

    return _with_lock_wait(cur, drop)


def rekey_entity(conn, config: PreservationConfig, entity: str, current: dict, *,
                 ledger_known: bool = False) -> RekeyResult:
    """Renumber rows of ``entity`` back to their ledger ids; ``current`` ({id: key}) is updated.

    Writes nothing when every row already has its ledger id (the repeated import), and then
    sends one statement (two unless ``ledger_known`` says the state schema exists): the read of
    the ledger's latest ids, after which no row is left to plan (:func:`_settled`).
    """
    result = RekeyResult(entity)
    if not any(k is not None for k in current.values()):
        return result
    with conn.cursor() as cur:
        if not ledger_known:
            cur.execute("SELECT to_regclass(%s)", (relname(config.state_schema, "ledger"),))
            if cur.fetchone()[0] is None:
                return result  # no ledger yet: nothing was ever seen
        columns, indexes = None, []
        settled = {i: current[i] for i in _settled(cur, config, entity, current)}
        for _ in range(MAX_PASSES):
            rest = {i: k for i, k in current.items() if k is not None and settled.get(i, ()) != k}
            if not rest:
                break
            moves, blocked = _plan(cur, config, entity, rest)
            result.blocked = blocked
            if not moves:
                break
            if columns is None:
                columns = referencing_columns(conn, config, entity)
                indexes = create_fk_indexes(cur, config, entity, len(moves))
                result.indexes = [label for _s, _n, label in indexes]
            _stage_moves(cur, moves)
            statement, labels = rekey_statement(config, entity, columns)
            cur.execute(statement)
            counts = cur.fetchone()
            cur.execute("DROP TABLE _bp_rekey_map")
            if counts[0] != len(moves):  # the plan said these rows exist; anything else is a bug
                raise RuntimeError(f"re-keying {entity}: planned {len(moves)} rows, moved {counts[0]}")
            result.passes += 1
            result.rekeyed += len(moves)
            for label, n in zip(labels[1:], counts[1:], strict=True):
                if n:
                    result.repointed[label] = result.repointed.get(label, 0) + n
            for new_id, old_id in moves:
                result.moved[new_id] = old_id
                current[old_id] = current.pop(new_id)
        result.indexes_kept = drop_fk_indexes(cur, indexes)
    if result.rekeyed:
        logger.info("re-keyed %d %s rows back to their ledger ids (%d passes)",
                    result.rekeyed, entity, result.passes)
    if result.blocked:
        logger.warning("%d %s rows keep a new id: the ledger id of their key is held by another row",
                       len(result.blocked), entity)
    return result
