"""Health (G8): every status reached on purpose, the counts recounted, JSON and Prometheus parsed back."""

from __future__ import annotations

import json
import re

import psycopg2
import pytest
from psycopg2 import sql

from bulletproof_etl import BulletproofTeamPreservation, HealthCheckFailed, HealthStatus
from bulletproof_etl.catalog import read_catalog
from bulletproof_etl.config import DEFAULT_CONFIG
from bulletproof_etl.health import check_health
from restore_support import load_with_activity, write_seasons
from support import table_checksums

N_TEAMS = 30
SEED = 31


@pytest.fixture
def season(tmp_path, db_dsn, conn):
    s1, _s2, _ = write_seasons(tmp_path, N_TEAMS, SEED)
    load_with_activity(db_dsn, conn, s1)
    return s1


def _health(conn, run_id=None, **kw):
    report = check_health(conn, DEFAULT_CONFIG, read_catalog(conn, DEFAULT_CONFIG), run_id, **kw)
    conn.rollback()
    return report


def _sql(conn, statement, params=None, *, fk_off=False):
    with conn.cursor() as cur:
        if fk_off:
            cur.execute("SET session_replication_role = replica")
        cur.execute(statement, params)
        if fk_off:
            cur.execute("SET session_replication_role = DEFAULT")


def test_g8_perfect_after_a_clean_load(season, conn):
    report = _health(conn)
    assert report.status is HealthStatus.PERFECT, report.issues
    assert report.user_orphans == report.etl_orphans == 0 and report.issues == []
    assert report.preservation_rate is None  # no run: undefined, grades nothing
    assert len(report.orphans) == 32  # every dependent column of the reference schema is counted


def test_g8_critical_for_user_orphans_counted_per_column(season, conn):
    _sql(conn, "UPDATE polls SET team_id = 99999 WHERE id IN (1, 2, 3)", fk_off=True)
    _sql(conn, "UPDATE users SET team_id = 88888 WHERE id = 4")  # no foreign key: found anyway
    conn.commit()
    report = _health(conn)
    assert report.status is HealthStatus.CRITICAL
    assert report.orphans["polls.team_id"] == 3 and report.orphans["users.team_id"] == 1
    assert report.user_orphans == 4 and report.etl_orphans == 0
    assert report.issues == ["4 user-owned references point at nothing"]


def test_g8_warning_for_etl_orphans_missing_constraints_and_duplicate_keys(season, conn):
    _sql(conn, "UPDATE series_stats SET team_id = 99999 WHERE id = 1", fk_off=True)
    conn.commit()
    report = _health(conn)
    assert report.status is HealthStatus.WARNING
    assert report.etl_orphans == 1 and report.orphans["series_stats.team_id"] == 1
    _sql(conn, "UPDATE series_stats SET team_id = NULL WHERE id = 1")
    _sql(conn, "ALTER TABLE clubs DROP CONSTRAINT clubs_name_key")
    _sql(conn, "INSERT INTO clubs (name) SELECT upper(name) FROM clubs WHERE id = 1")
    conn.commit()
    report = _health(conn)
    assert report.status is HealthStatus.WARNING
    assert report.missing_constraints == ["UNIQUE clubs(name)"]
    assert report.duplicate_keys == {"clubs": 1}
    assert report.etl_orphans == 0 and len(report.issues) == 2


def test_g8_null_policies(season, conn):
    _sql(conn, "UPDATE users SET team_id = NULL WHERE id = 5")
    conn.commit()
    assert _health(conn, null_policy="allowed").status is HealthStatus.PERFECT
    forbidden = _health(conn, null_policy="forbidden")
    # forbidden counts every NULL: the one set here and the practice rows' empty away side
    assert forbidden.status is HealthStatus.WARNING
    assert forbidden.nulls == {"users.team_id": 1, "schedule.away_team_id": N_TEAMS}
    # since the snapshot: a reference set to NULL during the run, without quarantine, is CRITICAL
    with BulletproofTeamPreservation(conn, dry_run=True) as p:
        p.backup_user_data()
        _sql(conn, "UPDATE polls SET team_id = NULL WHERE id = 6")
        report = p.validate_health()
        assert report.null_policy == "since_snapshot"
        assert report.nulls == {"polls.team_id": 1}  # users.team_id 5 was NULL at snapshot time
        assert report.status is HealthStatus.CRITICAL
    with pytest.raises(ValueError):
        _health(conn, null_policy="sometimes")


