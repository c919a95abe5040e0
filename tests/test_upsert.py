"""The staged upsert on its own: duplicates, NULL keys, the manual fallback, sequences, and
report counts that match what the tests count themselves."""

from __future__ import annotations

import psycopg2
import pytest

from bulletproof_etl import BulletproofTeamPreservation, InvalidInput
from bulletproof_etl.catalog import current_keys
from bulletproof_etl.config import DEFAULT_CONFIG
from bulletproof_etl.identity.ledger import ledger_add
from bulletproof_etl.identity.team_upsert import team_write, upsert_teams
from bulletproof_etl.identity.upsert import set_based_statement, upsert_entities
from bulletproof_etl.identity.validate import validate_teams
from bulletproof_etl.state import ensure_state_schema
from core_support import ids_by_key, ledger_max, one_value, sequence_state, write_fingerprint


def T(club, series, name=None, league="APTA_CHICAGO", **extra):
    number = series.split()[-1].lstrip("S")
    return {"league_id": league, "club_name": club, "series_name": series,
            "team_name": name or f"{club} - {number}", **extra}


def _import(conn, teams, **kw):
    ensure_state_schema(conn, DEFAULT_CONFIG)
    current: dict = {}
    result, parents = upsert_teams(conn, DEFAULT_CONFIG, validate_teams(teams), current=current, **kw)
    # the keys the upsert hands on (to the ledger) are the keys read afresh
    assert current == current_keys(conn, DEFAULT_CONFIG)
    return result, parents


def _protected(conn, teams, **kw):
    with BulletproofTeamPreservation(conn, **kw) as p:
        result = p.preserve_teams_during_import(teams)
    conn.commit()
    return result


def _team_ids(conn) -> dict:
    return ids_by_key(conn)["teams"]


def test_g3_duplicated_records_one_winner_every_duplicate_reported(conn):
    teams = [
        T("Lakeview", "Chicago 22", "Lakeview - 22"),
        T("Oakridge", "Chicago 22"),
        T("Lakeview", "S22", "Lakeview twice"),            # same key, another spelling
        T("lakeview ", "Division 22", "Lakeview thrice"),  # same key again
        T("Oakridge", "Chicago 22"),                        # an exact copy
    ]
    result, _parents = _import(conn, teams)
    assert [(d["record"], d["winner"]) for d in result.duplicates] == [(2, 0), (3, 0), (4, 1)]
    assert result.duplicates[0]["key"] == ["APTA_CHICAGO", "lakeview", "22"]
    assert (result.read, result.created, len(result.ids)) == (5, 2, 2)
    assert one_value(conn, "SELECT count(*) FROM teams") == 2
    # the first record wins: its name, not a later one's
    assert one_value(conn, "SELECT team_name FROM teams t JOIN clubs c ON c.id = t.club_id "
                           "WHERE c.name = 'Lakeview'") == "Lakeview - 22"


def test_g3_null_key_part_is_rejected_before_any_sql(conn):
    teams = [T("Lakeview", "Chicago 22"), {**T("Oakridge", "Chicago 22"), "series_name": None}]
    before = write_fingerprint(conn)
    conn.rollback()
    with pytest.raises(InvalidInput) as err:
        _protected(conn, teams)
    assert err.value.record == 1 and err.value.field == "series_name"
    assert "record 1" in str(err.value) and "series_name" in str(err.value)
    assert write_fingerprint(conn) == before
    assert one_value(conn, "SELECT to_regclass('bulletproof.runs')") is None  # not even a run began
    conn.rollback()


def test_g3_parent_record_without_its_key_is_rejected_before_any_sql(db_dsn):
    closed = psycopg2.connect(db_dsn)
    closed.close()  # any statement on it would raise InterfaceError, not InvalidInput
    with pytest.raises(InvalidInput) as err:
        upsert_entities(closed, DEFAULT_CONFIG, "clubs", [{"name": "Lakeview"}, {"name": None}], {})
    assert err.value.record == 1 and err.value.field == "name"


