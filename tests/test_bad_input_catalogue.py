"""The catalogue of bad inputs (issue 6): each gives its own error, and nothing changes.

A seeded database (a generated season loaded by the legacy ETL, then users' data) receives
a protected import of the same season's teams, with one record broken. Every refused case
must raise the error written next to it (``InvalidInput`` naming the record and the field,
``ImportRefused`` with how many teams would be retired, ``InputError`` naming the file) and
leave every table of ``public`` with the checksum it had before (G5). Cases that are not
errors (case- or space-only duplicates, names with quotes and SQL) must import safely.

docs/reliability.md lists the same catalogue with the results.
"""

from __future__ import annotations

import copy
import gzip
import shutil
from dataclasses import dataclass

import psycopg2
import pytest

import conftest
from bulletproof_etl import DEFAULT_CONFIG, BulletproofTeamPreservation, ImportRefused, InvalidInput
from rally_etl import ComprehensiveETL, InputError
from reliability_support import (
    changed_tables,
    clone,
    data_checksums,
    protected_etl,
    run_row,
    template_database,
    write_seasons,
)
from support import team_keys, user_ref_keys, user_row_counts

N_TEAMS = 60
K = 3  # the record each case breaks


@pytest.fixture(scope="module")
def seasons(tmp_path_factory):
    return write_seasons(tmp_path_factory.mktemp("catalogue"), N_TEAMS)


@pytest.fixture(scope="module")
def template(seasons):
    dsn = template_database(seasons[0])
    yield dsn
    conftest.drop_database(dsn)


@pytest.fixture(scope="module")
def shared_conn(template):
    """One database for the refused cases: each compares its own before and after."""
    dsn = clone(template)
    conn = psycopg2.connect(dsn)
    yield conn
    conn.close()
    conftest.drop_database(dsn)


@pytest.fixture
def fresh_conn(template):
    dsn = clone(template)
    conn = psycopg2.connect(dsn)
    yield conn
    conn.close()
    conftest.drop_database(dsn)


@pytest.fixture(scope="module")
def base_teams(seasons):
    etl = ComprehensiveETL(seasons[0])
    etl.load_json_files()
    teams = etl.extract_teams()
    assert len(teams) == N_TEAMS
    return teams


@dataclass(frozen=True)
class Case:
    """One record broken: ``field`` set to ``value`` (``DELETE`` removes it)."""

    id: str
    field: str | None
    value: object
    message: str  # a fragment the error message must contain
    error_field: str | None = "same"  # the field the error must name ("same" = ``field``)


DELETE = object()
WHOLE = object()  # ``value`` replaces the whole record

RECORD_CASES = [
    Case("null-club", "club_name", None, "missing (NULL)"),
    Case("empty-club", "club_name", "", "empty"),
    Case("blank-club", "club_name", "  \u00a0 ", "empty"),
    Case("null-series", "series_name", None, "missing (NULL)"),
    Case("empty-series", "series_name", "", "empty"),
    Case("null-league", "league_id", None, "missing (NULL)"),
    Case("empty-league", "league_id", "   ", "empty"),
    Case("null-team-name", "team_name", None, "missing (NULL)"),
    Case("empty-team-name", "team_name", "", "empty"),
    Case("absent-team-name", "team_name", DELETE, "missing (NULL)"),
    Case("unknown-league", "league_id", "NOPE_LEAGUE", "unknown league code 'NOPE_LEAGUE'"),
    Case("name-contradicts-series", "team_name", "{club} - 99", "names series '99'"),
    Case("int-club", "club_name", 42, "must be a string, got int"),
    Case("float-series", "series_name", 22.0, "must be a string, got float"),
    Case("bool-league", "league_id", True, "must be a string, got bool"),
    Case("list-team-name", "team_name", ["Lakeview - 22"], "must be a string, got list"),
    Case("bytes-team-name", "team_name", b"Lakeview - 22", "must be a string, got bytes"),
    Case("dict-alias", "team_alias", {"alias": "x"}, "must be a string, got dict"),
    Case("10k-club", "club_name", "C" * 10_000, "too long (10000 characters, at most 255)"),
    Case(
        "10k-display-name", "display_name", "D" * 10_000, "too long (10000 characters, at most 255)"
    ),
    Case("nul-byte", "team_name", "Lakeview\x00 - 22", "contains control characters"),
    Case("escape-sequence", "club_name", "Lake\x1b[31mview", "contains control characters"),
    Case("newline", "series_name", "Series\n22", "contains control characters"),
    Case("lone-surrogate", "club_name", "Lake\ud800view", "not valid UTF-8 text"),
    Case("bidi-override", "club_name", "Lake\u202eweiv", "invisible formatting character U+202E"),
    Case(
        "zero-width-space",
        "series_name",
        "Series\u200b 22",
        "invisible formatting character U+200B",
    ),
    Case("record-not-object", None, WHOLE, "must be an object, got list", error_field=None),
    Case("record-null", None, None, "must be an object, got NoneType", error_field=None),
]


