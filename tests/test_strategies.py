"""Each restoration strategy alone (G4): what it maps, and what it must refuse.

The pure functions get hand-made candidates; the row-level strategies (content, names in
rows, parents through the rows' teams) run on a small hand-built database.
"""

from __future__ import annotations

import pytest

from bulletproof_etl.catalog import current_keys, read_catalog
from bulletproof_etl.config import DEFAULT_CONFIG as CONFIG
from bulletproof_etl.restore import strategies
from bulletproof_etl.restore.row_evidence import content_matches, names_in_rows, parents_from_teams


def team(id_, league, club, series, name=None, alias=None):
    key = CONFIG.team_key(league, club, series)
    return {"id": id_, "key": key, "team_name": name or f"{club} - {series[-2:]}", "team_alias": alias}


# -- direct -----------------------------------------------------------------------------------

def test_g4_direct_maps_a_ledger_key_held_by_exactly_one_row():
    key = CONFIG.team_key("APTA_CHICAGO", "Lakeview", "Chicago 22")
    assert strategies.direct(7, key, {key: [107]}) == 107


@pytest.mark.parametrize("ledger_key, by_key", [
    (None, {}),  # the ledger never saw the id
    (("APTA_CHICAGO", "lakeview", "22"), {}),  # the key is gone
    (("APTA_CHICAGO", "lakeview", "22"), {("APTA_CHICAGO", "lakeview", "22"): [107, 108]}),  # two rows hold it
])
def test_g4_direct_refuses(ledger_key, by_key):
    assert strategies.direct(7, ledger_key, by_key) is None


# -- context ------------------------------------------------------------------------------------

OLD = CONFIG.team_key("APTA_CHICAGO", "Lakeview", "Chicago 22")
OLD_ROW = {"team_name": "Lakeview - 22", "team_alias": "LV22"}


def test_g4_context_maps_a_renamed_club_in_the_same_league_and_series():
    candidates = [team(201, "APTA_CHICAGO", "Lakeview CC", "Series 22"),
                  team(202, "APTA_CHICAGO", "Lakeview CC", "Chicago 23"),  # another series
                  team(203, "NSTF", "Lakeview CC", "Series 22")]  # another league
    assert strategies.context(OLD_ROW, OLD, candidates, CONFIG) == 201


def test_g4_context_maps_by_alias_when_the_club_name_changed_beyond_recognition():
    candidates = [team(201, "APTA_CHICAGO", "Shore Acres", "Chicago 22", name="Shore Acres - 22", alias="LV22")]
    assert strategies.context(OLD_ROW, OLD, candidates, CONFIG) == 201


@pytest.mark.parametrize("candidates", [
    [],
    # two clubs match loosely: ambiguous, and no fall-back to names
    [team(201, "APTA_CHICAGO", "Lakeview CC", "Chicago 22", alias="LV22"),
     team(202, "APTA_CHICAGO", "Lakeview Tennis Club", "Chicago 22")],
    # the same club, but in another series or league: not the old team
    [team(203, "APTA_CHICAGO", "Lakeview CC", "Chicago 21"), team(204, "CNSWPL", "Lakeview", "Series 22")],
    # a name match in another series
    [team(205, "APTA_CHICAGO", "Other", "Chicago 21", name="Lakeview - 22")],
    # two teams carry the alias
    [team(206, "APTA_CHICAGO", "A", "Chicago 22", alias="LV22"), team(207, "APTA_CHICAGO", "B", "Chicago 22",
                                                                         alias="lv22")],
])
def test_g4_context_refuses(candidates):
    assert strategies.context(OLD_ROW, OLD, candidates, CONFIG) is None


def test_g4_context_without_a_known_old_key_refuses():
    assert strategies.context(OLD_ROW, None, [team(1, "APTA_CHICAGO", "Lakeview", "Chicago 22")], CONFIG) is None


def test_g4_series_context_unique_canonical_name_only():
    assert strategies.series_context("Chicago 22", {1: "Series 22", 2: "Series 23"}, CONFIG) == 1
    assert strategies.series_context("S2B", {1: "Series 2B", 2: "Series 2A"}, CONFIG) == 1
    assert strategies.series_context("Chicago 1", {1: "Series 1", 2: "Division 1"}, CONFIG) is None
    assert strategies.series_context("Chicago 9", {1: "Series 1"}, CONFIG) is None
    assert strategies.series_context(None, {1: "Series 1"}, CONFIG) is None


# -- names in rows --------------------------------------------------------------------------------

