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

# "Series 22", "Chicago 22", "Division 22", "Div 22", "S22", "S2B", "Series 11 SW", "Series A".
# A bare number or a date ("Jan 22") is not a series reference; a letter label must be one
# upper-case letter (or "SN") so that "the series is tied" names no series "is".
_SERIES_REF = re.compile(
    r"\b(?:(?i:chicago|series|division|div)\s+(?:(?P<num>\d+[A-Za-z]?(?:\s+(?i:sw))?)|(?P<letter>SN|[A-Z]))"
    r"|(?i:s)(?P<short>\d+[A-Za-z]?))\b"
)
_CLUB_NOISE = {"cc", "club", "pc", "rc", "tc", "the", "country", "tennis", "paddle", "platform", "&", "and"}
_PUNCT = re.compile(r"[^\w\s]")
_EDGE = "\"'()[]{},;:!?."


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


def name_tokens(text: str) -> list:
    """Words of a name or text, case-folded, punctuation trimmed at word edges ("22." -> "22")."""
    out = []
    for word in canonical_name(text).split():
        trimmed = word.strip(_EDGE)
        out.append(trimmed or word)
    return out


class NameIndex(dict):
    """``{canonical team name: set of ids}``; ``longest`` is the most words a name has."""

    longest = 0


def name_index(teams) -> NameIndex:
    """The index of ``(id, name, alias, ...)`` tuples; empty names are skipped."""
    index = NameIndex()
    for id_, *names in teams:
        for name in names:
            if name:
                key = " ".join(name_tokens(name))
                index.setdefault(key, set()).add(id_)
                index.longest = max(index.longest, len(key.split()))
    return index


def named_team(text: str | None, index: NameIndex):
    """The one team whose full name the text contains, word-bounded; None if none or several.

    A name found only inside a longer name ("Lakeview - 2" in "Lakeview - 22" cannot
    happen word-bounded, but "Oak" in "Oak Park - 3" can) does not count.
    """
    if not text or not index:
        return None
    tokens = name_tokens(text)
    longest = index.longest
    spans = []
    for start in range(len(tokens)):
        for end in range(start + 1, min(len(tokens), start + longest) + 1):
            ids = index.get(" ".join(tokens[start:end]))
            if ids:
                spans.append((start, end, ids))
    kept = [s for s in spans
            if not any(o is not s and o[0] <= s[0] and s[1] <= o[1] and o[1] - o[0] > s[1] - s[0] for o in spans)]
    hits = set().union(*(ids for _, _, ids in kept)) if kept else set()
    return next(iter(hits)) if len(hits) == 1 else None


def series_references(text: str | None, config: PreservationConfig) -> set:
    """Canonical series named in a text, word-bounded."""
    if not text:
        return set()
    found = set()
    for match in _SERIES_REF.finditer(text):
        token = match.group("num") or match.group("letter") or match.group("short")
        found.add(config.series_canonicaliser(None, "Series " + token))
    return found


def content(text: str | None, author_teams: list, config: PreservationConfig):
    """The author's one team whose series the text names (``author_teams``: dicts with id, key)."""
    refs = series_references(text, config)
    if not refs:
        return None
    hits = {t["id"] for t in author_teams if t["key"] and t["key"][2] in refs}
    return hits.pop() if len(hits) == 1 else None
