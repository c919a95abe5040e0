"""The test bed itself: a real server, a fresh database per test with the schema in it."""

USER_TABLES = {
    "users", "user_player_associations", "polls", "poll_choices", "poll_responses",
    "captain_messages", "practice_times", "saved_lineups", "lineup_escrow", "user_contexts",
    "activity_log", "videos", "player_availability",
}
ETL_TABLES = {
    "leagues", "clubs", "series", "club_leagues", "series_leagues", "teams", "players",
    "series_stats", "match_scores", "schedule",
}


def test_fresh_database_has_every_reference_table_and_nothing_else(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        tables = {r[0] for r in cur.fetchall()}
    assert tables == USER_TABLES | ETL_TABLES


def test_each_test_gets_an_empty_database(conn):
    with conn.cursor() as cur:
        cur.execute("INSERT INTO leagues (league_id, league_name) VALUES ('X', 'x')")
        conn.commit()
        cur.execute("SELECT count(*) FROM leagues")
        assert cur.fetchone()[0] == 1


def test_and_the_next_test_does_not_see_it(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM leagues")
        assert cur.fetchone()[0] == 0
