"""Small deterministic seasons for the modelled ETL, in the scrapers' record format.

Season 1: three leagues, 58 teams (APTA_CHICAGO "Club - 10" in "Chicago 10", "Chicago 22",
"Chicago 23"; NSTF "Club S2A" and "Club S2B"; CNSWPL "Club 1" in "Division 1" to "Division 3"),
three players per team, one series_stats record per team and a round robin per series.

Season 2 (``season=2``) changes what a real next scrape changes:

- the club ``RESPELLED_CLUB`` is written in another case (``RESPELLED_AS``) everywhere;
- APTA "Chicago 10" is written "Division 10" (series_stats and players);
- the three ``DROPPED`` teams are gone; ``NEW_TEAM`` plays at home and has stats;
  ``AWAY_ONLY_TEAM`` only plays away and has no stats (the ETL creates it late from the schedule).
"""

from __future__ import annotations

import hashlib
import json
from itertools import combinations
from pathlib import Path

CLUBS = ("Lakeview", "Glen View", "Hinsdale", "Winnetka", "Tennaqua", "Birchwood", "Midtown", "Sunset Ridge")
RESPELLED_CLUB, RESPELLED_AS = "Glen View", "Glen view"
#: league -> (series as series_stats writes it, how team names end, clubs in it)
LEAGUES = {
    "APTA_CHICAGO": [("Chicago 10", " - 10", 7), ("Chicago 22", " - 22", 7), ("Chicago 23", " - 23", 7)],
    "NSTF": [("Series 2A", " S2A", 8), ("Series 2B", " S2B", 8)],
    "CNSWPL": [("Division 1", " 1", 7), ("Division 2", " 2", 7), ("Division 3", " 3", 7)],
}
SEASON2_SERIES = {("APTA_CHICAGO", "Chicago 10"): "Division 10"}
DROPPED = (("APTA_CHICAGO", "Midtown - 23"), ("NSTF", "Birchwood S2A"), ("CNSWPL", "Tennaqua 3"))
NEW_TEAM = ("APTA_CHICAGO", "Chicago 22", "Sunset Ridge")
AWAY_ONLY_TEAM = ("CNSWPL", "Division 2", "Sunset Ridge")
TEAMS_SEASON1 = sum(n for series in LEAGUES.values() for _, _, n in series)


def _player_id(*parts: str) -> str:
    return "nndz-" + hashlib.sha1("|".join(parts).encode()).hexdigest()[:10]


def season_teams(season: int = 1) -> list[dict]:
    """``[{league, series, club, team, home}]`` of one season, in a fixed order."""
    teams = []
    for league, series_list in LEAGUES.items():
        for series, ending, n_clubs in series_list:
            clubs = list(CLUBS[:n_clubs])
            if season == 2 and (league, series, NEW_TEAM[2]) == NEW_TEAM:
                clubs.append(NEW_TEAM[2])
            for club in clubs:
                teams.append({"league": league, "series": series, "club": club, "team": club + ending, "home": True})
            if season == 2 and (league, series) == AWAY_ONLY_TEAM[:2]:
                club = AWAY_ONLY_TEAM[2]
                teams.append({"league": league, "series": series, "club": club, "team": club + ending,
                              "home": False})
    if season == 2:
        teams = [t for t in teams if (t["league"], t["team"]) not in DROPPED]
        for t in teams:
            t["series"] = SEASON2_SERIES.get((t["league"], t["series"]), t["series"])
            if t["club"] == RESPELLED_CLUB:
                t["club"], t["team"] = RESPELLED_AS, RESPELLED_AS + t["team"][len(RESPELLED_CLUB):]
    return teams


def build_season(season: int = 1) -> dict:
    """``{"players": [...], "series_stats": [...], "schedules": [...]}``."""
    teams = season_teams(season)
    players, stats, schedules = [], [], []
    for i, t in enumerate(teams):
        for k in range(3):
            # the player id follows the club as first written, so a respelled club keeps its players
            club_id_part = CLUBS[CLUBS.index(t["club"])] if t["club"] in CLUBS else RESPELLED_CLUB
            players.append({
                "League": t["league"], "Series": t["series"], "Series Mapping ID": t["team"], "Club": t["club"],
                "Location ID": t["club"].upper().replace(" ", "_"),
                "Player ID": _player_id(t["league"], club_id_part, t["team"].split(" ")[-1], str(k)),
                "First Name": f"Player{k}", "Last Name": f"T{i}", "PTI": "40.0", "Wins": str(k), "Losses": "1",
                "Win %": "50.0%", "Captain": "C" if k == 0 else "",
            })
        if t["home"]:
            stats.append({"series": t["series"], "team": t["team"], "league_id": t["league"], "points": 10 + i % 7,
                          "matches": {"won": i % 5, "lost": 2, "tied": 0, "percentage": "50.0%"}})
    by_series: dict = {}
    for t in teams:
        by_series.setdefault((t["league"], t["series"]), []).append(t)
    for (league, series), members in by_series.items():
        for n, (a, b) in enumerate(combinations(members, 2)):
            home, away = (a, b) if a["home"] else (b, a)
            schedules.append({"date": f"10/{1 + n % 28:02d}/2025", "time": "06:30 pm", "home_team": home["team"],
                              "away_team": away["team"], "location": home["club"], "series": series,
                              "League": league})
    return {"players": players, "series_stats": stats, "schedules": schedules}


def write_season(data: dict, directory: Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, records in data.items():
        (directory / f"{name}.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    return directory
