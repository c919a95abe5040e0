"""Re-keying: give a row that someone re-inserted under a new id its ledger id back.

The legacy ETL deletes leagues, clubs and series and inserts them again, so they come back
under new serial ids before the protected upsert ever sees them. For every entity row whose
natural key the ledger knows under another, free id, the row is renumbered to that id and
every column referencing it (foreign keys in any schema, from the catalog, plus the declared
columns without a key) is re-pointed, all in one statement per entity: data-modifying CTEs
run as one statement, and foreign keys that are not deferred are checked at its end, when
the parent and its children agree again.

The id chosen for a key is the one the ledger saw last (``last_run``, then the highest id).
A row that already has that id is left alone, so rows present at the run's snapshot (which
the snapshot recorded in the ledger for this run) never move. An id that another row holds
is not taken; such keys are reported as ``blocked``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from psycopg2 import sql

from .catalog import referencing_columns
from .config import PreservationConfig
from .snapshot import _copy_rows, state

logger = logging.getLogger(__name__)

#: Renumbering can free an id another key is waiting for; a few passes settle every chain.
MAX_PASSES = 4


@dataclass
class RekeyResult:
    """What re-keying did for one entity."""

    entity: str
    rekeyed: int = 0
    blocked: list = field(default_factory=list)  # [{"id": current, "ledger_id": wanted, "key": [...]}]
    repointed: dict = field(default_factory=dict)  # "schema.table.column" -> rows re-pointed
    passes: int = 0
    moved: dict = field(default_factory=dict, repr=False)  # new id -> ledger id

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("moved")
        return out


def _stage_current(cur, current: dict) -> None:
    cur.execute("DROP TABLE IF EXISTS _bp_rekey_cur")
    cur.execute("CREATE TEMP TABLE _bp_rekey_cur (id bigint PRIMARY KEY, key text[]) ON COMMIT DROP")
    _copy_rows(cur, sql.Identifier("_bp_rekey_cur"), ("id", "key"),
               ((i, list(k)) for i, k in current.items() if k is not None))
    cur.execute("ANALYZE _bp_rekey_cur")


def _plan(cur, config: PreservationConfig, entity: str) -> tuple:
    """``(moves, blocked)``: moves is [(current id, ledger id)], one per ledger id."""
    cur.execute("DROP TABLE IF EXISTS _bp_rekey_map")
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE _bp_rekey_map ON COMMIT DROP AS "
            "SELECT c.id AS new_id, best.id AS old_id, c.key, "
            " EXISTS (SELECT 1 FROM {tbl} t WHERE t.id = best.id) AS taken "
            "FROM _bp_rekey_cur c "
            "JOIN LATERAL (SELECT l.id FROM {ledger} l WHERE l.entity = %s AND l.key = c.key "
            "  ORDER BY l.last_run DESC NULLS LAST, l.id DESC LIMIT 1) best ON true "
            "WHERE best.id <> c.id"
        ).format(tbl=sql.Identifier(config.schema, config.table(entity)), ledger=state(config, "ledger")),
        (entity,),
    )
    # two rows with one key (say "Lakeview" and "LAKEVIEW") want one id: the lowest id wins
    cur.execute(
        "SELECT new_id, old_id, key, taken, "
        " row_number() OVER (PARTITION BY old_id ORDER BY new_id) > 1 AS loser "
        "FROM _bp_rekey_map ORDER BY new_id"
    )
    moves, blocked = [], []
    for new_id, old_id, key, taken, loser in cur.fetchall():
        if taken or loser:
            blocked.append({"id": new_id, "ledger_id": old_id, "key": list(key)})
        else:
            moves.append((new_id, old_id))
    if moves:
        cur.execute("DELETE FROM _bp_rekey_map WHERE NOT (new_id = ANY(%s))", ([m[0] for m in moves],))
        cur.execute("CREATE UNIQUE INDEX ON _bp_rekey_map (new_id)")
        cur.execute("ANALYZE _bp_rekey_map")
    return moves, blocked


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


def rekey_entity(conn, config: PreservationConfig, entity: str, current: dict) -> RekeyResult:
    """Renumber rows of ``entity`` back to their ledger ids; ``current`` ({id: key}) is updated.

    Writes nothing when every row already has its ledger id (the repeated import).
    """
    result = RekeyResult(entity)
    if not any(k is not None for k in current.values()):
        return result
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (".".join(
            '"' + p.replace('"', '""') + '"' for p in (config.state_schema, "ledger")),))
        if cur.fetchone()[0] is None:
            return result  # no ledger yet: nothing was ever seen
        _stage_current(cur, current)
        columns = None
        for _ in range(MAX_PASSES):
            moves, blocked = _plan(cur, config, entity)
            result.blocked = blocked
            if not moves:
                break
            if columns is None:
                columns = referencing_columns(conn, config, entity)
            statement, labels = rekey_statement(config, entity, columns)
            cur.execute(statement)
            counts = cur.fetchone()
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
            cur.execute("UPDATE _bp_rekey_cur c SET id = m.old_id FROM _bp_rekey_map m WHERE c.id = m.new_id")
        cur.execute("DROP TABLE IF EXISTS _bp_rekey_map")
        cur.execute("DROP TABLE _bp_rekey_cur")
    if result.rekeyed:
        logger.info("re-keyed %d %s rows back to their ledger ids (%d passes)",
                    result.rekeyed, entity, result.passes)
    if result.blocked:
        logger.warning("%d %s rows keep a new id: the ledger id of their key is held by another row",
                       len(result.blocked), entity)
    return result
