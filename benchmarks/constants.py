"""What the benchmark measures: the approaches, the workloads, the shape of the generated data,
and the user tables and references it recounts after each run."""

APPROACHES = ("protected", "fallback", "bare", "original", "copy_floor")
WORKLOADS = ("first", "unchanged", "clear", "churn", "fresh")  # fresh: benchmarks/fresh.py
USERS_WORKLOAD = "users"  # only when named: an app client during the import (benchmarks/users.py)
ETL_WORKLOAD = "etl"  # only when named: the whole legacy ETL against it patched (benchmarks/whole_etl.py)
SEED = 7
PER_TEAM = 0.7  # activity units per team: about ten user rows per team
ORIGINAL_BATCH = 50
ORIGINAL_LIMIT_SECONDS = 600  # the original is skipped at a size where it would take longer
USER_TABLES = (
    "users",
    "user_player_associations",
    "polls",
    "poll_choices",
    "poll_responses",
    "captain_messages",
    "practice_times",
    "saved_lineups",
    "lineup_escrow",
    "user_contexts",
    "activity_log",
    "videos",
    "player_availability",
)
USER_REFS = (  # (table, column, entity table): every user-owned reference of the reference schema
    ("users", "team_id", "teams"),
    ("users", "league_context", "leagues"),
    ("polls", "team_id", "teams"),
    ("captain_messages", "team_id", "teams"),
    ("practice_times", "team_id", "teams"),
    ("practice_times", "league_id", "leagues"),
    ("saved_lineups", "team_id", "teams"),
    ("lineup_escrow", "initiator_team_id", "teams"),
    ("lineup_escrow", "recipient_team_id", "teams"),
    ("user_contexts", "league_id", "leagues"),
    ("user_contexts", "team_id", "teams"),
    ("user_contexts", "active_team_id", "teams"),
    ("activity_log", "team_id", "teams"),
    ("videos", "team_id", "teams"),
    ("player_availability", "series_id", "series"),
)
PRACTICE = "%practice%"
