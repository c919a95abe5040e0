-- The reference database of the league app (see SCHEMA.md).
-- ETL-owned tables are deleted and rebuilt by the legacy ETL on every run;
-- user-owned tables are written by the app and must survive every import.

-- ETL-owned --------------------------------------------------------------

CREATE TABLE IF NOT EXISTS leagues (
    id serial PRIMARY KEY,
    league_id varchar(255) NOT NULL,
    league_name varchar(255) NOT NULL,
    league_url varchar(512),
    created_at timestamptz DEFAULT now(),
    CONSTRAINT leagues_league_id_key UNIQUE (league_id)
);

CREATE TABLE IF NOT EXISTS clubs (
    id serial PRIMARY KEY,
    name varchar(255) NOT NULL,
    club_address varchar(512),
    created_at timestamptz DEFAULT now(),
    CONSTRAINT clubs_name_key UNIQUE (name)
);

CREATE TABLE IF NOT EXISTS series (
    id serial PRIMARY KEY,
    name varchar(255) NOT NULL,
    display_name varchar(255) NOT NULL,
    created_at timestamptz DEFAULT now(),
    CONSTRAINT series_name_key UNIQUE (name)
);

CREATE TABLE IF NOT EXISTS club_leagues (
    id serial PRIMARY KEY,
    club_id integer NOT NULL REFERENCES clubs (id),
    league_id integer NOT NULL REFERENCES leagues (id),
    CONSTRAINT club_leagues_club_id_league_id_key UNIQUE (club_id, league_id)
);

CREATE TABLE IF NOT EXISTS series_leagues (
    id serial PRIMARY KEY,
    series_id integer NOT NULL REFERENCES series (id),
    league_id integer NOT NULL REFERENCES leagues (id),
    CONSTRAINT series_leagues_series_id_league_id_key UNIQUE (series_id, league_id)
);

CREATE TABLE IF NOT EXISTS teams (
    id serial PRIMARY KEY,
    club_id integer NOT NULL REFERENCES clubs (id),
    series_id integer NOT NULL REFERENCES series (id),
    league_id integer NOT NULL REFERENCES leagues (id),
    team_name varchar(255) NOT NULL,
    team_alias varchar(255),
    display_name varchar(255) NOT NULL,
    external_team_id varchar(255),
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    CONSTRAINT unique_team_club_series_league UNIQUE (club_id, series_id, league_id),
    CONSTRAINT unique_team_name_per_league UNIQUE (team_name, league_id)
);

CREATE TABLE IF NOT EXISTS players (
    id serial PRIMARY KEY,
    tenniscores_player_id varchar(255) NOT NULL,
    first_name varchar(255),
    last_name varchar(255),
    league_id integer NOT NULL REFERENCES leagues (id),
    club_id integer NOT NULL REFERENCES clubs (id),
    series_id integer NOT NULL REFERENCES series (id),
    team_id integer REFERENCES teams (id),
    pti numeric,
    wins integer DEFAULT 0,
    losses integer DEFAULT 0,
    captain_status varchar(50),
    CONSTRAINT unique_player_in_league_club_series
        UNIQUE (tenniscores_player_id, league_id, club_id, series_id)
);

CREATE TABLE IF NOT EXISTS series_stats (
    id serial PRIMARY KEY,
    league_id integer REFERENCES leagues (id),
    series varchar(255),
    team varchar(255),
    team_id integer REFERENCES teams (id),
    series_id integer REFERENCES series (id),
    points integer,
    matches_won integer,
    matches_lost integer,
    matches_tied integer
);

CREATE TABLE IF NOT EXISTS match_scores (
    id serial PRIMARY KEY,
    league_id integer REFERENCES leagues (id),
    match_date date,
    home_team varchar(255),
    away_team varchar(255),
    home_team_id integer REFERENCES teams (id),
    away_team_id integer REFERENCES teams (id),
    home_player_1_id varchar(255),
    home_player_2_id varchar(255),
    away_player_1_id varchar(255),
    away_player_2_id varchar(255),
    scores varchar(255),
    winner varchar(50)
);

-- Rows whose home_team contains 'Practice' are user-created practice times.
CREATE TABLE IF NOT EXISTS schedule (
    id serial PRIMARY KEY,
    league_id integer REFERENCES leagues (id),
    match_date date,
    match_time time,
    home_team varchar(255),
    away_team varchar(255),
    home_team_id integer REFERENCES teams (id),
    away_team_id integer REFERENCES teams (id),
    location varchar(255)
);

