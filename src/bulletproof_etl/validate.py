"""Checking input records before any SQL runs: a bad record names itself and its field."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from . import input_checks
from .errors import InvalidInput

MAX_NAME_LENGTH = 255  # the varchar(255) of the reference schema

TEAM_REQUIRED = ("league_id", "club_name", "series_name", "team_name")
TEAM_OPTIONAL = ("team_alias", "display_name")


@dataclass(frozen=True)
class TeamRecord:
    """One validated incoming team, with its position in the input."""

    index: int
    league_code: str
    club_name: str
    series_name: str
    team_name: str
    team_alias: str | None
    display_name: str | None


def check_text(value, *, record, field, required: bool, source: str | None = None) -> str | None:
    """A clean string, or an :class:`InvalidInput` naming the record and the field."""
    if value is None:
        if required:
            raise InvalidInput("missing (NULL)", record=record, field=field, source=source)
        return None
    if not isinstance(value, str):
        raise InvalidInput(
            f"must be a string, got {type(value).__name__}", record=record, field=field, source=source
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput("not valid UTF-8 text", record=record, field=field, source=source) from exc
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise InvalidInput("contains control characters", record=record, field=field, source=source)
    stripped = " ".join(value.split())
    if required and not stripped:
        raise InvalidInput("empty", record=record, field=field, source=source)
    if len(stripped) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"too long ({len(stripped)} characters, at most {MAX_NAME_LENGTH})",
            record=record, field=field, source=source,
        )
    return stripped or None


def validate_teams(teams_data, *, known_leagues=None, source: str = "teams_data") -> list:
    """Validate every record; raise on the first bad one, before anything is written."""
    if teams_data is None or isinstance(teams_data, (str, bytes, dict)):
        raise InvalidInput("teams_data must be a list of records", source=source)
    out = []
    for index, record in enumerate(teams_data):
        if not isinstance(record, dict):
            raise InvalidInput(
                f"must be an object, got {type(record).__name__}", record=index, source=source
            )
        values = {f: check_text(record.get(f), record=index, field=f, required=True, source=source)
                  for f in TEAM_REQUIRED}
        for f in TEAM_OPTIONAL:
            values[f] = check_text(record.get(f), record=index, field=f, required=False, source=source)
        code = values["league_id"].upper()
        if known_leagues is not None and code not in known_leagues:
            raise InvalidInput(
                f"unknown league code {values['league_id']!r} (known: {', '.join(sorted(known_leagues))})",
                record=index, field="league_id", source=source,
            )
        out.append(TeamRecord(index, code, values["club_name"], values["series_name"],
                              values["team_name"], values["team_alias"], values["display_name"]))
    return input_checks.check_teams(out, source=source)
