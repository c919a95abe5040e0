"""Team names as the modelled ETL parses them (its own rules, after the real class's idea).

A league code is upper-cased with underscores. A team name's suffix gives the series: numbers
up to 20 become "Division N" and larger ones "Chicago N", so the APTA team "Club - 10" of
series "Chicago 10" is also read as the team "Club - 10" of series "Division 10": one real
team, two teams in the ETL (the real class does the same). A schedule name that already ends
in " - Series N" gives the made-up series "Series eries N": the extraction ignores it, and the
late creation of teams from the schedule finds no such series (the real class's luck).
"""

from __future__ import annotations

import re

_NSTF_FORM = re.compile(r"^(?P<club>.+?) S(?P<sfx>\d+[A-Za-z]?)$")
_NUMBER_FORM = re.compile(r"^(?P<club>.+?)\s+(?P<sfx>\d+[A-Za-z]*)$")


def league_code(raw: str) -> str:
    return " ".join((raw or "").split()).upper().replace(" ", "_")


def series_for_suffix(suffix: str) -> str:
    """The series a team-name suffix stands for: numbers up to 20 are "Division N", larger
    ones "Chicago N" (so an APTA "Club - 10" of series "Chicago 10" comes out as "Division 10"),
    "S2B" is "Series 2B" (and, as in the real class, "Series 1" is "Series eries 1", a series
    no file names: see :func:`garbled`); anything else is taken as written."""
    if suffix.isdigit():
        number = int(suffix)
        return f"Division {number}" if number <= 20 else f"Chicago {number}"
    if suffix[:1] in "Ss":  # "S2B" -> "Series 2B"; the real rule also makes "Series 1" "Series eries 1"
        return f"Series {suffix[1:]}"
    if suffix[:1].isdigit():
        return f"Division {suffix}" if len(suffix) <= 3 else f"Chicago {suffix}"
    return suffix


def garbled(series: str | None) -> bool:
    """A series the suffix rule made up ("Series eries 1" from "X 1 - Series 1")."""
    return bool(series) and series.startswith("Series eries")


def parse_team_name(team_name: str) -> tuple[str, str | None]:
    """``(club, series or None)`` of a team name: "Club - 22", "Club S2B", "Club 1"."""
    name = " ".join(team_name.split())
    if " - " in name:
        club, suffix = name.split(" - ", 1)
        return club.strip(), series_for_suffix(suffix.strip())
    for form in (_NSTF_FORM, _NUMBER_FORM):
        match = form.match(name)
        if match:
            suffix = match["sfx"]
            return match["club"], series_for_suffix(f"S{suffix}" if form is _NSTF_FORM else suffix)
    return name, None