INDEX = strategies.name_index([(1, "Lakeview - 22", None), (2, "Lakeview - 2", "LV2"), (3, "Oak", None),
                               (4, "Oak Park - 3", None), (5, "Twin 1", None), (6, "twin  1", None)])


@pytest.mark.parametrize("text, expected", [
    ("Drills for Lakeview - 22", 1),
    ("Lakeview - 22 Practice", 1),
    ("lakeview  -  22.", 1),  # case, spacing and a full stop do not matter
    ("Lakeview - 2 vs Lakeview - 22", None),  # two teams named
    ("Drills for Oak Park - 3", 4),  # "Oak" inside a longer name does not count
    ("Drills for Oak", 3),
    ("LV2 warm-up", 2),  # an alias
    ("Twin 1 practice", None),  # two teams share the name
    ("Lakeview - 222", None),  # word-bounded
    ("", None),
    (None, None),
])
def test_g4_named_team(text, expected):
    assert strategies.named_team(text, INDEX) == expected


# -- series references and content ------------------------------------------------------------------

@pytest.mark.parametrize("text, refs", [
    ("Chicago 22 practice on Tuesday?", {"22"}),
    ("Series 22: the lineup is posted", {"22"}),
    ("Division 22 playoffs", {"22"}),
    ("Div 4 match", {"4"}),
    ("S22 lineup", {"22"}),
    ("S2B and Series 2A", {"2b", "2a"}),
    ("Series 11 SW is on", {"11 sw"}),
    ("Series A final", {"a"}),
    ("Jan 22 practice", set()),  # a date is not a series
    ("Court 22 is booked", set()),
    ("the series is tied", set()),  # a word after "series" is not a letter series
    ("see you at 22", set()),
    ("Chicago 22nd street", set()),  # word-bounded
    ("Mass22", set()),
    (None, set()),
])
def test_g4_series_references(text, refs):
    assert strategies.series_references(text, CONFIG) == refs


MINE = [team(10, "APTA_CHICAGO", "Lakeview", "Chicago 22"), team(13, "APTA_CHICAGO", "Lakeview", "Chicago 3")]


def test_g4_content_maps_the_authors_one_team_in_the_named_series():
    assert strategies.content("Chicago 22 practice?", MINE, CONFIG) == 10
    assert strategies.content("S3 lineup", MINE, CONFIG) == 13


@pytest.mark.parametrize("text, teams", [
    ("Chicago 22 practice?", []),  # no known teams of the author
    ("Chicago 23 practice?", MINE),  # no team of the author in that series
    ("Practice on Tuesday?", MINE),  # no series named
    ("Jan 22 practice", MINE),  # a date
    ("Series 22 and Series 3 together", MINE),  # two of the author's teams named
    ("Series 3 practice", MINE + [team(12, "CNSWPL", "Lakeview", "Series 3")]),  # two teams in series 3
])
def test_g4_content_refuses(text, teams):
    assert strategies.content(text, teams, CONFIG) is None


# -- the row-level strategies on a small database ----------------------------------------------------

