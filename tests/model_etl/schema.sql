-- The schema of the modelled app: a reduced copy of the SHAPE of the production dump of the
-- real app (its tables, columns, unique constraints and foreign keys as they matter to the ETL
-- and to user data), written for these tests. Notable for the library:
--   * club and series names are unique across all leagues (clubs_name_key, series_name_key);
--   * teams carry two unique constraints, unique_team_club_series_league and
--     unique_team_name_per_league, and display_name may be NULL (the ETL inserts teams without);
--   * users has no team_id; users.league_context and users.league_id have no foreign key;
--   * polls.team_id, activity_log.team_id and player_availability.series_id have no foreign
--     key; activity_log has a uuid primary key;
--   * captain_messages.team_id is NOT NULL with a foreign key;
--   * practice times are user rows inside the ETL-owned schedule table.

CREATE TABLE leagues (
    id serial PRIMARY KEY,
    league_id varchar(255) NOT NULL CONSTRAINT leagues_league_id_key UNIQUE,
    league_name varchar(255) NOT NULL,
    league_url varchar(512),
    created_at timestamptz DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamptz DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE clubs (
    id serial PRIMARY KEY,
    name varchar(255) NOT NULL CONSTRAINT clubs_name_key UNIQUE,
    updated_at timestamptz DEFAULT CURRENT_TIMESTAMP,
    logo_filename varchar(500)
);

CREATE TABLE series (
    id serial PRIMARY KEY,
    name varchar(255) NOT NULL CONSTRAINT series_name_key UNIQUE,
    updated_at timestamptz DEFAULT CURRENT_TIMESTAMP,
    display_name varchar(255) NOT NULL
);

CREATE TABLE club_leagues (
    id serial PRIMARY KEY,
    club_id integer NOT NULL REFERENCES clubs (id),
    league_id integer NOT NULL REFERENCES leagues (id),
    created_at timestamptz DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT unique_club_league UNIQUE (club_id, league_id)
);

CREATE TABLE series_leagues (
    id serial PRIMARY KEY,
    series_id integer NOT NULL REFERENCES series (id),
    league_id integer NOT NULL REFERENCES leagues (id),
    created_at timestamptz DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT unique_series_league UNIQUE (series_id, league_id)
);

CREATE TABLE teams (
    id serial PRIMARY KEY,
    club_id integer NOT NULL REFERENCES clubs (id),
    series_id integer NOT NULL REFERENCES series (id),
    league_id integer NOT NULL REFERENCES leagues (id),
    team_name varchar(255) NOT NULL,
    external_team_id varchar(255),
    is_active boolean DEFAULT true,
    created_at timestamptz DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamptz DEFAULT CURRENT_TIMESTAMP,
    team_alias varchar(255),
    display_name varchar(255),
    CONSTRAINT unique_team_club_series_league UNIQUE (club_id, series_id, league_id),
    CONSTRAINT unique_team_name_per_league UNIQUE (team_name, league_id)
);

CREATE TABLE players (
    id serial PRIMARY KEY,
    email varchar(255),
    first_name varchar(255) NOT NULL,
    last_name varchar(255) NOT NULL,
    club_id integer NOT NULL REFERENCES clubs (id),
    series_id integer NOT NULL REFERENCES series (id),
    created_at timestamptz DEFAULT CURRENT_TIMESTAMP,
    tenniscores_player_id varchar(255) NOT NULL,
    league_id integer NOT NULL REFERENCES leagues (id),
    is_active boolean DEFAULT true,
    pti numeric(10, 2),
    wins integer DEFAULT 0,
    losses integer DEFAULT 0,
    captain_status varchar(50),
    updated_at timestamptz DEFAULT CURRENT_TIMESTAMP,
    team_id integer REFERENCES teams (id),
    CONSTRAINT unique_player_in_league_club_series
        UNIQUE (tenniscores_player_id, league_id, club_id, series_id)
);

CREATE TABLE series_stats (
    id serial PRIMARY KEY,
    series varchar(255),
    team varchar(255),
    points integer,
    matches_won integer,
    matches_lost integer,
    matches_tied integer,
    created_at timestamptz DEFAULT CURRENT_TIMESTAMP,
    league_id integer REFERENCES leagues (id),
    team_id integer REFERENCES teams (id),
    series_id integer REFERENCES series (id)
);

CREATE TABLE schedule (
    id serial PRIMARY KEY,
    match_date date,
    match_time time,
    home_team text,
    away_team text,
    location text,
    created_at timestamptz DEFAULT CURRENT_TIMESTAMP,
    league_id integer REFERENCES leagues (id),
    home_team_id integer REFERENCES teams (id),
    away_team_id integer REFERENCES teams (id)
);

CREATE TABLE users (
    id serial PRIMARY KEY,
    email varchar(255) NOT NULL CONSTRAINT users_email_key UNIQUE,
    password_hash varchar(255) NOT NULL,
    first_name varchar(255),
    last_name varchar(255),
    created_at timestamptz DEFAULT CURRENT_TIMESTAMP,
    is_admin boolean NOT NULL DEFAULT false,
    league_id integer,
    tenniscores_player_id varchar(255),
    league_context integer,
    club_id integer REFERENCES clubs (id),
    series_id integer REFERENCES series (id)
);

CREATE TABLE user_player_associations (
    user_id integer NOT NULL REFERENCES users (id),
    tenniscores_player_id varchar(255) NOT NULL,
    is_primary boolean DEFAULT false,
    created_at timestamptz DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (user_id, tenniscores_player_id)
);

CREATE TABLE polls (
    id serial PRIMARY KEY,
    team_id integer,
    created_by integer REFERENCES users (id),
    question text NOT NULL,
    created_at timestamptz DEFAULT now()
);

CREATE TABLE poll_choices (
    id serial PRIMARY KEY,
    poll_id integer REFERENCES polls (id) ON DELETE CASCADE,
    choice_text text NOT NULL
);

CREATE TABLE poll_responses (
    id serial PRIMARY KEY,
    poll_id integer REFERENCES polls (id) ON DELETE CASCADE,
    choice_id integer REFERENCES poll_choices (id),
    player_id integer,
    responded_at timestamptz DEFAULT now(),
    CONSTRAINT unique_poll_player_response UNIQUE (poll_id, player_id)
);

CREATE TABLE captain_messages (
    id serial PRIMARY KEY,
    team_id integer NOT NULL REFERENCES teams (id),
    captain_user_id integer NOT NULL REFERENCES users (id),
    message text NOT NULL,
    created_at timestamptz DEFAULT now()
);

CREATE TABLE player_availability (
    id serial PRIMARY KEY,
    player_name varchar(255) NOT NULL,
    availability_status integer NOT NULL DEFAULT 3,
    updated_at timestamptz DEFAULT CURRENT_TIMESTAMP,
    series_id integer NOT NULL,
    match_date timestamptz NOT NULL,
    player_id integer,
    notes text,
    user_id integer REFERENCES users (id),
    CONSTRAINT valid_availability_status CHECK (availability_status IN (1, 2, 3))
);

CREATE TABLE activity_log (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    player_id integer,
    team_id integer,
    user_id integer REFERENCES users (id),
    action_type varchar(255) NOT NULL,
    action_description text NOT NULL,
    "timestamp" timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE system_settings (
    id serial PRIMARY KEY,
    key varchar(100) NOT NULL CONSTRAINT system_settings_key_key UNIQUE,
    value text NOT NULL,
    description text,
    created_at timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp DEFAULT CURRENT_TIMESTAMP
);
