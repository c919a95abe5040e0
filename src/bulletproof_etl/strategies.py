"""The mapping strategies, each a small pure function tried in priority order.

- :func:`direct`: stale id -> natural key (ledger) -> the id of that key now.
- :func:`context`: canonicalised club, team names and aliases within the same league and
  series; a unique match only.
- :func:`content`: word-bounded series references in a text ("Series 22", "S22",
  "Chicago 22"), combined with the author's own teams; a unique match only.

Each returns the new id, or ``None`` when it cannot name exactly one. None of them guesses.
"""

from __future__ import annotations

import re

from .config import PreservationConfig, canonical_name

# "Series 22", "Chicago 22", "Division 22", "Div 22", "S22", "S2B", "Series 11 SW"; a bare
# number or a date ("Jan 22") is not a series reference.
_SERIES_REF = re.compile(
    r"\b(?:(?:chicago|series|division|div)\s+(\d+[a-z]?(?:\s+sw)?|[a-z]{1,2}\b)|s(\d+[a-z]?))\b",
    re.IGNORECASE,
)
_CLUB_NOISE = {"cc", "club", "pc", "rc", "tc", "the", "country", "tennis", "paddle", "platform", "&", "and"}
_PUNCT = re.compile(r"[^\w\s]")


def loose_club(name: str) -> str:
    """A club name without punctuation and generic words: "Lakeview CC" ~ "Lakeview"."""
    words = _PUNCT.sub(" ", canonical_name(name)).split()
    kept = [w for w in words if w not in _CLUB_NOISE]
    return " ".join(kept or words)


def direct(old_id: int, ledger_key: tuple | None, ids_by_key: dict):
    """The current id of the key the ledger knows for ``old_id``, if exactly one row has it."""
    if ledger_key is None:
        return None
    ids = ids_by_key.get(ledger_key)
    if ids and len(ids) == 1:
        return ids[0]
    return None


def context(old_team: dict | None, old_key: tuple | None, candidates: list, config: PreservationConfig):
    """A unique current team matching the old one by club (loosely), team name or alias.

    ``old_team`` is the old row (``team_name``, ``team_alias``), ``candidates`` a list of
    dicts with ``id``, ``key``, ``team_name``, ``team_alias``.
    """
    if old_key is None:
        return None
    league, club, series = old_key
    same_place = [c for c in candidates if c["key"] and c["key"][0] == league and c["key"][2] == series]
    by_club = [c for c in same_place if loose_club(c["key"][1]) == loose_club(club)]
    if len(by_club) == 1:
        return by_club[0]["id"]
    if old_team:
        names = {canonical_name(v) for v in (old_team.get(config.team_name), old_team.get(config.team_alias)) if v}
        by_name = [
            c for c in candidates
            if c["key"] and c["key"][0] == league
            and names & {canonical_name(v) for v in (c.get("team_name"), c.get("team_alias")) if v}
        ]
        if len(by_name) == 1:
            return by_name[0]["id"]
    return None


def series_context(old_name: str | None, current: dict, config: PreservationConfig):
    """A unique current series whose canonical form equals the old series name's."""
    if not old_name:
        return None
    wanted = config.series_canonicaliser(None, old_name)
    hits = [i for i, name in current.items() if config.series_canonicaliser(None, name) == wanted]
    return hits[0] if len(hits) == 1 else None


def series_references(text: str | None, config: PreservationConfig) -> set:
    """Canonical series named in a text, word-bounded."""
    if not text:
        return set()
    found = set()
    for match in _SERIES_REF.finditer(text):
        token = match.group(1) or match.group(2)
        found.add(config.series_canonicaliser(None, "Series " + token))
    return found


def content(text: str | None, author_teams: list, config: PreservationConfig):
    """The author's one team whose series the text names (``author_teams``: dicts with id, key)."""
    refs = series_references(text, config)
    if not refs:
        return None
    hits = {t["id"] for t in author_teams if t["key"] and t["key"][2] in refs}
    return hits.pop() if len(hits) == 1 else None