def test_g8_critical_for_a_lost_row_and_for_a_row_on_another_team(season, conn):
    before = table_checksums(conn, ("public",))
    with pytest.raises(HealthCheckFailed) as failed:
        with BulletproofTeamPreservation(conn) as p:
            p.backup_user_data()
            _sql(conn, "DELETE FROM poll_responses WHERE id = 7")
            _sql(conn, "UPDATE captain_messages SET team_id = CASE team_id WHEN 1 THEN 2 ELSE 1 END WHERE id = 8")
            report = p.validate_health()
            assert report.lost == {"poll_responses": 1}
            assert report.misattached == {"captain_messages.team_id": 1}
            assert report.status is HealthStatus.CRITICAL
            p.validate_health(raise_on_critical=True)
    assert failed.value.report.status is HealthStatus.CRITICAL
    assert failed.value.report.issues == report.issues
    conn.commit()
    assert table_checksums(conn, ("public",)) == before  # the failure rolled everything back


def _committed_elsewhere(dsn, *statements):
    """Statements a user's session commits on its own connection (the app, while a run goes on)."""
    other = psycopg2.connect(dsn)
    try:
        with other.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        other.commit()
    finally:
        other.close()


def _team_of(conn, table, id_):
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT team_id FROM {} WHERE id = %s").format(sql.Identifier(table)), (id_,))
        return cur.fetchone()[0]


_SWAP = "UPDATE captain_messages SET team_id = CASE team_id WHEN {a} THEN {b} ELSE {a} END WHERE id = {id}"


def test_g7_health_tells_a_users_committed_change_from_the_runs_own_writes(season, db_dsn, conn):
    """Issue 14: a row a user moved (or whose team a user cleared) and committed while the run
    went on is the user's choice; the same change made by the run, even inside a savepoint
    (a subtransaction's xid), is still CRITICAL. The restore sets back only the run's."""
    with BulletproofTeamPreservation(conn, dry_run=True) as p:
        p.backup_user_data()
        user_9, user_poll_6 = _team_of(conn, "captain_messages", 9), _team_of(conn, "polls", 6)
        run_8, run_poll_7 = _team_of(conn, "captain_messages", 8), _team_of(conn, "polls", 7)
        _committed_elsewhere(db_dsn, _SWAP.format(a=3, b=4, id=9), "UPDATE polls SET team_id = NULL WHERE id = 6")
        chosen_9 = _team_of(conn, "captain_messages", 9)  # read committed: the run sees the user's change
        assert chosen_9 != user_9 and _team_of(conn, "polls", 6) is None and user_poll_6 is not None
        _sql(conn, "SAVEPOINT run_write")
        _sql(conn, _SWAP.format(a=1, b=2, id=8))
        _sql(conn, "UPDATE polls SET team_id = NULL WHERE id = 7")
        _sql(conn, "RELEASE SAVEPOINT run_write")
        report = p.validate_health()
        assert report.misattached == {"captain_messages.team_id": 1}  # message 8, the run's
        assert report.nulls == {"polls.team_id": 1}  # poll 7, the run's
        assert report.status is HealthStatus.CRITICAL
        restored = p.restore_user_data()
        assert restored.tables["captain_messages"].repaired == 1 and restored.tables["polls"].repaired == 1
        assert (_team_of(conn, "captain_messages", 8), _team_of(conn, "polls", 7)) == (run_8, run_poll_7)
        assert (_team_of(conn, "captain_messages", 9), _team_of(conn, "polls", 6)) == (chosen_9, None)
        report = p.validate_health()
        assert report.misattached == {} and report.nulls == {} and report.lost == {}
        assert report.status is HealthStatus.PERFECT, report.issues


