"""Team, club and series names as the scrapers write them, and their canonical forms.

A team's natural key is ``(league code, club name, canonical series)``. The scrapers write
the same thing several ways, so both halves of the key are derived here, once.

Canonical series (:func:`canonical_series`): whitespace collapsed, upper-cased, and the
league's prefix word dropped, so that "Chicago 22", "Series 22", "Division 22", "S22" and
"series  22" are all ``"22"``; "Chicago 11 SW" and "Series 11SW" are ``"11 SW"``; NSTF
"Series 2B", "S2B" and "Series 2 b" are ``"2B"``; "Series A", "Series SN" and
"Series Legends" are ``"A"``, ``"SN"`` and ``"LEGENDS"``. Leading zeros are dropped.

Club from a team name (:func:`parse_team_name`), after collapsing whitespace and removing
the " - Series N" / " - Division N" that schedules append:

- APTA_CHICAGO: "Club - 22", "Club - 11 SW" and, in the 2025-08-27 scrape, "Club 22".
  The club may itself contain " - " ("Midtown - Chicago - 10"): only the last part is
  the series. "I"/"II" belong to the club ("Wilmette PD I - 21"), as the league writes it.
- NSTF: "Club S2B"; "Club S1 T2" (a second team of one club in one series); "Club Sunday A";
  a bare "Club" for a team whose name carries no series ("Middlefork"): the series
  then comes from the record.
- CNSWPL: "Club 1"; "Club 1a"/"Club 1b" (two teams of one club in one series); "Club A";
  "Club B(1)" / "Club H (1)" / "Club SN (2)".

The sub-team designator rule: a designator that tells two teams of one club in one series
apart stays in the club name, so distinct teams never share a key. "Wilmette S1 T2" has
club "Wilmette T2"; "Hinsdale PC 1a" has club "Hinsdale PC a"; "Winnetka B(1)" has club
"Winnetka (1)" (with or without the space before the parenthesis). Anything that does not
match a known form is a club of its own name with no series suffix.
"""

from __future__ import annotations

import re
from typing import NamedTuple

APTA = "APTA_CHICAGO"
NSTF = "NSTF"
CNSWPL = "CNSWPL"

_WS = re.compile(r"\s+")
# Words a series name may start with; "ERIES" is a real scraper typo ("Series eries 16").
_PREFIX = re.compile(r"^(?:CHICAGO|SERIES|ERIES|DIVISION|DIV\.?)\s+(?=\S)")
_S_PREFIX = re.compile(r"^S(?=\d)")
_NUM_LETTER = re.compile(r"^0*(\d+)\s*([A-Z]{1,2})?$")

_SCHEDULE_SUFFIX = re.compile(r"\s+-\s+(?:Series|Division)\s+[A-Za-z0-9]+(?:\s+SW)?$", re.I)
_SW = re.compile(r"\s*SW$")
_DASH_NUMBER = re.compile(r"^(?P<club>.+?)\s*-\s*(?P<sfx>\d+(?:\s*SW)?)$", re.I)
_NSTF_S = re.compile(r"^(?P<club>.+?)\s+S(?P<sfx>\d+[A-Za-z]?)(?:\s+(?P<sub>T\d+))?$")
_SUNDAY = re.compile(r"^(?P<club>.+?)\s+Sunday\s+(?P<sfx>[A-Za-z])$", re.I)
_SPACE_NUMBER = re.compile(r"^(?P<club>.+?)\s+(?P<sfx>\d+(?: SW)?)(?P<sub>[a-z])?$")
_LETTER = re.compile(r"^(?P<club>.+?)\s+(?P<sfx>SN|[A-Z])\s*(?:\((?P<sub>\d+)\))?$")
_ONLY_SUFFIX = re.compile(r"^-?\s*(?P<sfx>\d+(?:\s*SW)?|S\d+[A-Za-z]?)$", re.I)
_DASH_WORD = re.compile(r"^(?P<club>.+?)\s+-\s+(?P<sfx>[A-Za-z]+)$")


#: Display name and home page of the leagues the app knows; others use their code.
LEAGUES: dict[str, tuple[str, str]] = {
    APTA: ("APTA Chicago", "https://aptachicago.tenniscores.com"),
    NSTF: ("North Shore Tennis Foundation", "https://nstf.tenniscores.com"),
    CNSWPL: (
        "Chicago North Shore Women's Platform Tennis League",
        "https://cnswpl.tenniscores.com",
    ),
}


