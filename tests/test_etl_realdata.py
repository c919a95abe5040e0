"""The legacy ETL on the three real scrapes (../shared/realdata), with no special cases.

Expected numbers are computed here from the JSON itself, with a deliberately crude notion
of "the same team name" (letters and digits only, case-folded) that shares no code with
the ETL's parser; the literal numbers are asserted as well so a change is visible.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from pathlib import Path

import psycopg2
import pytest

from rally_etl import ComprehensiveETL
from rally_etl.names import team_key

pytestmark = pytest.mark.realdata

SNAPSHOTS = ("2025-08-01", "2025-08-10", "2025-08-27")
#: Teams per league in series_stats (also in the README of realdata).
TEAMS = {
    "2025-08-01": {"APTA_CHICAGO": 537, "NSTF": 28},
    "2025-08-10": {"APTA_CHICAGO": 537, "CNSWPL": 278, "NSTF": 28},
    "2025-08-27": {"APTA_CHICAGO": 537, "CNSWPL": 278, "NSTF": 28},
}
#: Players whose team name matches no team of their league. In 2025-08-27 the scraper wrote
#: the players of APTA's south-west teams without "SW" ("Hinsdale GC 11" in "Series 11" for
#: the team "Hinsdale GC - 11 SW"), so 545 players name a team that does not exist.
PLAYERS_WITHOUT_TEAM = {"2025-08-01": 0, "2025-08-10": 0, "2025-08-27": 545}


def crude(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def load(realdata_dir: Path, snapshot: str) -> dict[str, list[dict]]:
    out = {}
    for kind in ("players", "series_stats", "schedules", "match_history"):
        with gzip.open(realdata_dir / snapshot / f"{kind}.json.gz", "rt", encoding="utf-8") as fh:
            out[kind] = json.load(fh)
    return out


def expected(data: dict[str, list[dict]]) -> dict:
    """What the import of one scrape must produce, from the JSON alone."""
    stats_teams = defaultdict(set)
    for r in data["series_stats"]:
        stats_teams[r["league_id"]].add(r["team"])
    crude_stats = {(lg, crude(t)) for lg, teams in stats_teams.items() for t in teams}
    # every schedule team is a series_stats team, possibly with " - Series N" or " - 99"
    # appended, except the BYE placeholder " - 9 SW" that names no club
    extra = set()
    for r in data["schedules"]:
        for name in (r["home_team"], r["away_team"]):
            c = crude(name)
            if re.fullmatch(r"\d+sw", c):
                continue
            if not any((r["League"], c[:n]) in crude_stats for n in range(1, len(c) + 1)):
                extra.add((r["League"], name))
    leagues = {r["League"] for r in data["players"]} | set(stats_teams)
    leagues |= {r["League"] for r in data["schedules"]}
    player_keys = {
        (r["Player ID"], r["League"], r.get("Series Mapping ID") or r.get("Team"), r["Series"])
        for r in data["players"]
    }
    without_team = sum(
        (r["League"], crude(r.get("Series Mapping ID") or r.get("Team"))) not in crude_stats
        for r in data["players"]
    )
    return {
        "teams": {lg: len(t) for lg, t in stats_teams.items()},
        "schedule_only_teams": extra,
        "leagues": len(leagues),
        "players": len(player_keys),
        "players_without_team": without_team,
        "series_stats": len(data["series_stats"]),
        "schedule": len(data["schedules"]),
    }


def actual(dsn: str) -> dict:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT l.league_id, count(*) FROM teams t JOIN leagues l ON l.id = t.league_id "
                "GROUP BY 1"
            )
            teams = dict(cur.fetchall())
            out = {"teams": teams}
            for table in ("leagues", "players", "series_stats", "schedule", "match_scores"):
                cur.execute(f"SELECT count(*) FROM {table}")
                out[table] = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM players WHERE team_id IS NULL")
            out["players_without_team"] = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM series_stats WHERE team_id IS NULL")
            out["stats_without_team"] = cur.fetchone()[0]
            cur.execute("SELECT id FROM teams")
            out["team_ids"] = {row[0] for row in cur.fetchall()}
        return out
    finally:
        conn.close()


def check(dsn: str, data: dict, snapshot: str) -> dict:
    want = expected(data)
    got = actual(dsn)
    assert want["teams"] == TEAMS[snapshot]
    assert want["schedule_only_teams"] == set()
    assert got["teams"] == want["teams"]
    assert got["leagues"] == want["leagues"] == len(TEAMS[snapshot])
    assert got["players"] == want["players"] == len(data["players"])
    assert got["players_without_team"] == want["players_without_team"]
    assert want["players_without_team"] == PLAYERS_WITHOUT_TEAM[snapshot]
    assert got["series_stats"] == want["series_stats"] and got["stats_without_team"] == 0
    assert got["schedule"] == want["schedule"]
    assert got["match_scores"] == 0  # the stored match_history files are empty
    return got


@pytest.mark.parametrize("snapshot", SNAPSHOTS)
def test_each_real_scrape_loads_into_a_fresh_database(db_dsn, realdata_dir, snapshot):
    etl = ComprehensiveETL(realdata_dir / snapshot, db_dsn)
    assert etl.run() is True, etl.last_error
    assert etl.stats["teams_failed"] == 0 and etl.stats["teams_skipped"] == 0
    check(db_dsn, load(realdata_dir, snapshot), snapshot)


def test_the_three_scrapes_load_in_sequence_into_one_database(db_dsn, realdata_dir):
    previous_ids: set[int] = set()
    for snapshot in SNAPSHOTS:
        etl = ComprehensiveETL(realdata_dir / snapshot, db_dsn)
        assert etl.run() is True, (snapshot, etl.last_error)
        got = check(db_dsn, load(realdata_dir, snapshot), snapshot)
        # the legacy clear: nothing of the previous scrape is left, every team id is new
        assert not got["team_ids"] & previous_ids
        previous_ids = got["team_ids"]


def test_parse_keys_are_collision_free_and_stable_across_the_real_scrapes(realdata_dir):
    keys = {}
    for snapshot in SNAPSHOTS:
        stats = load(realdata_dir, snapshot)["series_stats"]
        by_key = defaultdict(set)
        for r in stats:
            by_key[team_key(r["league_id"], r["team"], r["series"])].add(r["team"])
        distinct_teams = {(r["league_id"], r["team"]) for r in stats}
        # no collisions: as many keys as teams, each key one team
        assert len(by_key) == len(distinct_teams) == sum(TEAMS[snapshot].values())
        assert all(len(names) == 1 for names in by_key.values())
        keys[snapshot] = {k: names.pop() for k, names in by_key.items()}

    for old, new, common in (
        ("2025-08-01", "2025-08-10", 565),  # 08-10 adds the 278 CNSWPL teams
        ("2025-08-10", "2025-08-27", 843),
    ):
        shared = keys[old].keys() & keys[new].keys()
        assert len(shared) == common
        # a key in both scrapes names the same team, however it was written
        # ("Glenbrook RC - 1" in "Chicago 1" then "Glenbrook RC 1" in "Series 1")
        assert all(crude(keys[old][k]) == crude(keys[new][k]) for k in shared)
        # and the same team never gets two keys
        by_crude_old = {(k[0], crude(n)): k for k, n in keys[old].items()}
        by_crude_new = {(k[0], crude(n)): k for k, n in keys[new].items()}
        for name in by_crude_old.keys() & by_crude_new.keys():
            assert by_crude_old[name] == by_crude_new[name]
        assert len(by_crude_old.keys() & by_crude_new.keys()) == common
    respelled = [
        k
        for k in keys["2025-08-10"].keys() & keys["2025-08-27"].keys()
        if keys["2025-08-10"][k] != keys["2025-08-27"][k]
    ]
    # every APTA team but the south-west ones (still "Club - N SW") and the special
    # "Chicago 99" and "Legends" teams changed spelling between 08-10 and 08-27
    assert len(respelled) == 397  # 537 - 127 south-west - 12 "99" - 1 "Legends"