def test_upsert_needs_no_primary_key_on_teams(conn):
    teams = [T("Lakeview", "Chicago 22"), T("Oakridge", "Chicago 22"), T("Maple", "Chicago 21")]
    _protected(conn, teams)  # the run records every id in the ledger
    before = _team_ids(conn)
    with conn.cursor() as cur:  # no constraint on id at all: the UPDATE and INSERT need none
        cur.execute("ALTER TABLE teams DROP CONSTRAINT teams_pkey CASCADE")
        cur.execute("SET session_replication_role = replica")
        cur.execute("DELETE FROM teams WHERE team_name = 'Maple - 21'")
        cur.execute("SET session_replication_role = DEFAULT")
    conn.commit()
    renamed = [teams[0], T("Oakridge", "Chicago 22", "Oakridge Renamed"), teams[2], T("Birch", "Chicago 21")]
    result, _parents = _import(conn, renamed)
    conn.commit()
    assert (result.path, result.errors) == ("set-based", [])
    assert (result.unchanged, result.updated, result.preserved_from_ledger, result.created) == (1, 1, 1, 1)
    after = _team_ids(conn)
    assert {k: after[k] for k in before} == before
    assert one_value(conn, "SELECT count(*) FROM teams") == 4


def test_upsert_manual_path_reports_the_row_that_cannot_be_written_and_keeps_the_rest(conn):
    _import(conn, [T("Lakeview", "Chicago 22"), T("Oakridge", "Chicago 22")], force=True)
    _import(conn, [T("Oakridge", "Chicago 22")], force=True)  # Lakeview - 22 retired, keeps its name
    conn.commit()
    clash = [T("Oakridge", "Chicago 22"), T("Birch", "Chicago 22", "Lakeview - 22"), T("Cedar", "Chicago 23")]
    result, _parents = _import(conn, clash)
    assert result.path == "manual"
    [row_error] = [e for e in result.errors if "record" in e]
    assert row_error["record"] == 1
    assert row_error["constraint"] == "unique_team_name_per_league"
    assert (result.created, result.unchanged) == (1, 1)
    assert ("APTA_CHICAGO", "birch", "22") not in result.ids
    assert one_value(conn, "SELECT count(*) FROM teams WHERE team_name = 'Cedar - 23'") == 1
    assert one_value(conn, "SELECT count(*) FROM teams") == 3
    conn.commit()  # nothing aborted the transaction


def test_upsert_manual_path_retries_a_name_another_row_frees_later(conn):
    _import(conn, [T("Lakeview", "Chicago 22"), T("Oakridge", "Chicago 22")])
    conn.commit()
    before = _team_ids(conn)
    # Lakeview takes Oakridge's name, which Oakridge gives up in the same import (a later row)
    chain = [T("Lakeview", "Chicago 22", "Oakridge - 22"), T("Oakridge", "Chicago 22", "Oakridge Old - 22")]
    result, _parents = _import(conn, chain)
    conn.commit()
    assert result.path == "manual"
    assert [e for e in result.errors if "record" in e] == []
    assert result.updated == 2
    assert _team_ids(conn) == before
    assert one_value(conn, "SELECT count(*) FROM teams WHERE team_name = 'Oakridge - 22'") == 1


def test_g3_sequence_stays_ahead_of_every_id_the_ledger_has_seen(conn):
    _protected(conn, [T("Lakeview", "Chicago 22"), T("Oakridge", "Chicago 22"), T("Maple", "Chicago 21")])
    gone = one_value(conn, "SELECT max(id) FROM teams")
    with conn.cursor() as cur:  # the newest team is deleted and the sequence set back (a dump restore)
        cur.execute("SET session_replication_role = replica")
        cur.execute("DELETE FROM teams WHERE id = %s", (gone,))
        cur.execute("SET session_replication_role = DEFAULT")
        cur.execute("SELECT setval(pg_get_serial_sequence('teams', 'id'), 1)")
    conn.commit()
    result = _protected(conn, [T("Lakeview", "Chicago 22"), T("Oakridge", "Chicago 22"), T("Birch", "Chicago 21")],
                        force=True)
    birch = _team_ids(conn)[("APTA_CHICAGO", "birch", "21")]
    assert birch > gone, "a new key took the id of a key the ledger knows"
    assert result["created"] == 1
    nxt, top = sequence_state(conn, "teams")
    assert nxt > max(top, ledger_max(conn, "teams"))
    conn.rollback()


