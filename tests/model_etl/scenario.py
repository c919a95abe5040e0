"""The tests' common start: season 1 imported, user data on chosen teams, season 2 on disk;
and the state of the database as the guarantee tests compare it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg2

from . import run_etl
from .data import build_season, write_season
from .etl import ModelETL
from .userdata import create_user_data, entity_keys, reference_keys, team_ids_by_name, user_rows

#: Teams that get user data, and what season 2 does to each.
CHOSEN = (
    ("APTA_CHICAGO", "Lakeview - 10"),  # series "Chicago 10" written "Division 10"; a twin team in season 1
    ("APTA_CHICAGO", "Glen View - 22"),  # club respelled "Glen view"
    ("APTA_CHICAGO", "Midtown - 23"),  # dropped
    ("APTA_CHICAGO", "Tennaqua - 23"),  # unchanged
    ("NSTF", "Glen View S2B"),  # club respelled
    ("NSTF", "Birchwood S2A"),  # dropped
    ("NSTF", "Winnetka S2A"),  # unchanged
    ("CNSWPL", "Glen View 2"),  # club respelled
    ("CNSWPL", "Tennaqua 3"),  # dropped
    ("CNSWPL", "Hinsdale 1"),  # unchanged
)
DROPPED_CHOSEN = 3
RESPELLED_CHOSEN = 3


@dataclass
class State:
    """What the guarantee tests compare, read with the tests' own SQL."""

    keys: dict  # entity -> {id: natural key}
    refs: dict  # (table, pk, column) -> key, None or "ORPHAN"
    rows: dict  # table -> {pk: row without references}
    active: set  # ids of active teams

    @classmethod
    def read(cls, dsn: str) -> State:
        conn = psycopg2.connect(dsn)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT id FROM teams WHERE is_active IS NOT FALSE")
                active = {r[0] for r in cur.fetchall()}
            conn.rollback()
            return cls(entity_keys(conn), reference_keys(conn), user_rows(conn), active)
        finally:
            conn.close()

    def ids_by_key(self, entity: str, active_only: bool = False) -> dict:
        out: dict = {}
        for id_, key in self.keys[entity].items():
            if entity == "teams" and active_only and id_ not in self.active:
                continue
            out.setdefault(key, set()).add(id_)
        return out


def seasons(tmp_path: Path) -> tuple[Path, Path]:
    return (write_season(build_season(1), tmp_path / "season1"),
            write_season(build_season(2), tmp_path / "season2"))


def season1_with_user_data(dsn: str, tmp_path: Path, first=ModelETL, chosen=CHOSEN) -> tuple[Path, dict]:
    """Season 1 imported by ``first``, user data on ``chosen``; returns (season 2's directory,
    rows written per user table)."""
    season1, season2 = seasons(tmp_path)
    etl = run_etl(first, dsn, season1)
    assert etl.ok, f"season 1 failed: {etl.last_error!r} {getattr(etl, 'bulletproof_report', None)}"
    conn = psycopg2.connect(dsn)
    try:
        written = create_user_data(conn, team_ids_by_name(conn, chosen))
    finally:
        conn.close()
    return season2, written


def protected_import(dsn: str, data_dir, protected_class) -> tuple:
    """Import ``data_dir`` with ``protected_class``; it must commit and keep G1-G4. Returns
    ``(before, after)``."""
    before = State.read(dsn)
    etl = run_etl(protected_class, dsn, data_dir)
    assert etl.ok, report_of(etl)
    assert etl.bulletproof_report.outcome == "committed", report_of(etl)
    after = State.read(dsn)
    assert_g1_no_orphans(before, after)
    assert_g2_no_loss(before, after)
    assert_g3_identity(before, after)
    assert_g4_meaning(before, after)
    return before, after


def report_of(etl) -> str:
    """The protected run's report, for assertion messages."""
    report = getattr(etl, "bulletproof_report", None)
    if report is None:
        return f"no bulletproof_report; last_error={etl.last_error!r}"
    return f"outcome={report.outcome!r} error={report.error!r} last_error={etl.last_error!r}"


# -- the guarantees, as the tests check them ---------------------------------------------

ENTITIES = ("leagues", "clubs", "series", "teams")


def _few(items, n: int = 8) -> str:
    items = list(items)
    return f"{len(items)}: {items[:n]}{' ...' if len(items) > n else ''}"


def ref_changes(before: State, after: State) -> dict:
    """``{table.column: {"kept"|"nulled"|"orphaned"|"moved"|"gone": count}}``."""
    out: dict = {}
    for (table, pk, column), old in before.refs.items():
        new = after.refs.get((table, pk, column), "GONE")
        if new == "GONE":
            what = "gone"
        elif new == old:
            what = "kept"
        elif new is None:
            what = "nulled"
        elif new == "ORPHAN":
            what = "orphaned"
        else:
            what = "moved"
        bucket = out.setdefault(f"{table}.{column}", {})
        bucket[what] = bucket.get(what, 0) + 1
    return out


def kept_ids(before: State, after: State, entity: str) -> tuple[int, int]:
    """(surviving keys whose id is still theirs, surviving keys)."""
    b, a = before.ids_by_key(entity), after.ids_by_key(entity, active_only=True)
    surviving = b.keys() & a.keys()
    return sum(1 for k in surviving if a[k] & b[k]), len(surviving)


def assert_g1_no_orphans(before: State, after: State) -> None:
    orphans = sorted(k for k, v in after.refs.items() if v == "ORPHAN")
    assert not orphans, f"G1: user references pointing at no row, {_few(orphans)}"
    nulled = sorted(k for k, v in after.refs.items() if v is None and before.refs.get(k) is not None)
    assert not nulled, f"G1: user references set to NULL, {_few(nulled)}"


def assert_g2_no_loss(before: State, after: State) -> None:
    for table, rows in before.rows.items():
        missing = sorted(set(rows) - set(after.rows[table]), key=str)
        assert not missing, f"G2: {table} rows lost, {_few(missing)}"
        changed = sorted((pk for pk in rows if after.rows[table][pk] != rows[pk]), key=str)
        assert not changed, f"G2: {table} rows changed besides their references, {_few(changed)}"


def assert_g3_identity(before: State, after: State) -> None:
    """Every key present before and imported again keeps its id: of the active rows with a
    surviving key, as many as can (one key can name two teams of the ETL) carry an old id."""
    for entity in ENTITIES:
        b, a = before.ids_by_key(entity), after.ids_by_key(entity, active_only=True)
        wrong = sorted(((k, sorted(b[k]), sorted(a[k])) for k in b.keys() & a.keys()
                        if len(a[k] & b[k]) != min(len(a[k]), len(b[k]))), key=str)
        assert not wrong, f"G3: {entity} whose key survived but not their id (key, before, after), {_few(wrong)}"


def assert_g4_meaning(before: State, after: State) -> None:
    moved = sorted(((k, v, after.refs[k]) for k, v in before.refs.items()
                    if k in after.refs and after.refs[k] not in (v, None, "ORPHAN")), key=str)
    assert not moved, f"G4: user references now pointing at another key (ref, before, after), {_few(moved)}"