def test_g7_a_users_choice_carried_on_by_the_restore_stays_the_users(season, db_dsn, conn):
    """The team a user chose during the run gets a new id in the run (its key survives): the
    restore carries the row on to that id, and health still knows the key was the user's."""
    with BulletproofTeamPreservation(conn, dry_run=True) as p:
        p.backup_user_data()
        chosen = 4 if _team_of(conn, "captain_messages", 9) == 3 else 3
        _committed_elsewhere(db_dsn, f"UPDATE captain_messages SET team_id = {chosen} WHERE id = 9")
        _renumber(conn, [chosen])
        restored = p.restore_user_data()
        assert restored.tables["captain_messages"].repaired == 0
        assert _team_of(conn, "captain_messages", 9) == chosen + 5000  # the same key, its new id
        report = p.validate_health()
        assert report.misattached == {} and report.user_orphans == 0, report.issues


def test_g7_a_check_against_a_finished_run_forgives_no_change(season, db_dsn, conn):
    """Only the run's own transaction, while it runs, tells users' changes apart: checked later
    against its snapshot (as a repair does), every row on another key counts."""
    with BulletproofTeamPreservation(conn) as p:
        p.backup_user_data()
        assert p.validate_health().status is HealthStatus.PERFECT
    run_id = p.report.run_id
    _committed_elsewhere(db_dsn, _SWAP.format(a=3, b=4, id=9))
    assert _health(conn, run_id).misattached == {"captain_messages.team_id": 1}
    _sql(conn, "SELECT pg_current_xact_id()")  # a transaction with an xid, as a repair's is
    assert _health(conn, run_id).misattached == {"captain_messages.team_id": 1}


ETL_TEAM_COLUMNS = [("players", "team_id"), ("series_stats", "team_id"), ("match_scores", "home_team_id"),
                    ("match_scores", "away_team_id"), ("schedule", "home_team_id"), ("schedule", "away_team_id")]


def _renumber(conn, ids):
    """Give teams a new id behind the library's back, as the legacy ETL does: the key survives,
    the id does not; the ETL's own tables follow, the user tables do not."""
    for i in ids:
        _sql(conn, "UPDATE teams SET id = id + 5000 WHERE id = %s", (i,), fk_off=True)
        for table, column in ETL_TEAM_COLUMNS:
            practice = sql.SQL(" AND coalesce(home_team, '') NOT ILIKE '%%practice%%'" if table == "schedule" else "")
            _sql(conn, sql.SQL("UPDATE {t} SET {c} = %s WHERE {c} = %s{p}").format(
                t=sql.Identifier(table), c=sql.Identifier(column), p=practice), (i + 5000, i), fk_off=True)


def test_g8_preservation_rate_warning_and_critical_thresholds(season, conn):
    with BulletproofTeamPreservation(conn, dry_run=True) as p:
        p.backup_user_data()
        _renumber(conn, [3])
        p.restore_user_data()  # the stale 3 maps directly to 5003: no orphan, no misattachment
        report = p.validate_health()
        assert (report.ids_kept, report.keys_survived) == (29, 30)
        assert report.preservation_rate == pytest.approx(29 / 30)
        assert report.status is HealthStatus.WARNING
        assert report.issues == ["preservation rate 96.7% below 100%"]
        _renumber(conn, [4, 5, 6])
        p.restore_user_data()
        report = p.validate_health()
        assert report.preservation_rate == pytest.approx(26 / 30)
        assert report.status is HealthStatus.CRITICAL
        assert report.user_orphans == 0


def test_g8_preservation_rate_is_undefined_when_no_key_survived(db_dsn, conn):
    with BulletproofTeamPreservation(conn) as p:
        p.backup_user_data()  # an empty database: no team at snapshot time
        report = p.validate_health()
    conn.commit()
    assert (report.ids_kept, report.keys_survived, report.preservation_rate) == (0, 0, None)
    assert report.status is HealthStatus.PERFECT


