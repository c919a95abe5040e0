"""The three integration options (patch, wrap, direct call) on the reference ETL and on a
differently named ETL written here; failure injection inside the ETL's own steps; the
patch mechanics; the emergency repair and the repair from a durable snapshot.

Every count is recounted here with tests/support (plain SQL and rally_etl.names), never
copied from the library's report.
"""

from __future__ import annotations

import psycopg2
import pytest
from psycopg2 import sql

from bulletproof_etl import BulletproofError, HealthStatus
from bulletproof_etl.integration import (
    EtlHooks,
    bulletproof_import_teams,
    create_bulletproof_etl_wrapper,
    emergency_repair_orphans,
    is_patched,
    patch_existing_etl_class,
    unpatch_etl_class,
)
from bulletproof_etl.integration.repair import repair_from_snapshot
from rally_etl import ComprehensiveETL
from rally_etl.activity import create_user_activity
from rally_etl.generate import generate_season_with_summary, write_season
from rally_etl.names import canonical_series
from support import snapshot_size, table_checksums, team_keys, user_ref_keys, user_row_counts

N_TEAMS = 100
SEED = 31


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


@pytest.fixture(scope="module")
def seasons(tmp_path_factory):
    """Season 1 and season 2 (10% churn) of a generated league, and season 2's club renames."""
    root = tmp_path_factory.mktemp("seasons")
    first, _ = generate_season_with_summary(N_TEAMS, SEED)
    second, summary = generate_season_with_summary(N_TEAMS, SEED, season=2, churn=0.1)
    renames = {_fold(a): _fold(b) for a, b in summary.club_renames.items()}
    return write_season(first, root / "s1"), write_season(second, root / "s2"), renames, summary


class LeagueLoader:
    """A second ETL, named differently: open_db, wipe_tables, load_* and execute().

    Destructive like the legacy one (its wipe deletes teams with foreign keys off) and
    committing after every step; it borrows the reference ETL's parsing for its data.
    """

    def __init__(self, data_dir, dsn) -> None:
        self.dsn = dsn
        self.parser = ComprehensiveETL(data_dir, dsn)

    def open_db(self):
        return psycopg2.connect(self.dsn)

    def wipe_tables(self, conn) -> int:
        return self.parser.clear_target_tables(conn)

    def load_leagues(self, conn, rows) -> int:
        return self.parser.import_leagues(conn, rows)

    def load_clubs(self, conn, rows) -> int:
        return self.parser.import_clubs(conn, rows)

    def load_series(self, conn, rows) -> int:
        return self.parser.import_series(conn, rows)

    def load_teams(self, conn, rows) -> int:
        return self.parser.import_teams(conn, rows)

    def load_facts(self, conn) -> int:
        return sum(step(conn) for step in (self.parser.import_club_leagues, self.parser.import_series_leagues,
                                           self.parser.import_players, self.parser.import_series_stats,
                                           self.parser.import_match_scores, self.parser.import_schedules))

    def execute(self) -> bool:
        conn = self.open_db()
        try:
            p = self.parser
            p.load_json_files()
            self.wipe_tables(conn)
            conn.commit()
            self.load_leagues(conn, p.extract_leagues())
            conn.commit()
            self.load_clubs(conn, p.extract_clubs())
            conn.commit()
            self.load_series(conn, p.extract_series())
            conn.commit()
            self.load_teams(conn, p.extract_teams())
            conn.commit()
            self.load_facts(conn)
            conn.commit()
            return True
        except Exception:
            conn.rollback()
            return False
        finally:
            conn.close()


#: teams of season 1 that season 2 no longer names and that no user row references (the
#: generator's activity covers the others): removed by the protected run
REMOVED_UNREFERENCED = 4

LOADER_HOOKS = EtlHooks(run="execute", get_connection="open_db", clear="wipe_tables", import_leagues="load_leagues",
                        import_clubs="load_clubs", import_series="load_series", import_teams="load_teams",
                        league_attribute=None)


def _run(etl) -> bool:
    return etl.execute() if isinstance(etl, LeagueLoader) else etl.run()