class ParsedTeam(NamedTuple):
    """What a team name says: its club (with any sub-team designator) and series suffix."""

    club: str
    series_suffix: str | None
    team_name: str


def collapse(text: str) -> str:
    """Whitespace collapsed to single spaces and stripped."""
    return _WS.sub(" ", text).strip()


def normalize_league_id(code: str) -> str:
    """A league code as stored: "apta chicago " -> "APTA_CHICAGO"."""
    return collapse(code).upper().replace(" ", "_")


def league_info(code: str) -> tuple[str, str | None]:
    """(display name, url) of a league code."""
    name, url = LEAGUES.get(code, (code, None))
    return name, url


def canonical_series(league_code: str | None, series_name: str) -> str:
    """The series a name means in its league, whatever spelling a file used."""
    text = collapse(series_name).upper()
    while True:
        stripped = _PREFIX.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    text = _S_PREFIX.sub("", text)
    match = _NUM_LETTER.match(text)
    if match:
        number, letters = match.group(1), match.group(2)
        if not letters:
            return number
        # APTA's south-west series keep a space ("11 SW"); NSTF's are one token ("2B").
        if letters == "SW" or (league_code == APTA and len(letters) > 1):
            return f"{number} {letters}"
        return f"{number}{letters}"
    return text


def strip_schedule_suffix(team_name: str) -> str:
    """A team name without the " - Series 1" that schedules append; whitespace collapsed."""
    return _SCHEDULE_SUFFIX.sub("", collapse(team_name))


def _same_series(league_code: str | None, suffix: str, series_name: str | None) -> bool:
    if series_name is None:
        return True
    return canonical_series(league_code, suffix) == canonical_series(league_code, series_name)


def _with_sub(club: str, sub: str | None) -> str:
    club = collapse(club)
    return f"{club} {sub}" if sub else club


def parse_team_name(
    league_code: str | None, team_name: str, series_name: str | None = None
) -> ParsedTeam:
    """Club and series suffix of a team name (see the module docstring for the rules).

    ``series_name`` (the series of the record the name came from) is only used to accept a
    suffix that could also be part of a club name ("Legends - Legends", "Glen View D").
    """
    name = strip_schedule_suffix(team_name)
    match = _ONLY_SUFFIX.match(name)
    if match:  # a BYE row of a real schedule: " - 9 SW" names no club at all
        return ParsedTeam("", _SW.sub(" SW", match["sfx"].upper()), name)
    match = _DASH_NUMBER.match(name)
    if match:
        sfx = _SW.sub(" SW", match["sfx"].upper())
        return ParsedTeam(collapse(match["club"]), sfx, name)
    match = _NSTF_S.match(name)
    if match:
        return ParsedTeam(_with_sub(match["club"], match["sub"]), match["sfx"].upper(), name)
    match = _SUNDAY.match(name)
    if match:
        return ParsedTeam(collapse(match["club"]), match["sfx"].upper(), name)
    match = _SPACE_NUMBER.match(name)
    if match:
        return ParsedTeam(_with_sub(match["club"], match["sub"]), match["sfx"], name)
    match = _LETTER.match(name)
    if match and league_code != APTA and _same_series(league_code, match["sfx"], series_name):
        sub = f"({match['sub']})" if match["sub"] else None
        return ParsedTeam(_with_sub(match["club"], sub), match["sfx"], name)
    match = _DASH_WORD.match(name)
    if match and series_name is not None and _same_series(league_code, match["sfx"], series_name):
        return ParsedTeam(collapse(match["club"]), match["sfx"], name)
    return ParsedTeam(name, None, name)


def team_key(
    league_code: str, team_name: str, series_name: str | None = None
) -> tuple[str, str, str]:
    """The natural key ``(league, club, canonical series)`` of a team.

    The series is the record's ``series_name`` when given, else the name's own suffix.
    """
    parsed = parse_team_name(league_code, team_name, series_name)
    series = series_name if series_name is not None else (parsed.series_suffix or "")
    return (league_code, parsed.club, canonical_series(league_code, series))


__all__ = [
    "LEAGUES",
    "ParsedTeam",
    "canonical_series",
    "collapse",
    "league_info",
    "normalize_league_id",
    "parse_team_name",
    "strip_schedule_suffix",
    "team_key",
]
