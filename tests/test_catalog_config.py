"""What the library reads from the catalog and what the configuration describes: dependent
columns (foreign keys found, not listed; declared columns without a key), owners, server
version and constraints; the series canonicaliser; and a schema with other names entirely."""

from __future__ import annotations

import gzip
import json

import pytest

from bulletproof_etl import BulletproofTeamPreservation, Dependent, PreservationConfig
from bulletproof_etl.catalog import read_catalog, referencing_columns
from bulletproof_etl.config import DEFAULT_CONFIG, canonical_series
from core_support import one_value
from rally_etl.names import canonical_series as legacy_canonical_series
from rally_etl.names import collapse, normalize_league_id

# SCHEMA.md, written out by hand: (table, column, entity, owner)
FK_DEPENDENTS = {
    ("club_leagues", "club_id", "clubs", "etl"), ("club_leagues", "league_id", "leagues", "etl"),
    ("series_leagues", "series_id", "series", "etl"), ("series_leagues", "league_id", "leagues", "etl"),
    ("players", "league_id", "leagues", "etl"), ("players", "club_id", "clubs", "etl"),
    ("players", "series_id", "series", "etl"), ("players", "team_id", "teams", "etl"),
    ("series_stats", "league_id", "leagues", "etl"), ("series_stats", "team_id", "teams", "etl"),
    ("series_stats", "series_id", "series", "etl"),
    ("match_scores", "league_id", "leagues", "etl"), ("match_scores", "home_team_id", "teams", "etl"),
    ("match_scores", "away_team_id", "teams", "etl"),
    ("schedule", "league_id", "leagues", "etl"), ("schedule", "home_team_id", "teams", "etl"),
    ("schedule", "away_team_id", "teams", "etl"),
    # practice rows of schedule are the users'
    ("schedule", "league_id", "leagues", "user"), ("schedule", "home_team_id", "teams", "user"),
    ("schedule", "away_team_id", "teams", "user"),
    ("polls", "team_id", "teams", "user"), ("captain_messages", "team_id", "teams", "user"),
    ("practice_times", "team_id", "teams", "user"), ("practice_times", "league_id", "leagues", "user"),
    ("saved_lineups", "team_id", "teams", "user"), ("lineup_escrow", "initiator_team_id", "teams", "user"),
    ("lineup_escrow", "recipient_team_id", "teams", "user"), ("videos", "team_id", "teams", "user"),
}
DECLARED = {
    ("users", "team_id", "teams", "user"), ("users", "league_context", "leagues", "user"),
    ("user_contexts", "league_id", "leagues", "user"), ("user_contexts", "team_id", "teams", "user"),
    ("user_contexts", "active_team_id", "teams", "user"), ("activity_log", "team_id", "teams", "user"),
    ("player_availability", "series_id", "series", "user"),
}


def test_catalog_finds_every_dependent_column_and_its_owner(conn):
    catalog = read_catalog(conn, DEFAULT_CONFIG)
    found = {(d.table, d.column, d.entity, d.owner) for d in catalog.dependents}
    assert found == FK_DEPENDENTS | DECLARED
    assert {(d.table, d.column) for d in catalog.dependents if not d.has_fk} == {(t, c) for t, c, *_ in DECLARED}
    practice = [d for d in catalog.dependents if d.table == "schedule" and d.owner == "user"]
    assert {d.filter_pattern for d in practice} == {"%practice%"}
    nullable = {(d.table, d.column): d.nullable for d in catalog.dependents}
    assert nullable[("captain_messages", "team_id")] is False
    assert nullable[("player_availability", "series_id")] is False
    assert nullable[("polls", "team_id")] is True
    # user tables, parents before children (poll_choices and poll_responses follow polls)
    order = catalog.user_tables()
    assert order.index("polls") < order.index("poll_choices") < order.index("poll_responses")
    assert order.index("users") < order.index("polls")


def test_catalog_reports_server_version_and_constraints(conn):
    catalog = read_catalog(conn, DEFAULT_CONFIG)
    assert catalog.server_version == one_value(conn, "SHOW server_version")
    assert catalog.has_constraint("teams", "unique_team_club_series_league")
    assert catalog.constraints["teams"]["unique_team_name_per_league"] == "unique"
    assert catalog.constraints["teams"]["teams_pkey"] == "primary key"
    assert catalog.has_unique("teams", ["league_id", "club_id", "series_id"])
    assert json.dumps(catalog.to_dict())  # serialisable for reports
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE teams DROP CONSTRAINT unique_team_name_per_league")
    assert not read_catalog(conn, DEFAULT_CONFIG).has_constraint("teams", "unique_team_name_per_league")
    conn.rollback()


