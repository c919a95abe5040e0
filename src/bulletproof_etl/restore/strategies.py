"""The mapping strategies, each a small pure function tried in priority order.

- :func:`direct`: stale id -> natural key (ledger) -> the id of that key now.
- :func:`context`: the old team's club (loosely), team name or alias, within the same
  league and canonical series; a unique match only.
- :func:`series_context`: an old series name -> the one current series with the same
  canonical form.
- :func:`named_team`: a text that names a team ("Drills for Lakeview - 22") -> that team,
  if exactly one current team has the name (row-level context, used without a ledger).
- :func:`content`: word-bounded series references in a text ("Series 22", "S22",
  "Chicago 22"), combined with the author's own teams; a unique match only.

Each returns the new id, or ``None`` when it cannot name exactly one. None of them guesses.
"""

from __future__ import annotations

import re

from ..config import PreservationConfig, canonical_name

# the readers of names in text live with the evidence votes (diagnose uses them too); they
# are part of this module's interface as before
from ..health.evidence_text import (  # noqa: F401
    _SERIES_REF,
    NameIndex,
    name_index,
    name_tokens,
    named_team,
    series_references,
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
    """A unique candidate matching the old team by club (loosely), else by team name or alias.

    ``old_team`` is the old row (``team_name``, ``team_alias``); ``candidates`` a list of
    dicts with ``id``, ``key``, ``team_name``, ``team_alias``. The caller passes only teams
    that may be the old one under a new key (teams whose key is new), never every team.
    Both the club and the name match stay within the old team's league and canonical series.
    """
    if old_key is None:
        return None
    league, club, series = old_key
    same_place = [c for c in candidates if c["key"] and c["key"][0] == league and c["key"][2] == series]
    by_club = [c for c in same_place if loose_club(c["key"][1]) == loose_club(club)]
    if len(by_club) == 1:
        return by_club[0]["id"]
    if by_club or not old_team:
        return None  # two clubs match loosely: ambiguous, do not fall back to names
    names = {canonical_name(v) for v in (old_team.get(config.team_name), old_team.get(config.team_alias)) if v}
    by_name = [c for c in same_place
               if names & {canonical_name(v) for v in (c.get("team_name"), c.get("team_alias")) if v}]
    return by_name[0]["id"] if len(by_name) == 1 else None


def series_context(old_name: str | None, current: dict, config: PreservationConfig):
    """A unique current series (``{id: name}``) whose canonical form equals the old name's."""
    if not old_name:
        return None
    wanted = config.series_canonicaliser(None, old_name)
    hits = [i for i, name in current.items() if config.series_canonicaliser(None, name) == wanted]
    return hits[0] if len(hits) == 1 else None


def content(text: str | None, author_teams: list, config: PreservationConfig):
    """The author's one team whose series the text names (``author_teams``: dicts with id, key)."""
    refs = series_references(text, config)
    if not refs:
        return None
    hits = {t["id"] for t in author_teams if t["key"] and t["key"][2] in refs}
    return hits.pop() if len(hits) == 1 else None