def _break(teams: list, case: Case) -> list:
    data = copy.deepcopy(teams)
    if case.field is None:
        data[K] = ["not", "a", "record"] if case.value is WHOLE else case.value
    elif case.value is DELETE:
        del data[K][case.field]
    elif isinstance(case.value, str) and "{club}" in case.value:
        data[K][case.field] = case.value.format(club=data[K]["club_name"])
    else:
        data[K][case.field] = case.value
    return data


def _state(conn) -> tuple:
    """Checksums of ``public``, and ledger ids no table holds (a rolled-back run must leave none)."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('bulletproof.ledger') IS NOT NULL")
        strays = None
        if cur.fetchone()[0]:
            cur.execute(
                "SELECT count(*) FROM bulletproof.ledger l WHERE l.entity = 'teams' "
                "AND NOT EXISTS (SELECT 1 FROM teams t WHERE t.id = l.id)"
            )
            strays = cur.fetchone()[0]
    conn.rollback()
    return data_checksums(conn, ("public",)), strays


def _last_run(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT max(run_id) FROM bulletproof.runs")
        run_id = cur.fetchone()[0]
    conn.rollback()
    return run_id


@pytest.mark.parametrize("case", RECORD_CASES, ids=[c.id for c in RECORD_CASES])
def test_g5_bad_record_is_named_and_changes_nothing(shared_conn, seasons, base_teams, case):
    conn = shared_conn
    before, _ = _state(conn)
    bad = _break(base_teams, case)
    with pytest.raises(InvalidInput) as caught:  # strict: every finding refuses the import
        protected_etl(conn, seasons[0], teams_data=bad, config=DEFAULT_CONFIG.replace(strict=True))
    err = caught.value
    assert err.record == K
    assert err.field == (case.field if case.error_field == "same" else case.error_field)
    assert err.stage == "validate"
    assert case.message in str(err)
    assert f"record {K}" in str(err)
    after, strays = _state(conn)
    assert changed_tables(before, after) == []
    assert strays == 0
    # the failed run is on record, with its durable snapshot
    row = run_row(conn, _last_run(conn))
    assert row["outcome"] == "failed" and row["stage"] == "validate"
    assert row["snapshot_rows"] > 0


def test_a_name_naming_another_series_is_a_warning_by_default_and_the_record_is_imported(
        fresh_conn, seasons, base_teams):
    """strict=False (the default): the finding names the record and field, the import goes on and
    the record is imported as given (as the ETL imports it); malformed values still refuse."""
    conn = fresh_conn
    case = next(c for c in RECORD_CASES if c.id == "name-contradicts-series")
    bad = _break(base_teams, case)
    report = protected_etl(conn, seasons[0], teams_data=bad)
    assert report.outcome.startswith(("committed", "completed")), report.error
    assert len(report.warnings) == 1
    assert f"record {K}, field 'team_name'" in report.warnings[0] and case.message in report.warnings[0]
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM teams WHERE team_name = %s AND is_active", (bad[K]["team_name"],))
        assert cur.fetchone()[0] == 1
    conn.rollback()


@pytest.mark.parametrize(
    "teams_data, message",
    [
        ({"league_id": "NSTF"}, "must be a list of records"),
        ("[{}]", "must be a list of records"),
        (None, "must be a list of records"),
        (b"[]", "must be a list of records"),
    ],
    ids=["dict", "string", "none", "bytes"],
)
def test_g5_teams_data_not_a_list_is_refused(shared_conn, seasons, teams_data, message):
    before, _ = _state(shared_conn)
    with pytest.raises(InvalidInput, match=message) as caught:
        protected_etl(shared_conn, seasons[0], teams_data=teams_data)
    assert caught.value.record is None and caught.value.stage == "validate"
    assert changed_tables(before, _state(shared_conn)[0]) == []


def _active_teams(conn, league=None) -> int:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM teams t JOIN leagues l ON l.id = t.league_id "
            "WHERE t.is_active AND (%s::text IS NULL OR l.league_id = %s)",
            (league, league),
        )
        n = cur.fetchone()[0]
    conn.rollback()
    return n


def test_g5_empty_import_is_refused(shared_conn):
    conn = shared_conn
    before, _ = _state(conn)
    active = _active_teams(conn)
    assert active == N_TEAMS
    with (
        pytest.raises(ImportRefused, match="holds no teams") as caught,
        BulletproofTeamPreservation(conn) as p,
    ):
        p.run([])
    assert (caught.value.retiring, caught.value.total) == (N_TEAMS, N_TEAMS)
    assert changed_tables(before, _state(conn)[0]) == []
    assert _active_teams(conn) == N_TEAMS


def test_g5_empty_import_allowed_retires_but_deletes_nothing(fresh_conn):
    conn = fresh_conn
    rows_before, refs_before = user_row_counts(conn), user_ref_keys(conn)
    ids_before = set(team_keys(conn))
    with BulletproofTeamPreservation(conn, force=True) as p:
        report = p.run([])
    conn.commit()
    assert report.teams["retired"] == N_TEAMS
    assert set(team_keys(conn)) == ids_before  # nothing deleted
    assert _active_teams(conn) == 0
    assert user_row_counts(conn) == rows_before
    assert user_ref_keys(conn) == refs_before


def _keep_share(teams: list, share: float) -> list:
    keep = int(len(teams) * share)
    return teams[:keep]


def test_g5_import_retiring_too_many_is_refused(shared_conn, base_teams):
    conn = shared_conn
    before, _ = _state(conn)
    kept = _keep_share(base_teams, 0.4)  # 60% would be retired, above the default 50%
    with (
        pytest.raises(ImportRefused, match="max_retire_share") as caught,
        BulletproofTeamPreservation(conn) as p,
    ):
        p.run(kept)
    assert (caught.value.retiring, caught.value.total) == (N_TEAMS - len(kept), N_TEAMS)
    assert changed_tables(before, _state(conn)[0]) == []


def test_g5_retire_share_is_configurable(shared_conn, base_teams):
    conn = shared_conn
    before, _ = _state(conn)
    kept = _keep_share(base_teams, 0.8)  # 20% retired: fine by default, too many at 10%
    from bulletproof_etl import DEFAULT_CONFIG

    with (
        pytest.raises(ImportRefused) as caught,
        BulletproofTeamPreservation(conn, config=DEFAULT_CONFIG.replace(max_retire_share=0.1)) as p,
    ):
        p.run(kept)
    assert caught.value.retiring == N_TEAMS - len(kept)
    assert changed_tables(before, _state(conn)[0]) == []


def test_g3_forced_retirement_keeps_every_id_and_row(fresh_conn, base_teams):
    conn = fresh_conn
    rows_before, refs_before = user_row_counts(conn), user_ref_keys(conn)
    keys_before = team_keys(conn)
    kept = _keep_share(base_teams, 0.4)
    with BulletproofTeamPreservation(conn, force=True) as p:
        report = p.run(kept)
    conn.commit()
    assert report.teams["retired"] == N_TEAMS - len(kept)
    assert team_keys(conn) == keys_before
    assert _active_teams(conn) == len(kept)
    assert user_row_counts(conn) == rows_before
    assert user_ref_keys(conn) == refs_before


# -- files ---------------------------------------------------------------------------------


def _broken_dir(src, tmp_path, name: str, content: bytes):
    target = tmp_path / "data"
    shutil.copytree(src, target)
    stem = name.split(".")[0]
    for existing in (f"{stem}.json", f"{stem}.json.gz"):
        (target / existing).unlink(missing_ok=True)
    (target / name).write_bytes(content)
    return target


FILE_CASES = [
    ("players.json", b'{"League": "NSTF"}', "expected a JSON array, found dict", None),
    ("players.json", b'"just a string"', "expected a JSON array, found str", None),
    ("series_stats.json", None, "invalid JSON at line 1", None),  # truncated half-way
    ("schedules.json.gz", None, "cannot be read", None),  # a gzip cut short
    (
        "players.json",
        b'[{"League": "NSTF", "Club": "A", "Series": "S1", "Player ID": "x"}, \xff]',
        "not UTF-8 at byte",
        None,
    ),
    ("series_stats.json", b'[{"series": "Series 1", "league_id": "NSTF"}]', "missing", "team"),
]


@pytest.mark.parametrize(
    "name, content, message, field",
    FILE_CASES,
    ids=[
        "object-not-array",
        "string-not-array",
        "truncated",
        "truncated-gzip",
        "invalid-utf8-bytes",
        "missing-field",
    ],
)
def test_g5_bad_file_is_named_and_changes_nothing(
    shared_conn, seasons, tmp_path, name, content, message, field
):
    conn = shared_conn
    stem = name.split(".")[0]
    if content is None:
        text = (seasons[0] / f"{stem}.json").read_bytes()
        cut = text[: len(text) // 2]
        content = gzip.compress(text)[:200] if name.endswith(".gz") else cut
    data_dir = _broken_dir(seasons[0], tmp_path, name, content)
    before, _ = _state(conn)
    with pytest.raises(InputError) as caught:
        protected_etl(conn, data_dir)
    assert caught.value.file == name
    assert caught.value.field == field
    assert message in str(caught.value)
    assert changed_tables(before, _state(conn)[0]) == []


# -- not errors: imported safely and reported ------------------------------------------------


def test_g3_duplicates_differing_in_case_or_spaces_have_one_winner(fresh_conn, seasons, base_teams):
    conn = fresh_conn
    keys_before = team_keys(conn)
    refs_before = user_ref_keys(conn)
    data = copy.deepcopy(base_teams)
    dup_case = dict(
        data[K], club_name=data[K]["club_name"].upper(), team_name=data[K]["team_name"].lower()
    )
    dup_space = dict(
        data[K + 1], club_name="  " + data[K + 1]["club_name"].replace(" ", "   ") + " "
    )
    data += [dup_case, dup_space]
    report = protected_etl(conn, seasons[0], teams_data=data)
    dups = report.teams["duplicates"]
    assert [(d["record"], d["winner"]) for d in dups] == [(N_TEAMS, K), (N_TEAMS + 1, K + 1)]
    assert report.teams["read"] == N_TEAMS + 2
    assert team_keys(conn) == keys_before  # no extra team, every id kept
    assert user_ref_keys(conn) == refs_before


SQLISH = [
    ("club_name", 'O\'Hare "Club"; Inc.'),
    ("club_name", "'); DROP TABLE teams; --"),
    ("club_name", "Robert'); DELETE FROM polls; --"),
    ("team_alias", "%s %(x)s {0} \\N \\\\ $$"),
]


def test_g1_names_with_quotes_and_sql_are_plain_text(fresh_conn, seasons, base_teams):
    conn = fresh_conn
    rows_before = user_row_counts(conn)
    data = copy.deepcopy(base_teams)
    expected = {}
    for offset, (field, value) in enumerate(SQLISH):
        rec = data[K + offset]
        if field == "club_name":
            suffix = rec["team_name"][len(rec["club_name"]) :]
            rec["team_name"] = value + suffix
        rec[field] = value
        expected[K + offset] = rec
    with BulletproofTeamPreservation(conn) as p:
        report = p.run(data)
    conn.commit()
    assert report.health["status"] == "PERFECT"
    with conn.cursor() as cur:
        for rec in expected.values():
            cur.execute(
                "SELECT t.team_name, t.team_alias, c.name FROM teams t JOIN clubs c ON c.id = t.club_id "
                "WHERE t.team_name = %s",
                (rec["team_name"],),
            )
            assert cur.fetchall() == [(rec["team_name"], rec.get("team_alias"), rec["club_name"])]
        cur.execute("SELECT count(*) FROM teams")
        teams_now = cur.fetchone()[0]
    conn.rollback()
    # three new clubs, so three new teams (their old club's teams retired, not deleted)
    assert teams_now == N_TEAMS + 3
    assert user_row_counts(conn) == rows_before


def test_g5_empty_import_after_legacy_clear_is_refused(fresh_conn, seasons):
    conn = fresh_conn
    before, _ = _state(conn)
    with pytest.raises(ImportRefused):
        protected_etl(conn, seasons[0], teams_data=[])
    assert changed_tables(before, _state(conn)[0]) == []
