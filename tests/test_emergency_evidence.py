"""Emergency repair (G1, G2, G4, G8) on a database the legacy ETL damaged, with no snapshot and
no ledger: the evidence comes from the schema's own relationships (issue 13).

The database is written by hand here, not by ``rally_etl.generate`` or ``rally_etl.activity``:
71 teams in three leagues, four players each, a captain per team (a user linked through
``user_player_associations`` to the team's first player; six captains also to a player of a
team in another league), and per team a poll whose question names the team, a captain
message, a practice time, a saved lineup, a video, the captain's context, activity and
availability, and lineup escrows between neighbouring teams. The legacy ETL then re-imports
the next scrape unprotected, so every league, club, series and team gets a new id; the
players keep their ``tenniscores_player_id``.

The test judges meaning with its own SQL: a reference is back when the natural key of what it
points at (support.user_ref_keys) is the key it had before the damage.
"""

from __future__ import annotations

import json
import random

import pytest
from psycopg2 import sql
from psycopg2.extras import Json

import rally_etl
from bulletproof_etl.health.diagnose import diagnose
from bulletproof_etl.health.evidence_paths import RowEvidence
from bulletproof_etl.health.evidence_votes import decide
from bulletproof_etl.integration.repair import emergency_repair
from support import USER_TABLES, user_ref_keys

CLUBS = ["Alderbrook", "Birchmont", "Cobble Creek", "Dunmore", "Everly Park", "Fernhill", "Galloway",
         "Hartwell", "Ivy Bend"]
LEAGUES = [  # code, series names, team name of (club, series suffix)
    ("APTA_CHICAGO", ["Chicago 4", "Chicago 7", "Chicago 12"], lambda c, s: f"{c} - {s}"),
    ("NSTF", ["Series 2B", "Series 3A", "Series 5"], lambda c, s: f"{c} S{s}"),
    ("CNSWPL", ["Division 1", "Division 3", "Division 6"], lambda c, s: f"{c} {s}"),
]
FIRST = ["Avery", "Blair", "Casey", "Devon", "Emery", "Finley", "Harper", "Jordan", "Kendall", "Logan"]
LAST = ["Abara", "Bellweather", "Castellano", "Dimitriou", "Eckhart", "Falkner", "Grisham", "Holloway",
        "Ishikawa", "Jablonski", "Kowalczyk", "Lindqvist", "Marchetti"]
MULTI = 6  # captains of the first six teams also play for a team of the next league


def scrape_teams() -> list:
    """71 teams: every club in every series of every league, but one per series and the last."""
    teams = []
    for li, (code, series_names, name_of) in enumerate(LEAGUES):
        for si, series in enumerate(series_names):
            suffix = series.split()[-1]
            for ci, club in enumerate(CLUBS):
                if (li * 3 + si + ci * 2) % 9 == 0:
                    continue
                teams.append({"league": code, "series": series, "club": club, "name": name_of(club, suffix)})
    return teams[:71]


def players_of(index: int, team: dict) -> list:
    return [{"League": team["league"], "Series": team["series"], "Series Mapping ID": team["name"],
             "Club": team["club"], "Player ID": f"tp-{index:03d}-{k}",
             "First Name": FIRST[(index + k) % len(FIRST)], "Last Name": LAST[(index * 4 + k) % len(LAST)],
             "PTI": str(30 + k), "Wins": "2", "Losses": "1", "Captain": "C" if k == 0 else ""}
            for k in range(4)]


def write_scrape(path, teams: list, *, gone=frozenset(), shuffle_players: int | None = None) -> str:
    """The three JSON files of a scrape of ``teams`` (indexes in ``gone`` left out)."""
    path.mkdir(parents=True, exist_ok=True)
    kept = [(i, t) for i, t in enumerate(teams) if i not in gone]
    players = [p for i, t in kept for p in players_of(i, t)]
    if shuffle_players is not None:
        random.Random(shuffle_players).shuffle(players)
    stats = [{"series": t["series"], "team": t["name"], "league_id": t["league"], "points": 10 + i % 7,
              "matches": {"won": 3, "lost": 2, "tied": 0, "percentage": "60%"}} for i, t in kept]
    schedules = [{"date": "10/14/2025", "time": "07:00 pm", "home_team": a["name"], "away_team": b["name"],
                  "location": a["club"], "series": a["series"], "League": a["league"]}
                 for (_i, a), (_j, b) in zip(kept, kept[1:], strict=False) if a["series"] == b["series"]
                 and a["league"] == b["league"]]
    for name, data in (("players", players), ("series_stats", stats), ("schedules", schedules)):
        (path / f"{name}.json").write_text(json.dumps(data, indent=1))
    return str(path)


