"""Checking input records before any SQL runs: a bad record names itself and its field."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidInput
from . import input_checks

MAX_NAME_LENGTH = 255  # the varchar(255) of the reference schema

TEAM_REQUIRED = ("league_id", "club_name", "series_name", "team_name")
TEAM_OPTIONAL = ("team_alias", "display_name")

# One compiled character class instead of a Python test per character (5 to 6 s for 100,000
# records): the control characters (Unicode category Cc) are exactly U+0000-U+001F and
# U+007F-U+009F, and lone surrogates are the only characters UTF-8 cannot encode.
# tests/test_validate_regex.py proves both over every code point.
_CONTROL = "\x00-\x1f\x7f-\x9f"
_SURROGATE = "\ud800-\udfff"
_SUSPECT = re.compile(f"[{_CONTROL}{_SURROGATE}]")
_FIELDS = TEAM_REQUIRED + TEAM_OPTIONAL
_REQUIRED = len(TEAM_REQUIRED)


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
    if _SUSPECT.search(value) is not None:  # rare: say which, UTF-8 first as before
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput("not valid UTF-8 text", record=record, field=field, source=source) from exc
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


def _clean_fast(record: dict) -> list | None:
    """The six cleaned values of a good record in a few C calls, or None when some value
    needs the field-by-field check (which then raises with the exact field and message)."""
    values = [record.get(f) for f in _FIELDS]
    for value in values[:_REQUIRED]:
        if value is None:
            return None
    present = [v for v in values if v is not None]
    try:
        if _SUSPECT.search("".join(present)) is not None:
            return None
    except TypeError:  # a value that is not a string
        return None
    cleaned = [None if v is None else " ".join(v.split()) for v in values]
    for i, value in enumerate(cleaned):
        if value is not None and len(value) > MAX_NAME_LENGTH:
            return None
        if not value:
            if i < _REQUIRED:
                return None
            cleaned[i] = None
    return cleaned


def validate_teams(teams_data, *, known_leagues=None, source: str = "teams_data",
                   warnings: list | None = None) -> list:
    """Validate every record; raise on the first bad one, before anything is written.

    ``warnings``: a list to collect findings that are not malformed data (see
    :func:`.input_checks.check_teams`) instead of raising on them."""
    if teams_data is None or isinstance(teams_data, (str, bytes, dict)):
        raise InvalidInput("teams_data must be a list of records", source=source)
    out = []
    for index, record in enumerate(teams_data):
        if not isinstance(record, dict):
            raise InvalidInput(
                f"must be an object, got {type(record).__name__}", record=index, source=source
            )
        cleaned = _clean_fast(record)
        if cleaned is None:  # something is wrong: find the first field and say what
            cleaned = [check_text(record.get(f), record=index, field=f, required=i < _REQUIRED, source=source)
                       for i, f in enumerate(_FIELDS)]
        league, club, series, name, alias, display = cleaned
        code = league.upper()
        if known_leagues is not None and code not in known_leagues:
            raise InvalidInput(
                f"unknown league code {league!r} (known: {', '.join(sorted(known_leagues))})",
                record=index, field="league_id", source=source,
            )
        out.append(TeamRecord(index, code, club, series, name, alias, display))
    return input_checks.check_teams(out, source=source, warnings=warnings)
