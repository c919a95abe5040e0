"""Configuration for the rally app's own ``ComprehensiveETL`` on its production schema.

The rally app (public repository rossfreedman/rally) imports with
``data/etl/database_import/import_all_jsons_to_database.py``; its schema is the production
dump ``data/dbschema/migrations/production_backup_20250709_121814.sql`` plus the
captain_messages migration. Protecting it takes configuration only::

    from bulletproof_etl.integration import patch_existing_etl_class
    from bulletproof_etl.integration.rally_app import RALLY_APP_CONFIG, RALLY_APP_HOOKS
    patch_existing_etl_class(ComprehensiveETL, RALLY_APP_CONFIG, hooks=RALLY_APP_HOOKS)

What each setting is for is in docs/integration.md ("Protecting the rally app's own ETL").
"""

from __future__ import annotations

from ..config import Dependent, PreservationConfig, TextHint
from .patching import EtlHooks

RALLY_APP_CONFIG = PreservationConfig(
    # columns without a foreign key that hold entity ids (the catalog finds the rest:
    # captain_messages.team_id, user_instructions.team_id/series_id, the ETL's own tables)
    declared=(
        Dependent("polls", "team_id", "teams"),
        Dependent("users", "league_context", "leagues"),
        Dependent("users", "league_id", "leagues"),
        Dependent("activity_log", "team_id", "teams"),
        Dependent("player_availability", "series_id", "series", nullable=False),
    ),
    # what the ETL clears and rebuilds from the scrape, and its own settings table (its schema
    # step writes it on every run); every other table is the users'
    etl_tables=frozenset({"club_leagues", "series_leagues", "players", "player_history", "series_stats",
                          "match_scores", "schedule", "system_settings"}),
    # practice times are user rows kept in the ETL's schedule table
    user_rows_in_etl_tables={"schedule": ("home_team", "%practice%")},
    text_hints=(TextHint("polls", "question", "created_by"),
                TextHint("captain_messages", "message", "captain_user_id")),
    # the production users table has no team column: a user's teams come from
    # user_player_associations -> players
    user_team_column=None,
    # the ETL's restore and orphan fixers delete and rewrite user rows: keep every user row whole
    snapshot_rows="all",
    # its import_teams upserts on (club_id, series_id, league_id): "Division 10" and "S10" of one
    # club are two teams to it, and to the library
    team_identity="parent_rows",
)

RALLY_APP_HOOKS = EtlHooks(
    run="run",
    # a @contextmanager method: the library enters it, hands the ETL its one connection, and
    # leaves it when the protected run has committed or rolled back
    get_connection="get_managed_db_connection",
    clear="clear_target_tables",
    import_leagues="import_leagues",
    import_clubs="import_clubs",
    import_series="import_series",
    import_teams="import_teams",
    league_attribute=None,
    # its import_teams writes generate_team_alias(team_name, series_name) as the alias
    team_alias="generate_team_alias",
)