SETUP = """
INSERT INTO leagues (id, league_id, league_name) VALUES (1, 'APTA_CHICAGO', 'APTA'), (2, 'CNSWPL', 'CNSWPL');
INSERT INTO clubs (id, name) VALUES (1, 'Lakeview'), (2, 'Oakridge');
INSERT INTO series (id, name, display_name) VALUES (1, 'Chicago 22', 'Chicago 22'), (2, 'Series 3', 'Series 3'),
    (3, 'Chicago 3', 'Chicago 3');
INSERT INTO teams (id, club_id, series_id, league_id, team_name, display_name) VALUES
    (10, 1, 1, 1, 'Lakeview - 22', 'Lakeview - 22'), (11, 2, 1, 1, 'Oakridge - 22', 'Oakridge - 22'),
    (12, 1, 2, 2, 'Lakeview 3', 'Lakeview 3'), (13, 1, 3, 1, 'Lakeview - 3', 'Lakeview - 3');
INSERT INTO players (id, tenniscores_player_id, league_id, club_id, series_id, team_id) VALUES
    (1, 'p1', 1, 1, 1, 10), (2, 'p2', 2, 1, 2, 12), (3, 'p3', 1, 1, 3, 13);
INSERT INTO users (id, email, team_id) VALUES (1, 'u1@x', 10), (2, 'u2@x', NULL), (3, 'u3@x', 10),
    (4, 'u4@x', 10), (5, 'u5@x', NULL), (6, 'u6@x', 500);
INSERT INTO user_player_associations VALUES (2, 'p2'), (3, 'p3'), (4, 'p2'), (4, 'p3');
SET session_replication_role = replica;
INSERT INTO polls (id, team_id, created_by, question) VALUES
    (1, 500, 1, 'Chicago 22 practice?'),   -- u1: own team 10 in series 22
    (2, 500, 2, 'Series 3 lineup'),        -- u2: no team of their own, player on 12
    (3, 500, 3, 'S3 practice'),            -- u3: teams 10 (22) and 13 (3): 13
    (4, 500, 3, 'Series 22 practice'),     -- u3: 10
    (5, 500, 4, 'Series 3?'),              -- u4: 12 and 13 are both in series 3: refused
    (6, 500, 4, 'Chicago 22 drills'),      -- u4: 10
    (7, 500, 1, 'Jan 22 practice'),        -- a date: refused
    (8, 500, 5, 'Series 22 social'),       -- u5 has no team at all: refused
    (9, 10, 1, 'Chicago 22 social'),       -- not stale: not looked at
    (10, 500, 6, 'Series 22 again');       -- u6's own team is the stale 500 itself: refused
INSERT INTO activity_log (id, user_id, team_id, details) VALUES
    (1, 1, 600, '{"team_name": "Lakeview - 22"}'), (2, 1, 600, '{"team_name": "Lakeview - 22"}'),
    (3, 1, 601, '{"team_name": "Lakeview - 22"}'), (4, 1, 601, '{"team_name": "Oakridge - 22"}'),
    (5, 1, 602, '{"team_name": "Nobody - 9"}');
INSERT INTO videos (id, team_id, title) VALUES (1, 600, 'Drills for Lakeview - 22'), (2, 603, 'Lakeview 3 serves');
INSERT INTO practice_times (id, team_id, league_id, day_of_week) VALUES
    (1, 10, 70, 'Monday'), (2, 13, 70, 'Tuesday'), (3, 12, 71, 'Monday'), (4, 10, 71, 'Friday'),
    (5, 900, 72, 'Monday');
INSERT INTO player_availability (id, user_id, series_id, match_date) VALUES
    (1, 1, 80, '2025-10-01'), (2, 3, 80, '2025-10-02'), (3, 2, 81, '2025-10-03');
SET session_replication_role = DEFAULT;
"""


@pytest.fixture
def small(conn):
    with conn.cursor() as cur:
        cur.execute(SETUP)
    conn.commit()
    catalog = read_catalog(conn, CONFIG)
    keys = current_keys(conn, CONFIG)
    cur = conn.cursor()
    yield cur, catalog, keys
    cur.close()
    conn.rollback()


def _team_now(keys):
    return lambda t: t if t in keys["teams"] else None


def test_g4_content_on_rows_uses_the_authors_own_team_and_their_players_teams(small):
    cur, catalog, keys = small
    found = content_matches(cur, CONFIG, catalog, None, {500}, keys["teams"], _team_now(keys))
    assert {(t, pk): new for (t, pk, _c), (_old, new) in found.items()} == {
        ("polls", '{"id": 1}'): 10, ("polls", '{"id": 2}'): 12, ("polls", '{"id": 3}'): 13,
        ("polls", '{"id": 4}'): 10, ("polls", '{"id": 6}'): 10,
    }
    assert {old for old, _new in found.values()} == {500}


def test_g4_names_in_rows_need_unanimous_rows(small):
    cur, catalog, keys = small
    cur.execute("SELECT id, team_name, team_alias FROM teams")
    found = names_in_rows(cur, CONFIG, catalog, None, {600, 601, 602, 603}, cur.fetchall())
    # 600: two activity rows and a video all name "Lakeview - 22"; 601: its rows disagree;
    # 602: names no team; 603: "Lakeview 3" is team 12's name, word for word
    assert found == {600: 10, 603: 12}


def test_g4_parents_follow_the_teams_of_their_own_rows(small):
    cur, catalog, keys = small
    leagues = parents_from_teams(cur, CONFIG, catalog, None, "leagues", {70, 71, 72}, _team_now(keys))
    # 70: practices of teams 10 and 13, both APTA; 71: teams 12 (CNSWPL) and 10 (APTA): refused;
    # 72: a practice of an unknown team: no evidence
    assert leagues == {70: 1}
    series = parents_from_teams(cur, CONFIG, catalog, None, "series", {80, 81}, _team_now(keys))
    # availability has no team column: its user's team decides (u1 and u3 on team 10; u2 has none)
    assert series == {80: 1}
