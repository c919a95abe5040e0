"""What to preserve: the entities, their natural keys, canonicalisers and dependents.

The entity model is fixed (leagues, clubs, series, teams, as in every league app of this
kind); their table and column names, the dependent columns without foreign keys, which
tables the ETL owns, and the canonicalisers are configuration. The defaults describe the
reference schema (SCHEMA.md).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace

ENTITIES = ("leagues", "clubs", "series", "teams")

_WS = re.compile(r"\s+")
# Words a series name may start with; "ERIES" is a real scraper typo ("Series eries 16").
_SERIES_PREFIX = re.compile(r"^(?:chicago|series|eries|division|div\.?)\s+(?=\S)")
_S_PREFIX = re.compile(r"^s(?=\d)")
_NUMBER_LETTERS = re.compile(r"^0*(\d+)\s*([a-z]{1,2})?$")
#: Leagues whose two-letter series suffixes are written apart ("Chicago 11 SW" -> "11 sw").
SPACED_SUFFIX_LEAGUES = frozenset({"APTA_CHICAGO"})


def canonical_name(value: str) -> str:
    """Case-, accent- and whitespace-insensitive form of a name (clubs, team names)."""
    text = unicodedata.normalize("NFKC", value)
    return _WS.sub(" ", text).strip().casefold()


def canonical_series(league_code: str | None, series_name: str) -> str:
    """One value for every spelling of a series within a league.

    "Chicago 22", "Series 22", "Division 22", "Div. 22", "S22" and "Series 022" give "22";
    "Series 2B", "S2B" and "Series 2 b" give "2b"; "Chicago 11 SW" and "Series 11SW" give
    "11 sw"; "Series A" gives "a". The league decides only how a two-letter suffix is
    written (APTA_CHICAGO keeps it apart), so the rule is per league where the leagues
    really differ. Names without a number ("Series Legends") keep their words.
    """
    text = canonical_name(series_name)
    while True:  # "Series Division 3" and "Series eries 16" are real
        stripped = _SERIES_PREFIX.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    text = _S_PREFIX.sub("", text)
    match = _NUMBER_LETTERS.match(text)
    if not match:
        return text
    number, letters = match.group(1), match.group(2)
    if not letters:
        return number
    code = canonical_code(league_code) if league_code else ""
    if letters == "sw" or (code in SPACED_SUFFIX_LEAGUES and len(letters) > 1):
        return f"{number} {letters}"
    return f"{number}{letters}"


def canonical_code(value: str) -> str:
    """League codes compare upper-case, without surrounding space."""
    return value.strip().upper()


@dataclass(frozen=True)
class Dependent:
    """A column that references one of the entities.

    ``owner`` is ``"user"`` (snapshotted and restored) or ``"etl"`` (rebuilt by the ETL,
    only checked). ``filter_column``/``filter_pattern`` select the user-owned rows of an
    ETL-owned table (an ``ILIKE`` pattern), e.g. practice rows in ``schedule``.
    """

    table: str
    column: str
    entity: str
    owner: str = "user"
    has_fk: bool = False
    nullable: bool = True
    schema: str = "public"
    filter_column: str | None = None
    filter_pattern: str | None = None

    @property
    def label(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class TextHint:
    """Where the content strategy looks: a text column and the column naming its author."""

    table: str
    text_column: str
    author_column: str | None


@dataclass(frozen=True)
class PreservationConfig:
    """Everything the library needs to know about a schema. Immutable; use :meth:`replace`."""

    schema: str = "public"
    state_schema: str = "bulletproof"
    # table names of the four entities
    tables: dict = field(default_factory=lambda: {e: e for e in ENTITIES})
    # entity columns
    league_code: str = "league_id"
    league_name: str = "league_name"
    league_url: str | None = "league_url"
    club_name: str = "name"
    series_name: str = "name"
    series_display: str = "display_name"
    team_club: str = "club_id"
    team_series: str = "series_id"
    team_league: str = "league_id"
    team_name: str = "team_name"
    team_alias: str = "team_alias"
    team_display: str = "display_name"
    team_active: str = "is_active"
    team_updated_at: str | None = "updated_at"
    # dependents that have no foreign key (the catalog finds the rest)
    declared: tuple = (
        Dependent("users", "team_id", "teams"),
        Dependent("users", "league_context", "leagues"),
        Dependent("user_contexts", "league_id", "leagues"),
        Dependent("user_contexts", "team_id", "teams"),
        Dependent("user_contexts", "active_team_id", "teams"),
        Dependent("activity_log", "team_id", "teams"),
        Dependent("player_availability", "series_id", "series", nullable=False),
    )
    # tables the ETL rebuilds; every other table referencing an entity is user-owned
    etl_tables: frozenset = frozenset(
        {"club_leagues", "series_leagues", "players", "series_stats", "match_scores", "schedule"}
    )
    # user-owned rows inside ETL-owned tables: table -> (column, ILIKE pattern)
    user_rows_in_etl_tables: dict = field(
        default_factory=lambda: {"schedule": ("home_team", "%practice%")}
    )
    text_hints: tuple = (
        TextHint("polls", "question", "created_by"),
        TextHint("captain_messages", "message", "captain_user_id"),
    )
    # how the content strategy finds a user's own teams
    user_table: str = "users"
    user_team_column: str = "team_id"
    series_canonicaliser: Callable[[str | None, str], str] = canonical_series
    name_canonicaliser: Callable[[str], str] = canonical_name
    # which user-owned tables the snapshot copies whole (see snapshot/keys.py): "at_risk" (rows the
    # ETL or a cascade can delete: user rows in ETL-owned tables, ON DELETE CASCADE/SET NULL
    # chains; every other table as primary keys and referenced ids), or "all"
    snapshot_rows: str = "at_risk"
    # retention and safety limits
    keep_runs: int = 10
    max_retire_share: float = 0.5
    allow_empty_import: bool = False
    batch_size: int = 1000
    # the longest the library waits for any lock (a PostgreSQL interval; None: no limit); see lock_wait.py
    lock_timeout: str | None = "30s"
    # False: a single record's finding that is not malformed data (a team name naming another
    # series than its record) is a warning naming the record; True: it refuses the import
    strict: bool = False
    # what makes two incoming teams one team within an import: "natural_key" (league code,
    # canonical club, canonical series: "Chicago 22" and "S22" are one team, the first record
    # wins), or "parent_rows" (the league, club and series rows, as an ETL that upserts on
    # (club_id, series_id, league_id) keeps them: teams sharing a natural key on different
    # series rows stay apart, see identity/team_identity.py)
    team_identity: str = "natural_key"
    # health thresholds (see health/check.py)
    warn_preservation_below: float = 1.0
    critical_preservation_below: float = 0.9
    # emergency repair evidence (issue 13): how a stale id no ledger knows is mapped from what
    # its rows say (restore/catalog_evidence.py; docs/operations.md). An id maps when at least
    # ``evidence_min_support`` rows name one entity and they are at least ``evidence_majority``
    # of the rows with any evidence; user columns that have no foreign key to the user table;
    # the user -> player -> team path (None: found from the catalog) and extra name hints
    # (None: restore.row_evidence.DEFAULT_NAME_HINTS)
    evidence_min_support: int = 2
    evidence_majority: float = 2 / 3
    user_columns: tuple = (("activity_log", "user_id"),)
    membership: tuple | None = None
    name_hints: tuple | None = None
    # extension points (issue 15): custom mapping strategies (restore.custom_strategies.CustomStrategy),
    # tried in their place in the order and recorded under their own name; callables called before
    # and after each stage of a run with a StageCall (see _callbacks.py and docs/operations.md)
    custom_strategies: tuple = ()
    stage_callbacks: tuple = ()

    def table(self, entity: str) -> str:
        return self.tables[entity]

    def replace(self, **changes) -> PreservationConfig:
        return replace(self, **changes)

    def team_key(self, league_code: str, club_name: str, series_name: str) -> tuple:
        """The natural key of a team: (league code, canonical club, canonical series)."""
        code = canonical_code(league_code)
        return (code, self.name_canonicaliser(club_name), self.series_canonicaliser(code, series_name))

    def entity_key(self, entity: str, *parts: str) -> tuple:
        """The natural key of a league (code), club (name) or series (name)."""
        if entity == "leagues":
            return (canonical_code(parts[0]),)
        if entity in ("clubs", "series"):
            return (self.name_canonicaliser(parts[0]),)
        return self.team_key(*parts)


DEFAULT_CONFIG = PreservationConfig()