class _Before:
    def __init__(self, conn):
        self.teams = team_keys(conn)
        self.refs = user_ref_keys(conn)
        self.rows = user_row_counts(conn)


def _season_one(db_dsn, conn, seasons) -> _Before:
    assert ComprehensiveETL(seasons[0], db_dsn).run()
    create_user_activity(conn, seed=5)
    conn.commit()
    return _Before(conn)


def _active_keys(conn) -> set:
    keys = team_keys(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM teams WHERE is_active")
        active = {r[0] for r in cur.fetchall()}
    conn.rollback()
    return {k for i, k in keys.items() if i in active}


def _assert_preserved(conn, before: _Before, renames: dict, *, lost_practice: int = 0,
                      every_id: bool = True, removed: int | None = None) -> None:
    """G1 + G2 + G3 + G4, recounted: every key of the import that existed keeps its id (with
    ``every_id``: every old id still exists with its key, retired or not, except the
    ``removed`` teams the import no longer names that nothing referenced: gone, as after the
    legacy ETL), no orphan, no row lost, every reference on the same key (or on the continuing
    team of a renamed club)."""
    after_teams = team_keys(conn)
    active = _active_keys(conn)
    gone = {i for i in before.teams if i not in after_teams} if every_id else set()
    assert len(gone) == (removed or 0)
    assert not {before.teams[i] for i in gone} & active  # only teams the import no longer names
    kept = {i: k for i, k in before.teams.items() if (every_id and i not in gone) or k in active}
    assert len(kept) >= len(before.teams) - 10
    assert {i: after_teams.get(i) for i in kept} == kept  # G3
    refs = user_ref_keys(conn)
    assert [r for r, v in refs.items() if v == "ORPHAN"] == []  # G1
    rows = user_row_counts(conn)
    expected_rows = dict(before.rows)
    expected_rows["schedule(practice)"] -= lost_practice
    assert rows == expected_rows  # G2

    def expected(key):
        if isinstance(key, tuple) and len(key) == 3:
            renamed = (key[0], renames.get(key[1], key[1]), key[2])
            return renamed if renamed in active else key
        return key

    def series(key):  # a series reference means the canonical series: "Chicago 6" is "Series 6"
        return canonical_series(None, key[0]).casefold() if isinstance(key, tuple) else key

    wrong = {r: (old, refs.get(r)) for r, old in before.refs.items()
             if r in refs and old is not None and refs[r] != expected(old)
             and not (r[2] == "series_id" and series(refs[r]) == series(old))}
    if lost_practice:
        wrong = {r: v for r, v in wrong.items() if r[0] != "schedule"}
    assert wrong == {}  # G4


# -- option 1 and 2: patch and wrap -------------------------------------------------------------
@pytest.fixture
def patched_reference():
    patch_existing_etl_class(ComprehensiveETL)
    yield ComprehensiveETL
    unpatch_etl_class(ComprehensiveETL)


@pytest.fixture
def patched_loader():
    patch_existing_etl_class(LeagueLoader, hooks=LOADER_HOOKS)
    yield LeagueLoader
    unpatch_etl_class(LeagueLoader)


@pytest.mark.parametrize("option", ["patch", "wrap"])
@pytest.mark.parametrize("etl_name", ["reference", "loader"])
def test_g1_g2_g3_g4_protected_run_keeps_ids_and_user_data(db_dsn, conn, seasons, option, etl_name):
    before = _season_one(db_dsn, conn, seasons)
    base, hooks = (ComprehensiveETL, None) if etl_name == "reference" else (LeagueLoader, LOADER_HOOKS)
    if option == "patch":
        cls = patch_existing_etl_class(base, hooks=hooks)
    else:
        cls = create_bulletproof_etl_wrapper(base, hooks=hooks)
        assert not is_patched(base) and is_patched(cls)
    try:
        etl = cls(seasons[1], db_dsn)
        assert _run(etl) is True
    finally:
        unpatch_etl_class(base)
    report = etl.bulletproof_report
    assert report.outcome == "committed" and report.error is None
    _assert_preserved(conn, before, seasons[2], removed=report.teams["removed"])
    summary = seasons[3]
    # the season-2 import itself: every team of the import is active, the removed ones retired
    # where user rows still reference them, else removed
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FILTER (WHERE is_active), count(*) FILTER (WHERE NOT is_active) FROM teams")
        active, retired = cur.fetchone()
    conn.rollback()
    assert active == summary.teams_after
    # retired or removed: the removed teams and the old teams of renamed clubs (a club written in
    # another case is the same club, so its teams stay)
    assert retired + report.teams["removed"] == N_TEAMS - summary.teams_kept - summary.teams_messy["case"]
    assert retired == report.teams["retired"] == report.teams["kept_for_references"]
    assert report.teams["removed"] == REMOVED_UNREFERENCED


@pytest.mark.parametrize("etl_name", ["reference", "loader"])
def test_g1_g3_direct_call_keeps_ids_and_leaves_no_orphans(db_dsn, conn, seasons, etl_name):
    """Option 3: bulletproof_import_teams in place of import_teams, the ETL otherwise legacy.

    The legacy clear has already deleted the practice rows in ``schedule`` when the team
    import starts, so this option cannot bring those back (docs/integration.md says so):
    they are the only difference, counted exactly."""
    if etl_name == "reference":
        class Direct(ComprehensiveETL):
            def import_teams(self, conn, teams_data):
                return bulletproof_import_teams(self, conn, teams_data)
    else:
        class Direct(LeagueLoader):
            def load_teams(self, conn, rows):
                return bulletproof_import_teams(self, conn, rows)
    first = Direct(seasons[0], db_dsn)
    assert _run(first) is True  # the first import teaches the ledger the ids
    assert isinstance(first.bulletproof_report.teams["created"], int)
    create_user_activity(conn, seed=5)
    conn.commit()
    before = _Before(conn)
    etl = Direct(seasons[1], db_dsn)
    assert _run(etl) is True
    report = etl.bulletproof_report
    assert report.health["status"] in ("PERFECT", "WARNING")
    # a renamed club's old team is not in the import: its rows move to the new team (context)
    # and the old id goes, as the legacy clear deleted it; every other id stays
    _assert_preserved(conn, before, seasons[2], lost_practice=before.rows["schedule(practice)"], every_id=False)


def test_direct_call_returns_the_number_of_teams_like_import_teams(db_dsn, conn, seasons):
    etl = ComprehensiveETL(seasons[0], db_dsn)
    etl.load_json_files()
    teams = etl.extract_teams()
    for step in (etl.import_leagues, etl.import_clubs, etl.import_series):
        step(conn, getattr(etl, "extract_" + step.__name__.split("_", 1)[1])())
    imported = bulletproof_import_teams(etl, conn, teams)
    conn.commit()
    assert type(imported) is int and imported == len(teams) == len(team_keys(conn))
    assert etl.bulletproof_report.teams["read"] == len(teams)


# -- G5: a failure inside the ETL's own steps after its clear -----------------------------------
def _failing(base):
    class Failing(base):
        def import_players(self, conn):
            raise RuntimeError("injected failure in import_players")
    return Failing


def _failing_loader():
    class FailingLoader(LeagueLoader):
        def load_facts(self, conn):
            self.parser.import_club_leagues(conn)
            raise RuntimeError("injected failure in load_facts")
    return FailingLoader


@pytest.mark.parametrize("etl_name", ["reference", "loader"])
def test_g5_failure_after_the_clear_leaves_every_table_unchanged(db_dsn, conn, seasons, etl_name):
    _season_one(db_dsn, conn, seasons)
    before = table_checksums(conn)
    if etl_name == "reference":
        cls = create_bulletproof_etl_wrapper(_failing(ComprehensiveETL))
    else:
        cls = create_bulletproof_etl_wrapper(_failing_loader(), hooks=LOADER_HOOKS)
    etl = cls(seasons[1], db_dsn)
    assert _run(etl) is False
    assert table_checksums(conn) == before  # every table and every sequence of public
    report = etl.bulletproof_report
    assert report.outcome == "rolled_back"
    assert "injected failure" in report.error
    with conn.cursor() as cur:  # the durable snapshot of the failed run stays, marked failed
        cur.execute("SELECT outcome FROM bulletproof.runs WHERE run_id = %s", (report.run_id,))
        assert cur.fetchone()[0] == "failed"
    assert snapshot_size(conn, report.run_id) == sum(user_row_counts(conn).values())
    conn.rollback()


@pytest.mark.parametrize("etl_name", ["reference", "loader"])
def test_g5_baseline_the_same_failure_without_protection_changes_the_database(db_dsn, conn, seasons, etl_name):
    before_state = _season_one(db_dsn, conn, seasons)
    before = table_checksums(conn)
    etl = _failing(ComprehensiveETL)(seasons[1], db_dsn) if etl_name == "reference" else \
        _failing_loader()(seasons[1], db_dsn)
    assert _run(etl) is False
    after = table_checksums(conn)
    assert after["public.teams"] != before["public.teams"]  # teams deleted and re-inserted
    refs = user_ref_keys(conn)
    orphans = sum(1 for v in refs.values() if v == "ORPHAN")
    assert orphans == sum(1 for r, v in before_state.refs.items() if v is not None and r[0] != "schedule")
    assert user_row_counts(conn)["schedule(practice)"] == 0


def test_g5_run_returning_false_is_never_reported_as_success(db_dsn, conn, seasons):
    _season_one(db_dsn, conn, seasons)
    before = table_checksums(conn)

    class SaysFalse(ComprehensiveETL):
        def run(self):
            super().run()
            return False

    etl = create_bulletproof_etl_wrapper(SaysFalse)(seasons[1], db_dsn)
    assert etl.run() is False
    assert table_checksums(conn) == before
    assert "returned False" in etl.bulletproof_report.error


def test_g4_a_poll_the_etl_moves_or_nulls_is_repaired_from_the_snapshot(db_dsn, conn, seasons):
    """An ETL step that moves a user's poll onto another team and sets another poll's team to
    NULL (as the real ETL's own fixers do): both are damage, repaired before health is judged."""
    _season_one(db_dsn, conn, seasons)
    keys_before = user_ref_keys(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT min(id), max(id) FROM polls WHERE team_id IS NOT NULL")
        moved, nulled = cur.fetchone()
    conn.rollback()

    class Damaging(ComprehensiveETL):
        def import_series_stats(self, conn):
            with conn.cursor() as cur:
                cur.execute("UPDATE polls SET team_id = (SELECT max(id) FROM teams WHERE is_active) WHERE id = %s",
                            (moved,))
                cur.execute("UPDATE polls SET team_id = NULL WHERE id = %s", (nulled,))
            return super().import_series_stats(conn)

    etl = create_bulletproof_etl_wrapper(Damaging)(seasons[1], db_dsn)
    assert etl.run() is True, etl.bulletproof_report.error
    report = etl.bulletproof_report
    assert report.outcome == "committed" and report.health["status"] != HealthStatus.CRITICAL.value
    assert report.restore["tables"]["polls"]["repaired"] == 2
    after = user_ref_keys(conn)
    for pk in (moved, nulled):
        ref = next(r for r in keys_before if r[0] == "polls" and r[1] == pk)
        assert after[ref] == keys_before[ref]
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM bulletproof.mappings WHERE strategy = 'repaired' AND table_name = 'polls'")
        assert cur.fetchone()[0] == 2


# -- G6: the same import twice ------------------------------------------------------------------
def _row_versions(conn, tables) -> dict:
    out = {}
    with conn.cursor() as cur:
        for table in tables:
            cur.execute(sql.SQL("SELECT id, xmin::text FROM {} ORDER BY id").format(sql.Identifier(table)))
            out[table] = cur.fetchall()
    conn.rollback()
    return out


def test_g6_patched_rerun_of_unchanged_data_rewrites_no_entity_and_no_user_row(db_dsn, conn, seasons,
                                                                                patched_reference):
    _season_one(db_dsn, conn, seasons)
    assert ComprehensiveETL(seasons[1], db_dsn).run()
    tables = ["leagues", "clubs", "series", "teams", "users", "polls", "poll_choices", "poll_responses",
              "captain_messages", "practice_times", "saved_lineups", "lineup_escrow", "activity_log",
              "videos", "player_availability"]
    before = _row_versions(conn, tables)
    with conn.cursor() as cur:
        cur.execute("SELECT id, xmin::text FROM schedule WHERE home_team ILIKE '%%practice%%' ORDER BY id")
        practice = cur.fetchall()
    conn.rollback()
    etl = ComprehensiveETL(seasons[1], db_dsn)
    assert etl.run() is True
    assert _row_versions(conn, tables) == before
    with conn.cursor() as cur:
        cur.execute("SELECT id, xmin::text FROM schedule WHERE home_team ILIKE '%%practice%%' ORDER BY id")
        assert cur.fetchall() == practice
    conn.rollback()
    assert etl.bulletproof_report.teams["created"] == etl.bulletproof_report.teams["updated"] == 0


# -- the patch itself ---------------------------------------------------------------------------
def test_patch_is_idempotent_undoable_and_keeps_names_and_docstrings():
    originals = {n: ComprehensiveETL.__dict__[n] for n in ("run", "get_connection", "clear_target_tables",
                                                           "import_teams", "import_leagues", "import_players")}
    patch_existing_etl_class(ComprehensiveETL)
    try:
        first = {n: ComprehensiveETL.__dict__[n] for n in originals}
        patch_existing_etl_class(ComprehensiveETL)
        assert {n: ComprehensiveETL.__dict__[n] for n in originals} == first
        for name, original in originals.items():
            assert first[name] is not original
            assert first[name].__name__ == original.__name__ and first[name].__doc__ == original.__doc__
        assert is_patched(ComprehensiveETL)
    finally:
        unpatch_etl_class(ComprehensiveETL)
    assert {n: ComprehensiveETL.__dict__[n] for n in originals} == originals
    assert not is_patched(ComprehensiveETL)
    unpatch_etl_class(ComprehensiveETL)  # a second undo is harmless


def test_wrapper_leaves_the_original_class_untouched():
    before = dict(vars(ComprehensiveETL))
    wrapper = create_bulletproof_etl_wrapper(ComprehensiveETL)
    assert issubclass(wrapper, ComprehensiveETL) and wrapper.__name__ == "BulletproofComprehensiveETL"
    assert dict(vars(ComprehensiveETL)) == before
    assert wrapper.run.__name__ == "run" and wrapper.run.__doc__ == ComprehensiveETL.run.__doc__


def test_patch_names_a_missing_method():
    with pytest.raises(BulletproofError, match="no method 'clear_target_tables', 'import_teams'"):
        patch_existing_etl_class(LeagueLoader, hooks=EtlHooks(run="execute", get_connection="open_db"))
    assert not is_patched(LeagueLoader)


# -- repairs ------------------------------------------------------------------------------------
def test_g1_g2_emergency_repair_maps_orphans_and_deletes_nothing(db_dsn, conn, seasons, patched_reference):
    _season_one(db_dsn, conn, seasons)
    assert ComprehensiveETL(seasons[1], db_dsn).run()  # protected: the ledger knows every id
    unpatch_etl_class(ComprehensiveETL)
    assert ComprehensiveETL(seasons[1], db_dsn).run()  # unprotected: every reference orphaned
    orphans = sum(1 for v in user_ref_keys(conn).values() if v == "ORPHAN")
    rows = user_row_counts(conn)
    before, after = emergency_repair_orphans(db_dsn)
    assert before.user_orphans == orphans > 0 and before.status is HealthStatus.CRITICAL
    assert after.user_orphans == 0 and after.status is not HealthStatus.CRITICAL
    assert [r for r, v in user_ref_keys(conn).items() if v == "ORPHAN"] == []
    assert user_row_counts(conn) == rows


def test_g3_repair_from_snapshot_brings_back_every_id_and_user_row(db_dsn, conn, seasons, patched_reference):
    _season_one(db_dsn, conn, seasons)
    etl = ComprehensiveETL(seasons[1], db_dsn)
    assert etl.run()
    run_id = etl.bulletproof_report.run_id
    protected = _Before(conn)
    unpatch_etl_class(ComprehensiveETL)
    assert ComprehensiveETL(seasons[1], db_dsn).run()  # the damage: new ids, practice rows gone
    assert user_row_counts(conn)["schedule(practice)"] == 0
    result = repair_from_snapshot(db_dsn, run_id)
    # every id back, with its key; the snapshot was taken before the run, so the teams the run
    # removed (no longer named, referenced by nothing) come back too, as the snapshot holds them
    removed = etl.bulletproof_report.teams["removed"]
    repaired = team_keys(conn)
    back = {i: k for i, k in repaired.items() if i not in protected.teams}
    assert {i: k for i, k in repaired.items() if i in protected.teams} == protected.teams
    assert len(back) == removed == REMOVED_UNREFERENCED
    assert user_ref_keys(conn) == protected.refs  # every reference on its key
    assert user_row_counts(conn) == protected.rows  # the practice rows are back
    assert result.entities["teams"].renumbered + result.entities["teams"].reinserted == len(protected.teams) + removed
    assert result.restore["totals"]["reinserted"] == protected.rows["schedule(practice)"]
    assert not result.nothing_to_do and result.health.user_orphans == 0


def test_g5_repair_after_a_failed_run_has_nothing_to_do_and_says_so(db_dsn, conn, seasons):
    _season_one(db_dsn, conn, seasons)
    etl = create_bulletproof_etl_wrapper(_failing(ComprehensiveETL))(seasons[1], db_dsn)
    assert etl.run() is False
    before = table_checksums(conn)
    result = repair_from_snapshot(db_dsn, etl.bulletproof_report.run_id)
    assert result.nothing_to_do
    assert "nothing to repair" in result.message() and "'failed'" in result.message()
    assert table_checksums(conn) == before


def test_g5_the_etl_commits_wait_for_the_end_of_the_run(db_dsn, conn, seasons):
    """Inside a protected run the ETL's commit(), ``with conn:`` and close() change nothing
    another connection can see; switching autocommit on is refused."""
    _season_one(db_dsn, conn, seasons)
    stats_before = count_rows(conn, "series_stats")
    seen = {}

    class Peeking(ComprehensiveETL):
        def import_series_stats(self, conn):
            with conn:  # psycopg2 commits here on a clean exit
                written = super().import_series_stats(conn)
            conn.commit()
            conn.autocommit = False  # already off: accepted
            with pytest.raises(BulletproofError, match="autocommit"):
                conn.autocommit = True
            outside = psycopg2.connect(self.dsn)
            try:
                seen["outside"] = count_rows(outside, "series_stats")
            finally:
                outside.close()
            seen["written"] = written
            return written

    etl = create_bulletproof_etl_wrapper(Peeking)(seasons[1], db_dsn)
    assert etl.run() is True
    assert seen["outside"] == stats_before  # the run's rows were invisible until its one commit
    assert count_rows(conn, "series_stats") == seen["written"] != stats_before


def count_rows(connection, table: str) -> int:
    with connection.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        n = cur.fetchone()[0]
    connection.rollback()
    return n


def test_g2_emergency_repair_on_the_callers_connection_leaves_the_commit_to_the_caller(db_dsn, conn, seasons,
                                                                                      patched_reference):
    _season_one(db_dsn, conn, seasons)
    assert ComprehensiveETL(seasons[1], db_dsn).run()
    unpatch_etl_class(ComprehensiveETL)
    assert ComprehensiveETL(seasons[1], db_dsn).run()
    orphans = sum(1 for v in user_ref_keys(conn).values() if v == "ORPHAN")
    before, after = emergency_repair_orphans(conn)
    assert before.user_orphans == orphans and after.user_orphans == 0
    conn.rollback()  # the caller changes its mind: nothing was committed
    assert sum(1 for v in user_ref_keys(conn).values() if v == "ORPHAN") == orphans
    emergency_repair_orphans(conn)
    conn.commit()
    assert sum(1 for v in user_ref_keys(conn).values() if v == "ORPHAN") == 0