def write_user_data(conn, teams: list) -> dict:
    """The app's users and their data, by hand; returns ``{team index: team id}``."""
    with conn.cursor() as cur:
        cur.execute("SELECT t.id, t.team_name, l.league_id, t.league_id, t.series_id FROM teams t "
                    "JOIN leagues l ON l.id = t.league_id")
        by_name = {(code, name): (tid, league, series) for tid, name, code, league, series in cur.fetchall()}
        ids = {}
        for i, t in enumerate(teams):
            tid, league, series = by_name[(t["league"], t["name"])]
            ids[i] = tid
            first, last = FIRST[i % len(FIRST)], LAST[(i * 4) % len(LAST)]
            cur.execute("INSERT INTO users (email, first_name, last_name, league_context, team_id) "
                        "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                        (f"captain{i:03d}@example.org", first, last, league, tid))
            user = cur.fetchone()[0]
            cur.execute("INSERT INTO user_player_associations VALUES (%s, %s)", (user, f"tp-{i:03d}-0"))
            if i < MULTI:  # also plays for a team of the next league
                cur.execute("INSERT INTO user_player_associations VALUES (%s, %s)", (user, f"tp-{i + 31:03d}-1"))
            cur.execute("INSERT INTO polls (team_id, created_by, question) VALUES (%s, %s, %s) RETURNING id",
                        (tid, user, f"Who can play on Saturday for {t['name']}?"))
            poll = cur.fetchone()[0]
            cur.execute("INSERT INTO poll_choices (poll_id, choice_text) VALUES (%s, 'Yes'), (%s, 'No')",
                        (poll, poll))
            message = (f"{t['name']}: the lineup for this week is posted" if i % 2 == 0
                       else "Reminder: warm up at half past six sharp")
            cur.execute("INSERT INTO captain_messages (team_id, captain_user_id, message) VALUES (%s, %s, %s)",
                        (tid, user, message))
            cur.execute("INSERT INTO practice_times (team_id, league_id, day_of_week, start_time, end_time, location) "
                        "VALUES (%s, %s, %s, '18:00', '19:30', 'Court 2')",
                        (tid, league, ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"][i % 5]))
            cur.execute("INSERT INTO saved_lineups (user_id, team_id, lineup_name, lineup_data) VALUES (%s, %s, %s, %s)",
                        (user, tid, f"{t['name']} doubles",
                         Json({"pairs": [[f"tp-{i:03d}-0", f"tp-{i:03d}-1"], [f"tp-{i:03d}-2", f"tp-{i:03d}-3"]]})))
            title = f"{t['name']} match highlights" if i % 3 == 0 else "Serve and volley drills"
            cur.execute("INSERT INTO videos (team_id, title, url) VALUES (%s, %s, %s)",
                        (tid, title, f"https://video.example.org/{i}"))
            cur.execute("INSERT INTO user_contexts VALUES (%s, %s, %s, %s)", (user, league, tid, tid))
            cur.execute("INSERT INTO activity_log (user_id, team_id, action_type, details) VALUES "
                        "(%s, %s, 'view_lineup', %s), (%s, %s, 'poll_created', %s)",
                        (user, tid, Json({"page": "lineup"}), user, tid, Json({"question": poll})))
            for day in (14, 21):
                cur.execute("INSERT INTO player_availability (user_id, player_name, series_id, match_date, "
                            "availability_status) VALUES (%s, %s, %s, %s, 1)",
                            (user, f"{first} {last}", series, f"2025-10-{day}"))
        for i in range(0, len(teams) - 1, 2):
            if teams[i]["series"] == teams[i + 1]["series"]:
                cur.execute("INSERT INTO lineup_escrow (initiator_team_id, recipient_team_id, initiator_user_id, "
                            "status) SELECT %s, %s, id, 'pending' FROM users WHERE email = %s",
                            (ids[i], ids[i + 1], f"captain{i:03d}@example.org"))
    conn.commit()
    return ids


def primary_keys(conn) -> dict:
    """``{table: set of primary keys as text}`` of every user table."""
    out = {}
    with conn.cursor() as cur:
        for table in USER_TABLES:
            cur.execute(sql.SQL("SELECT to_jsonb(t) FROM {} t").format(sql.Identifier(table)))
            out[table] = {json.dumps(r, sort_keys=True, default=str) if table == "user_player_associations"
                          else str(r.get("user_id") if table == "user_contexts" else r["id"])
                          for (r,) in cur.fetchall()}
    conn.rollback()
    return out


def figures(conn, before: dict, run_id: int) -> dict:
    """Per reference column: back on its entity / on another / quarantined / unchanged."""
    after = user_ref_keys(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT table_name, pk, column_name, reason FROM bulletproof.quarantine WHERE run_id = %s",
                    (run_id,))
        quarantined = {(t, next(iter(pk.values())), c): why for t, pk, c, why in cur.fetchall()}
    conn.rollback()
    out: dict = {}
    for ref, key in before.items():
        if key is None or ref[0] == "schedule":
            continue
        col = f"{ref[0]}.{ref[2]}"
        f = out.setdefault(col, {"back": 0, "wrong": 0, "quarantined": 0})
        if ref in quarantined:
            f["quarantined"] += 1
        elif after[ref] == key:
            f["back"] += 1
        else:
            f["wrong"] += 1
    return out, quarantined


@pytest.mark.parametrize("variant", ["reordered", "gone"])
def test_g4_emergency_repair_puts_rows_back_by_the_schemas_own_evidence(tmp_path, db_dsn, conn, variant):
    teams = scrape_teams()
    assert len(teams) == 71
    assert rally_etl.ComprehensiveETL(write_scrape(tmp_path / "s1", teams), db_dsn).run()
    write_user_data(conn, teams)
    before = user_ref_keys(conn)
    rows_before = primary_keys(conn)
    gone = frozenset(range(2, len(teams), 5)) if variant == "gone" else frozenset()  # 14 of 71 teams
    s2 = write_scrape(tmp_path / "s2", teams, gone=gone, shuffle_players=13)
    assert rally_etl.ComprehensiveETL(s2, db_dsn).run()  # unprotected: every id is new
    damaged = user_ref_keys(conn)
    assert {k for r, k in damaged.items() if before[r] is not None and r[0] != "schedule"} == {"ORPHAN"}

    report = emergency_repair(conn)  # what emergency_repair_orphans runs, with its whole report
    assert report.outcome != "rolled_back", report.to_dict()
    conn.commit()
    run_id = report.run_id
    result, quarantined = figures(conn, before, run_id)
    print(variant, json.dumps(result, indent=1))

    # G2: nothing deleted, nothing added
    assert primary_keys(conn) == rows_before
    # G1: nothing points at nothing
    assert "ORPHAN" not in user_ref_keys(conn).values()
    # G4: nothing on another entity; every quarantine entry has its reason
    assert {c: f["wrong"] for c, f in result.items() if f["wrong"]} == {}
    assert all("no strategy maps" in why for why in quarantined.values())
    team_refs = [f for c, f in result.items() if c.split(".")[1] in ("team_id", "active_team_id",
                                                                    "initiator_team_id", "recipient_team_id")]
    back = sum(f["back"] for f in team_refs)
    total = sum(sum(f.values()) for f in team_refs)
    # the leagues and the series are all mapped: every league and series reference is back
    parents = {c: f for c, f in result.items() if c in ("users.league_context", "practice_times.league_id",
                                                        "user_contexts.league_id", "player_availability.series_id")}
    assert all(f["quarantined"] == 0 and f["wrong"] == 0 for f in parents.values()), parents
    assert [r["decision"] for r in report.evidence if r["entity"] in ("leagues", "series")] == \
        ["mapped"] * sum(1 for r in report.evidence if r["entity"] in ("leagues", "series"))
    if variant == "reordered":
        assert back == total  # every team is still there: every reference is back
        assert sum(f["quarantined"] for f in result.values()) == 0
    else:
        # a reference to a team that is gone cannot be back: it is quarantined with its reason
        gone_refs = sum(1 for r, k in before.items() if k is not None and r[0] != "schedule"
                        and any(k == _key(teams[i]) for i in gone))
        assert total - back == gone_refs
        assert sum(f["quarantined"] for f in result.values()) == gone_refs
        assert all("evidence" in why or "rows" in why for why in quarantined.values())
    # every mapping recorded with its evidence: path and rows agreeing
    mapped = [r for r in report.evidence if r["decision"] == "mapped"]
    assert mapped and all(r["rows_agreeing"] >= 2 and r["votes"][str(r["new_id"])]["paths"] for r in mapped)


def _key(team: dict) -> tuple:
    from rally_etl.names import canonical_series

    return (team["league"], team["club"].casefold(), canonical_series(team["league"], team["series"]).casefold())


def test_diagnose_shows_the_candidates_and_votes_of_each_stale_id(tmp_path, db_dsn, conn):
    teams = scrape_teams()
    assert rally_etl.ComprehensiveETL(write_scrape(tmp_path / "s1", teams), db_dsn).run()
    write_user_data(conn, teams)
    assert rally_etl.ComprehensiveETL(write_scrape(tmp_path / "s2", teams, shuffle_players=5), db_dsn).run()
    report = diagnose(conn)
    stale = {(s["entity"], s["old_id"]): s for s in report.stale_ids}
    assert sum(1 for e, _ in stale if e == "teams") == 71
    assert sum(1 for e, _ in stale if e == "leagues") == 3
    assert sum(1 for e, _ in stale if e == "series") == 9
    assert all(s["decision"] == "mapped" and s["candidates"] for s in stale.values())
    assert "candidates" in report.to_json()


# -- the votes alone -------------------------------------------------------------------------------

def _rows(*specs):
    out = []
    for n, (paths, filters) in enumerate(specs):
        out.append(RowEvidence("polls", json.dumps({"id": n}), "team_id", 7,
                               {p: frozenset(s) for p, s in paths.items()},
                               {f: frozenset(s) for f, s in filters.items()}))
    return out


def test_votes_map_a_clear_majority_and_record_the_paths():
    v = decide("teams", 7, _rows(({"author": {1}}, {}), ({"author": {1}, "text": {1}}, {}), ({"text": {2}}, {}),
                                  ({}, {})))
    assert (v.decision, v.new, v.rows, v.with_evidence) == ("mapped", 1, 4, 3)
    assert v.candidates == {1: {"rows": 2, "paths": {"author": 2, "text": 1}}, 2: {"rows": 1, "paths": {"text": 1}}}


def test_votes_refuse_when_strong_evidence_disagrees_and_map_single_rows_by_two_paths():
    v = decide("teams", 7, _rows(({"author": {1}}, {}), ({"author": {1}}, {}), ({"text": {2}}, {}),
                                  ({"author": {2}, "text": {2}}, {})))
    assert (v.decision, v.new) == ("per_row", None)
    assert list(v.row_map.values()) == [2]
    assert "name different teams" in v.reason


def test_votes_need_minimum_support_and_majority():
    assert decide("teams", 7, _rows(({"author": {1}}, {}))).decision == "refused"
    v = decide("teams", 7, _rows(({"author": {1}}, {}), ({"author": {1}}, {}), ({"author": {1}, "text": {3}}, {}),
                                  ({"author": {1}, "text": {4}}, {})))
    assert (v.decision, v.conflicts) == ("refused", 2)  # 2 of 4 is no majority
    assert "no majority" in v.reason


def test_votes_never_pick_the_survivor_of_a_user_whose_other_team_is_gone():
    # the author plays for team 1 and for a team that is gone (None): alone, that path names nobody
    v = decide("teams", 7, _rows(({"author": {1, None}}, {}), ({"author": {1, None}}, {}), ({"author": {1, None}}, {})))
    assert (v.decision, v.ambiguous) == ("refused", 3)
    v = decide("teams", 7, _rows(({"author": {1, None}, "text": {1}}, {}), ({"author": {1, None}}, {}),
                                  ({"author": {1, None}, "text": {1}}, {})))
    assert (v.decision, v.new) == ("mapped", 1)


def test_votes_narrow_by_filters_and_join_ambiguous_rows():
    v = decide("teams", 7, _rows(({"author": {1, 2}}, {"text_series": {2, 5}}), ({"author": {1, 2}}, {"text_club": {2}})))
    assert (v.decision, v.new) == ("mapped", 2)
    v = decide("teams", 7, _rows(({"author": {1, 2}}, {}), ({"author": {2, 3}}, {})))
    assert (v.decision, v.new, v.candidates[2]["paths"]) == ("mapped", 2, {"together": 2})
