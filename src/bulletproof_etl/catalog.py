"""Reading the database: dependent columns, primary keys, constraints, current entity keys."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace

from psycopg2 import sql

from .config import ENTITIES, Dependent, PreservationConfig, canonical_code
from .state import relname

logger = logging.getLogger(__name__)

_FK_COLUMNS = """
SELECT rel.relname, a.attname, tr.relname, NOT a.attnotnull, con.conname
FROM pg_constraint con
JOIN pg_class rel ON rel.oid = con.conrelid
JOIN pg_namespace n ON n.oid = rel.relnamespace
JOIN pg_class tr ON tr.oid = con.confrelid
JOIN pg_namespace tn ON tn.oid = tr.relnamespace
JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
WHERE con.contype = 'f' AND array_length(con.conkey, 1) = 1
  AND n.nspname = %(schema)s AND tn.nspname = %(schema)s AND tr.relname = ANY(%(targets)s)
ORDER BY rel.relname, a.attname
"""

_COLUMN_NULLABLE = """
SELECT c.relname, a.attname, NOT a.attnotnull
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND a.attnum > 0 AND NOT a.attisdropped
"""

_PRIMARY_KEYS = """
SELECT c.relname, array_agg(a.attname ORDER BY k.ord)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE i.indisprimary AND n.nspname = %s
GROUP BY c.relname
"""

_UNIQUE_SETS = """
SELECT c.relname, array_agg(a.attname ORDER BY a.attname)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)
WHERE i.indisunique AND n.nspname = %s
GROUP BY c.relname, i.indexrelid
"""

_CONSTRAINTS = """
SELECT c.relname, con.conname, con.contype, con.convalidated
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND con.contype IN ('p', 'u', 'f', 'x')
ORDER BY 1, 2
"""

# every foreign key in any schema whose target is one entity table (for re-keying)
_REFERENCING = """
SELECT n.nspname, rel.relname, a.attname, array_length(con.conkey, 1)
FROM pg_constraint con
JOIN pg_class rel ON rel.oid = con.conrelid
JOIN pg_namespace n ON n.oid = rel.relnamespace
JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
WHERE con.contype = 'f' AND con.confrelid = %s::regclass
ORDER BY 1, 2, 3
"""

_USER_FKS = """
SELECT rel.relname, tr.relname, a.attname, pa.attname
FROM pg_constraint con
JOIN pg_class rel ON rel.oid = con.conrelid
JOIN pg_namespace n ON n.oid = rel.relnamespace
JOIN pg_class tr ON tr.oid = con.confrelid
JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
JOIN pg_attribute pa ON pa.attrelid = con.confrelid AND pa.attnum = con.confkey[1]
WHERE con.contype = 'f' AND n.nspname = %s AND array_length(con.conkey, 1) = 1
"""


_KINDS = {"p": "primary key", "u": "unique", "f": "foreign key", "x": "exclusion"}


@dataclass(frozen=True)
class Referencing:
    """A column holding ids of one entity: from a foreign key (any schema) or declared."""

    schema: str
    table: str
    column: str
    has_fk: bool

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.table}.{self.column}"


@dataclass(frozen=True)
class Catalog:
    """What the database looks like, read once per run."""

    dependents: tuple  # of Dependent
    primary_keys: dict  # table -> list of column names
    unique_sets: dict  # table -> list of sorted column tuples
    fk_edges: tuple  # (child table, parent table, child column, parent column)
    server_version: str
    # table -> {constraint name: kind}; kind is "primary key", "unique", "foreign key", "exclusion"
    constraints: dict = field(default_factory=dict)

    def user_dependents(self) -> list:
        return [d for d in self.dependents if d.owner == "user"]

    def user_tables(self) -> list:
        """User-owned tables with entity references, parents before children."""
        tables = {d.table for d in self.user_dependents()}
        # children of user tables that hold no reference themselves (poll_choices, responses)
        changed = True
        while changed:
            changed = False
            for child, parent, *_cols in self.fk_edges:
                if parent in tables and child not in tables and child != parent:
                    tables.add(child)
                    changed = True
        return _topological(tables, self.fk_edges)

    def has_unique(self, table: str, columns) -> bool:
        return tuple(sorted(columns)) in self.unique_sets.get(table, [])

    def has_constraint(self, table: str, name: str) -> bool:
        return name in self.constraints.get(table, {})

    def to_dict(self) -> dict:
        return {
            "server_version": self.server_version,
            "dependents": [asdict(d) for d in self.dependents],
            "primary_keys": self.primary_keys,
            "unique_sets": {t: [list(c) for c in cols] for t, cols in self.unique_sets.items()},
            "constraints": self.constraints,
        }


def _topological(tables: set, edges) -> list:
    order: list = []
    pending = set(tables)
    while pending:
        ready = sorted(
            t for t in pending if not any(c == t and p in pending and p != t for c, p, *_ in edges)
        )
        if not ready:  # a cycle: keep a stable order rather than loop forever
            ready = sorted(pending)
        order.extend(ready)
        pending.difference_update(ready)
    return order


def columns_of(cur, schema: str) -> dict:
    """``{(table, column): nullable}`` of every column in ``schema``."""
    cur.execute(_COLUMN_NULLABLE, (schema,))
    return {(t, c): n for t, c, n in cur.fetchall()}


def read_catalog(conn, config: PreservationConfig) -> Catalog:
    """Dependent columns from ``pg_constraint`` plus the configured ones without a key."""
    entity_of = {config.table(e): e for e in ENTITIES}
    entity_tables = set(entity_of)
    with conn.cursor() as cur:
        cur.execute("SHOW server_version")
        version = cur.fetchone()[0]
        cur.execute(_FK_COLUMNS, {"schema": config.schema, "targets": list(entity_tables)})
        found = {}
        for table, column, target, nullable, _name in cur.fetchall():
            if table in entity_tables:
                continue  # the entities' own parent columns are handled by the upsert
            found[(table, column)] = Dependent(
                table, column, entity_of[target], has_fk=True, nullable=nullable, schema=config.schema
            )
        nullable_of = columns_of(cur, config.schema)
        for dep in config.declared:
            if (dep.table, dep.column) in found or (dep.table, dep.column) not in nullable_of:
                if (dep.table, dep.column) not in nullable_of:
                    logger.warning("declared dependent %s does not exist; skipped", dep.label)
                continue
            found[(dep.table, dep.column)] = replace(
                dep, nullable=nullable_of[(dep.table, dep.column)], schema=config.schema
            )
        cur.execute(_PRIMARY_KEYS, (config.schema,))
        primary_keys = {t: list(cols) for t, cols in cur.fetchall()}
        cur.execute(_UNIQUE_SETS, (config.schema,))
        unique_sets: dict = {}
        for table, cols in cur.fetchall():
            unique_sets.setdefault(table, []).append(tuple(sorted(cols)))
        cur.execute(_USER_FKS, (config.schema,))
        edges = tuple(cur.fetchall())
        cur.execute(_CONSTRAINTS, (config.schema,))
        constraints: dict = {}
        for table, name, kind, _valid in cur.fetchall():
            constraints.setdefault(table, {})[name] = _KINDS[kind]
    deps = []
    for dep in found.values():
        if dep.table in config.user_rows_in_etl_tables:
            column, pattern = config.user_rows_in_etl_tables[dep.table]
            deps.append(replace(dep, owner="user", filter_column=column, filter_pattern=pattern))
            deps.append(replace(dep, owner="etl"))
        elif dep.table in config.etl_tables:
            deps.append(replace(dep, owner="etl"))
        else:
            deps.append(dep)
    deps.sort(key=lambda d: (d.owner, d.table, d.column))
    return Catalog(tuple(deps), primary_keys, unique_sets, edges, version, constraints)


def foreign_keys_to(cur, config: PreservationConfig, entity: str) -> list:
    """Every foreign key to ``entity``'s table, in any schema: ``[(schema, table, first column,
    number of columns)]``."""
    cur.execute(_REFERENCING, (relname(config.schema, config.table(entity)),))
    return cur.fetchall()


def referencing_columns(conn, config: PreservationConfig, entity: str) -> list:
    """Every column that holds ids of ``entity``: single-column foreign keys to its table in
    any schema (the ETL's own tables and the other entities included), then the configured
    columns without a key. A composite foreign key cannot be re-pointed column by column; it
    is logged and left out."""
    out: dict = {}
    with conn.cursor() as cur:
        for schema, table, column, width in foreign_keys_to(cur, config, entity):
            if width != 1:
                logger.warning("composite foreign key on %s.%s references %s; not re-pointed",
                               schema, table, entity)
                continue
            out[(schema, table, column)] = Referencing(schema, table, column, True)
        existing = set(columns_of(cur, config.schema))
    for dep in config.declared:
        if dep.entity != entity or (dep.table, dep.column) not in existing:
            continue
        out.setdefault((config.schema, dep.table, dep.column),
                       Referencing(config.schema, dep.table, dep.column, False))
    return [out[k] for k in sorted(out)]


def current_keys(conn, config: PreservationConfig) -> dict:
    """For each entity: ``{id: key}`` of the rows in the database now (keys canonicalised).

    Each league, club and series name is canonicalised once, not once per team: a team's key
    is put together from its parents' (unless a configuration overrides how keys are made).
    """
    t = {e: sql.Identifier(config.schema, config.table(e)) for e in ENTITIES}
    out: dict = {e: {} for e in ENTITIES}
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT id, {} FROM {}").format(sql.Identifier(config.league_code), t["leagues"]))
        codes = {}
        for id_, code in cur.fetchall():
            codes[id_] = code
            out["leagues"][id_] = config.entity_key("leagues", code)
        cur.execute(sql.SQL("SELECT id, {} FROM {}").format(sql.Identifier(config.club_name), t["clubs"]))
        clubs = dict(cur.fetchall())
        out["clubs"] = {i: config.entity_key("clubs", n) for i, n in clubs.items()}
        cur.execute(sql.SQL("SELECT id, {} FROM {}").format(sql.Identifier(config.series_name), t["series"]))
        series = dict(cur.fetchall())
        out["series"] = {i: config.entity_key("series", n) for i, n in series.items()}
        cur.execute(
            sql.SQL("SELECT id, {}, {}, {} FROM {}").format(
                sql.Identifier(config.team_league), sql.Identifier(config.team_club),
                sql.Identifier(config.team_series), t["teams"],
            )
        )
        rows = cur.fetchall()
    if (type(config).team_key is not PreservationConfig.team_key
            or type(config).entity_key is not PreservationConfig.entity_key):
        for id_, league_id, club_id, series_id in rows:
            if league_id in codes and club_id in clubs and series_id in series:
                out["teams"][id_] = config.team_key(codes[league_id], clubs[club_id], series[series_id])
            else:  # a team whose parent is gone has no key; health reports it
                out["teams"][id_] = None
        return out
    out["teams"] = _team_keys(config, rows, codes, series, out["clubs"])
    return out


def _team_keys(config: PreservationConfig, rows: list, codes: dict, series: dict, club_keys: dict) -> dict:
    """``{team id: key}`` from ``(id, league id, club id, series id)`` rows, each team's key put
    together from its parents' canonical forms: one look-up per (league, series) pair and one
    per club, the rest per team is a tuple. A team whose parent is gone has no key (None)."""
    club_of = {i: k[0] for i, k in club_keys.items()}
    code_of: dict = {}
    part_of: dict = {}  # (league id, series id) -> (league code, canonical series), or None: no parent
    teams: dict = {}
    missing = object()
    for id_, league_id, club_id, series_id in rows:
        part = part_of.get((league_id, series_id), missing)
        if part is missing:
            part = None
            if league_id in codes and series_id in series:
                code = code_of.get(league_id)
                if code is None:
                    code = code_of[league_id] = canonical_code(codes[league_id])
                part = (code, config.series_canonicaliser(code, series[series_id]))
            part_of[(league_id, series_id)] = part
        club = club_of.get(club_id, missing)
        teams[id_] = None if part is None or club is missing else (part[0], club, part[1])
    return teams


def league_code_of(key: tuple) -> str:
    return canonical_code(key[0])