def test_g8_report_counts_match_an_independent_count(conn):
    first = [T("A", "Chicago 1"), T("B", "Chicago 1"), T("C", "Chicago 1"), T("D", "Chicago 1"), T("E", "Chicago 1")]
    _protected(conn, first)
    e_id = _team_ids(conn)[("APTA_CHICAGO", "e", "1")]
    with conn.cursor() as cur:  # E disappears entirely; the ledger remembers it
        cur.execute("SET session_replication_role = replica")
        cur.execute("DELETE FROM teams WHERE id = %s", (e_id,))
        cur.execute("SET session_replication_role = DEFAULT")
    conn.commit()
    second = [
        T("A", "Chicago 1"),                  # unchanged
        T("B", "Series 1", "B renamed"),      # updated (name and series row)
        T("C", "Chicago 1"),                  # unchanged
        # D is absent: retired
        T("E", "Chicago 1"),                  # back under its ledger id
        T("F", "Chicago 1"),                  # new
        T("A", "S1"),                         # duplicate of record 0
    ]
    result = _protected(conn, second)
    assert {k: result[k] for k in ("read", "unchanged", "updated", "preserved_from_ledger", "created",
                                    "retired", "preserved")} == {
        "read": 6, "unchanged": 2, "updated": 1, "preserved_from_ledger": 1, "created": 1,
        "retired": 1, "preserved": 4}
    assert [(d["record"], d["winner"]) for d in result["duplicates"]] == [(5, 0)]
    assert _team_ids(conn)[("APTA_CHICAGO", "e", "1")] == e_id
    assert one_value(conn, "SELECT count(*) FROM teams WHERE NOT is_active") == 1
    assert one_value(conn, "SELECT team_name FROM teams WHERE NOT is_active") == "D - 1"
    conn.rollback()


def test_g3_unknown_league_code_is_rejected(conn):
    _protected(conn, [T("Lakeview", "Chicago 22")])
    with pytest.raises(InvalidInput) as err:
        _protected(conn, [T("Lakeview", "Chicago 22"), T("Oakridge", "Series 3", league="NOPE")])
    assert err.value.record == 1 and err.value.field == "league_id"
    assert "unknown league code" in str(err.value)


def test_upsert_statement_writes_only_distinct_rows(conn):
    text = set_based_statement(team_write(DEFAULT_CONFIG)).as_string(conn)
    # an UPDATE of the rows whose values differ, an INSERT of the missing ids: no ON CONFLICT,
    # which would lock every conflicting row, unchanged ones too (tests/test_upsert_locks.py)
    assert "ON CONFLICT" not in text
    assert text.count("IS DISTINCT FROM") == 1 and text.count("UPDATE ") == 1
    assert text.count("INSERT INTO") == 1
    assert '"updated_at" = now()' in text