def test_catalog_finds_a_new_foreign_key_without_configuration(conn):
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE team_notes (id serial PRIMARY KEY, team_id int REFERENCES teams (id), note text)")
        cur.execute("CREATE SCHEMA elsewhere")
        cur.execute("CREATE TABLE elsewhere.bookings (id serial PRIMARY KEY, club int REFERENCES public.clubs (id))")
    catalog = read_catalog(conn, DEFAULT_CONFIG)
    assert ("team_notes", "team_id", "teams", "user") in {(d.table, d.column, d.entity, d.owner)
                                                         for d in catalog.dependents}
    # re-keying looks further: every schema, and the entities' own parent columns
    clubs = {(r.schema, r.table, r.column) for r in referencing_columns(conn, DEFAULT_CONFIG, "clubs")}
    assert clubs == {("elsewhere", "bookings", "club"), ("public", "club_leagues", "club_id"),
                     ("public", "players", "club_id"), ("public", "teams", "club_id")}
    series = {(r.schema, r.table, r.column, r.has_fk)
              for r in referencing_columns(conn, DEFAULT_CONFIG, "series")}
    assert ("public", "player_availability", "series_id", False) in series
    conn.rollback()


@pytest.mark.parametrize("league, spellings, canonical", [
    ("APTA_CHICAGO", ["Chicago 22", "Series 22", "Division 22", "S22", "series  22", "Div. 22", "Series 022"], "22"),
    ("NSTF", ["Series 2B", "S2B", "Series 2 b", "s2b"], "2b"),
    ("APTA_CHICAGO", ["Chicago 11 SW", "Series 11SW", "Division 11 sw"], "11 sw"),
    ("CNSWPL", ["Division 1", "Series 1", "S1"], "1"),
    ("CNSWPL", ["Series A", "Division A"], "a"),
])
def test_g3_series_canonicaliser_gives_one_value_for_every_spelling(league, spellings, canonical):
    assert {canonical_series(league, s) for s in spellings} == {canonical}


def test_g3_series_canonicaliser_keeps_different_series_apart():
    values = [canonical_series("APTA_CHICAGO", s) for s in ("Chicago 2", "Chicago 22", "Chicago 2 SW", "Chicago 22 SW")]
    assert len(set(values)) == 4
    assert canonical_series("NSTF", "Series 2A") != canonical_series("NSTF", "Series 2B")


def test_g3_canonicaliser_agrees_with_the_legacy_parser_on_the_real_scrapes(realdata_dir):
    spellings = set()
    for path in sorted(realdata_dir.glob("*/*.json.gz")):
        for record in json.load(gzip.open(path)):
            league = record.get("League") or record.get("league_id")
            name = record.get("Series") or record.get("series")
            if league and name:
                spellings.add((normalize_league_id(league), collapse(name)))
    assert len(spellings) > 50
    ours, theirs = {}, {}
    for league, name in spellings:
        ours.setdefault((league, canonical_series(league, name)), set()).add(name)
        theirs.setdefault((league, legacy_canonical_series(league, name).casefold()), set()).add(name)
    # the same partition: two spellings are one series for the library exactly when they are for the ETL
    assert sorted(map(sorted, ours.values())) == sorted(map(sorted, theirs.values()))


_OTHER_SCHEMA = """
CREATE SCHEMA club_app;
CREATE TABLE club_app.competition (id serial PRIMARY KEY, code text NOT NULL UNIQUE, title text NOT NULL, site text);
CREATE TABLE club_app.venue (id serial PRIMARY KEY, venue_name text NOT NULL UNIQUE);
CREATE TABLE club_app.division (id serial PRIMARY KEY, label text NOT NULL UNIQUE, label_shown text NOT NULL);
CREATE TABLE club_app.squad (
    id serial PRIMARY KEY,
    venue_ref int NOT NULL REFERENCES club_app.venue (id),
    division_ref int NOT NULL REFERENCES club_app.division (id),
    competition_ref int NOT NULL REFERENCES club_app.competition (id),
    squad_name text NOT NULL, nickname text, shown_name text NOT NULL,
    active boolean NOT NULL DEFAULT true,
    UNIQUE (venue_ref, division_ref, competition_ref), UNIQUE (squad_name, competition_ref));
CREATE TABLE club_app.squad_posts (id serial PRIMARY KEY, squad_ref int REFERENCES club_app.squad (id), body text);
CREATE TABLE club_app.fan_clubs (id serial PRIMARY KEY, favourite_squad int, name text);
"""