-- User-owned -------------------------------------------------------------

CREATE TABLE IF NOT EXISTS users (
    id serial PRIMARY KEY,
    email varchar(255) NOT NULL UNIQUE,
    first_name varchar(255),
    last_name varchar(255),
    league_context integer,          -- no foreign key (as in the real app)
    team_id integer,                 -- no foreign key (as in the real app)
    created_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS user_player_associations (
    user_id integer NOT NULL REFERENCES users (id),
    tenniscores_player_id varchar(255) NOT NULL,
    PRIMARY KEY (user_id, tenniscores_player_id)
);

CREATE TABLE IF NOT EXISTS polls (
    id serial PRIMARY KEY,
    team_id integer REFERENCES teams (id),
    created_by integer REFERENCES users (id),
    question text NOT NULL,
    created_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS poll_choices (
    id serial PRIMARY KEY,
    poll_id integer REFERENCES polls (id) ON DELETE CASCADE,
    choice_text text
);

CREATE TABLE IF NOT EXISTS poll_responses (
    id serial PRIMARY KEY,
    poll_id integer REFERENCES polls (id) ON DELETE CASCADE,
    choice_id integer REFERENCES poll_choices (id),
    player_id integer,
    responded_at timestamptz DEFAULT now(),
    CONSTRAINT poll_responses_poll_id_player_id_key UNIQUE (poll_id, player_id)
);

CREATE TABLE IF NOT EXISTS captain_messages (
    id serial PRIMARY KEY,
    team_id integer NOT NULL REFERENCES teams (id),
    captain_user_id integer REFERENCES users (id),
    message text NOT NULL,
    created_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS practice_times (
    id serial PRIMARY KEY,
    team_id integer NOT NULL REFERENCES teams (id),
    league_id integer REFERENCES leagues (id),
    day_of_week varchar(20),
    start_time time,
    end_time time,
    location varchar(255),
    CONSTRAINT practice_times_team_day_start_key UNIQUE (team_id, day_of_week, start_time)
);

CREATE TABLE IF NOT EXISTS saved_lineups (
    id serial PRIMARY KEY,
    user_id integer REFERENCES users (id),
    team_id integer NOT NULL REFERENCES teams (id),
    lineup_name varchar(255),
    lineup_data jsonb,
    created_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS lineup_escrow (
    id serial PRIMARY KEY,
    initiator_team_id integer REFERENCES teams (id),
    recipient_team_id integer REFERENCES teams (id),
    initiator_user_id integer REFERENCES users (id),
    status varchar(50),
    created_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS user_contexts (
    user_id integer PRIMARY KEY REFERENCES users (id),
    league_id integer,               -- no foreign key
    team_id integer,                 -- no foreign key
    active_team_id integer           -- no foreign key
);

CREATE TABLE IF NOT EXISTS activity_log (
    id serial PRIMARY KEY,
    user_id integer,
    team_id integer,                 -- no foreign key
    action_type varchar(100),
    details jsonb,
    created_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS videos (
    id serial PRIMARY KEY,
    team_id integer REFERENCES teams (id) ON DELETE CASCADE,
    title varchar(255),
    url varchar(512),
    created_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS player_availability (
    id serial PRIMARY KEY,
    user_id integer REFERENCES users (id),
    player_name varchar(255),
    series_id integer NOT NULL,      -- no foreign key (goes stale in the real app)
    match_date date,
    availability_status integer,     -- 1 available, 2 unavailable, 3 not sure
    CONSTRAINT player_availability_user_date_key UNIQUE (user_id, match_date)
);

-- Indexes the app has on its reference columns.
CREATE INDEX IF NOT EXISTS idx_teams_league ON teams (league_id);
CREATE INDEX IF NOT EXISTS idx_players_team ON players (team_id);
CREATE INDEX IF NOT EXISTS idx_polls_team ON polls (team_id);
CREATE INDEX IF NOT EXISTS idx_captain_messages_team ON captain_messages (team_id);
CREATE INDEX IF NOT EXISTS idx_saved_lineups_team ON saved_lineups (team_id);
CREATE INDEX IF NOT EXISTS idx_videos_team ON videos (team_id);
CREATE INDEX IF NOT EXISTS idx_schedule_home ON schedule (home_team_id);
CREATE INDEX IF NOT EXISTS idx_schedule_away ON schedule (away_team_id);