def test_g5_empty_or_mostly_empty_import_after_a_legacy_clear_is_refused(db_dsn, conn, tmp_path):
    from bulletproof_etl import ImportRefused
    from core_support import legacy_clear_and_parents, legacy_run, loaded_etl, season

    data = season(tmp_path, n_teams=40)
    legacy_run(db_dsn, data)
    etl = loaded_etl(data, db_dsn)
    _protected(conn, etl.extract_teams())  # the ledger now knows the 40 teams as active
    for teams, share in (([], "all 40"), (etl.extract_teams()[:15], "25 of 40")):
        with pytest.raises(ImportRefused) as err, BulletproofTeamPreservation(conn) as p:
            p.backup_user_data()
            legacy_clear_and_parents(etl, conn)  # the table is empty when the upsert checks
            p.preserve_teams_during_import(teams)
        assert share in str(err.value)
        conn.rollback()
        legacy_run(db_dsn, data)  # put the season back for the next case
    # forced, the small import goes through
    with BulletproofTeamPreservation(conn, force=True) as p:
        p.backup_user_data()
        legacy_clear_and_parents(etl, conn)
        result = p.preserve_teams_during_import(etl.extract_teams()[:15])
    conn.commit()
    assert result["read"] == 15


def test_keys_handed_on_include_a_team_whose_parent_came_back_under_its_old_id(conn):
    teams = [T("Lakeview", "Chicago 22"), T("Oakridge", "Chicago 22")]
    _import(conn, teams)
    assert ledger_add(conn, DEFAULT_CONFIG, 1) == 6  # a league, two clubs, a series, two teams
    with conn.cursor() as cur:  # the legacy way: the club deleted under its team, then again
        cur.execute("SET session_replication_role = replica")
        cur.execute("DELETE FROM clubs WHERE name = 'Lakeview' RETURNING id")
        old_id = cur.fetchone()[0]
        cur.execute("INSERT INTO clubs (name) VALUES ('Lakeview') RETURNING id")
        assert cur.fetchone()[0] != old_id
        cur.execute("SET session_replication_role = DEFAULT")
    assert None in current_keys(conn, DEFAULT_CONFIG)["teams"].values()  # the team has no club now
    _result, parents = _import(conn, teams)  # asserts the keys handed on
    assert parents["clubs"].rekeyed == 1
    assert None not in current_keys(conn, DEFAULT_CONFIG)["teams"].values()


_COPY_VALUES = [None, "", "plain", "tab\there", "new\nline", "cr\rx", "back\\slash", '"quoted"', "\\N", "\xa0nbsp",
                "\x0bvt", "é", 0, -7, 2**40, True, False, ["a", "b"], ("x y",), ["tab\t"], ['q"'], ["b\\s"], [],
                [None], [1, "x"], 1.5]


def test_copy_text_column_by_column_is_the_value_by_value_text():
    """copy_rows encodes whole columns at once where it can (issue 14): byte for byte the text
    of _copy_value, value by value, for every pair of values in one column and every row shape."""
    from bulletproof_etl.state import _copy_text, _copy_value

    def by_value(rows):
        return "".join("\t".join(map(_copy_value, row)) + "\n" for row in rows)

    cases = 0
    for a in _COPY_VALUES:
        for b in _COPY_VALUES:
            for rows in ([(a, "x", 1), (b, "y", 2)], [(a,), (b,)], [(a, b)], [(a, 1), (b, 2, 3)]):
                assert _copy_text(rows) == by_value(rows), rows
                assert _copy_text(iter(rows)) == by_value(rows), rows
                cases += 1
    assert cases == 4 * len(_COPY_VALUES) ** 2
    assert _copy_text([]) == ""


def test_copy_rows_round_trips_awkward_text_and_arrays(conn):
    from psycopg2 import sql

    from bulletproof_etl.state import copy_rows

    rows = [(i, text, [text, "k"]) for i, text in enumerate(
        ["plain", "tab\there", "new\nline", "cr\rx", "back\\slash", '"quoted"', "\\N", "\xa0", "", "é,{}"])]
    rows.append((len(rows), None, ["a", "b"]))
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE _copy_check (n int, t text, k text[])")
        copy_rows(cur, sql.Identifier("_copy_check"), ("n", "t", "k"), rows)
        cur.execute("SELECT n, t, k FROM _copy_check ORDER BY n")
        assert [(n, t, tuple(k)) for n, t, k in cur.fetchall()] == [(n, t, tuple(k)) for n, t, k in rows]
    conn.rollback()