def test_another_schema_is_described_by_configuration_alone(conn):
    with conn.cursor() as cur:
        cur.execute(_OTHER_SCHEMA)
    conn.commit()
    config = PreservationConfig(
        schema="club_app", state_schema="club_app_state",
        tables={"leagues": "competition", "clubs": "venue", "series": "division", "teams": "squad"},
        league_code="code", league_name="title", league_url="site", club_name="venue_name",
        series_name="label", series_display="label_shown", team_club="venue_ref", team_series="division_ref",
        team_league="competition_ref", team_name="squad_name", team_alias="nickname", team_display="shown_name",
        team_active="active", team_updated_at=None,
        declared=(Dependent("fan_clubs", "favourite_squad", "teams"),),
        etl_tables=frozenset(), user_rows_in_etl_tables={}, text_hints=(), user_team_column=None,
    )
    catalog = read_catalog(conn, config)
    assert {(d.table, d.column, d.owner, d.has_fk) for d in catalog.dependents} == {
        ("squad_posts", "squad_ref", "user", True), ("fan_clubs", "favourite_squad", "user", False)}
    conn.rollback()
    squads = [
        {"league_id": "WINTER", "club_name": "North Park", "series_name": "Division 3", "team_name": "North Park 3"},
        {"league_id": "WINTER", "club_name": "South Park", "series_name": "Division 3", "team_name": "South Park 3"},
    ]
    with BulletproofTeamPreservation(conn, config=config) as p:
        p.backup_user_data()
        p.preserve_teams_during_import(squads)
    conn.commit()
    with conn.cursor() as cur:
        cur.execute("SELECT id, squad_name FROM club_app.squad ORDER BY id")
        before = dict((name, i) for i, name in cur.fetchall())
        cur.execute("SELECT id, venue_name FROM club_app.venue")
        venues_before = {name: i for i, name in cur.fetchall()}
        cur.execute("INSERT INTO club_app.squad_posts (squad_ref, body) VALUES (%s, 'see you Sunday')",
                    (before["North Park 3"],))
    conn.commit()
    with BulletproofTeamPreservation(conn, config=config) as p:
        p.backup_user_data()
        with conn.cursor() as cur:  # the other app's own ETL deletes and re-inserts its reference data
            cur.execute("SET LOCAL session_replication_role = replica")
            cur.execute("DELETE FROM club_app.squad; DELETE FROM club_app.venue")
            cur.execute("SET LOCAL session_replication_role = DEFAULT")
            cur.execute("INSERT INTO club_app.venue (venue_name) VALUES ('South Park'), ('North Park')")
        result = p.preserve_teams_during_import(squads + [
            {"league_id": "WINTER", "club_name": "East Park", "series_name": "Series 3", "team_name": "East Park 3"}])
    conn.commit()
    with conn.cursor() as cur:
        cur.execute("SELECT id, squad_name FROM club_app.squad")
        after = {name: i for i, name in cur.fetchall()}
        cur.execute("SELECT id, venue_name FROM club_app.venue")
        venues_after = {name: i for i, name in cur.fetchall()}
    conn.rollback()
    assert {k: after[k] for k in before} == before
    assert {k: venues_after[k] for k in venues_before} == venues_before
    assert after["East Park 3"] > max(before.values())
    assert (result["preserved_from_ledger"], result["created"]) == (2, 1)
    assert one_value(conn, "SELECT count(*) FROM club_app_state.ledger WHERE entity = 'teams'") == 3
    assert one_value(conn, "SELECT s.squad_name FROM club_app.squad_posts p "
                           "JOIN club_app.squad s ON s.id = p.squad_ref") == "North Park 3"
    conn.rollback()