def test_g5_critical_health_in_run_rolls_back_and_raises_with_the_report(season, tmp_path, db_dsn, conn):
    import rally_etl

    etl = rally_etl.ComprehensiveETL(season, db_dsn)
    etl.load_json_files()
    before = table_checksums(conn, ("public",))
    strict = DEFAULT_CONFIG.replace(critical_preservation_below=1.01)  # 100% can never pass
    with pytest.raises(HealthCheckFailed) as failed:
        with BulletproofTeamPreservation(conn, config=strict) as p:
            p.run(etl.extract_teams())
    conn.commit()
    assert table_checksums(conn, ("public",)) == before
    report = failed.value.report
    assert report.status is HealthStatus.CRITICAL and report.preservation_rate == 1.0
    assert report.issues == ["preservation rate 100.0% below 101%"]


# -- output formats ---------------------------------------------------------------------------

_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')
_LABEL = re.compile(r'(?P<k>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<v>(?:[^"\\]|\\.)*)"(?:,|$)')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m[1], m[1]), value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def parse_prometheus(text: str) -> dict:
    """``{(metric, ((label, value), ...)): float}``; every metric declared by HELP and TYPE first."""
    declared, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            kind, name, rest = line[2:6], *line[7:].split(" ", 1)
            declared.setdefault(name, {})[kind] = rest
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        assert set(declared.get(m["name"], {})) == {"HELP", "TYPE"}, m["name"]
        labels = m["labels"] or ""
        pairs = [(x["k"], _unescape(x["v"])) for x in _LABEL.finditer(labels)]
        assert ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) == labels  # nothing left unparsed
        key = (m["name"], tuple(pairs))
        assert key not in samples, f"duplicate sample {key}"
        samples[key] = float(m["value"])
    assert all(d["TYPE"] == "gauge" for d in declared.values())
    return samples


def test_g8_json_and_prometheus_parse_back_to_the_report(season, conn):
    _sql(conn, "UPDATE polls SET team_id = 99999 WHERE id IN (1, 2)", fk_off=True)
    _sql(conn, "UPDATE match_scores SET home_team_id = 99999 WHERE id = 1", fk_off=True)
    conn.commit()
    with BulletproofTeamPreservation(conn, dry_run=True) as p:
        p.backup_user_data()
        report = p.validate_health()
    data = json.loads(report.to_json())
    assert data == report.to_dict()
    assert data["status"] == "CRITICAL" and data["orphans"]["polls.team_id"] == 2
    assert data["orphans"]["match_scores.home_team_id"] == 1 and report.etl_orphans == 1
    metrics = parse_prometheus(report.to_prometheus())
    assert metrics[("bulletproof_health_status", ())] == 2
    for label, n in report.orphans.items():
        table, column = label.split(".", 1)
        assert metrics[("bulletproof_orphans", (("table", table), ("column", column)))] == n
    assert sum(v for (name, _l), v in metrics.items() if name == "bulletproof_orphans") == \
        report.user_orphans + report.etl_orphans == sum(report.orphans.values())
    assert metrics[("bulletproof_user_orphans", ())] == report.user_orphans
    assert metrics[("bulletproof_quarantined_rows", ())] == report.quarantined == 0
    assert metrics[("bulletproof_preservation_rate", ())] == pytest.approx(report.preservation_rate)
    assert metrics[("bulletproof_missing_constraints", ())] == 0


def test_g8_prometheus_escapes_label_values():
    from bulletproof_etl.health import HealthReport

    report = HealthReport(orphans={'odd"table.col\\umn': 3}, lost={"line\nbreak": 1})
    text = report.to_prometheus()
    assert 'bulletproof_orphans{table="odd\\"table",column="col\\\\umn"} 3' in text
    assert 'bulletproof_lost_rows{table="line\\nbreak"} 1' in text
    assert "\nbreak" not in text.replace("\\nbreak", "")
    metrics = parse_prometheus(text)
    assert metrics[("bulletproof_orphans", (("table", 'odd"table'), ("column", "col\\umn")))] == 3
    assert metrics[("bulletproof_lost_rows", (("table", "line\nbreak"),))] == 1
