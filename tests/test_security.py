"""Security (issue 6): SQL built safely, odd names work, snapshots closed to PUBLIC, least privilege.

- Every SQL text the packages execute is a literal or a ``psycopg2.sql`` composition: an AST
  walk over ``src/`` finds no f-string, ``%`` formatting, ``str.format`` or concatenation of
  names in anything handed to ``execute``/``copy_expert``/``sql.SQL``.
- Schema, table, column and state-schema names with quotes, spaces and semicolons work
  through a whole import and restore.
- The state schema and every table in it (they hold users' messages) carry no privilege for
  PUBLIC and belong to the role that ran the import; the documented GRANTs give an operator
  role read access, and only that.
- Retention really removes the snapshots past ``keep_runs``: a message a user deleted is
  nowhere in the state schema once the last snapshot holding it expired.
- A role that owns the app tables but is not a superuser runs the import; a missing privilege
  is a ``MissingPrivilege`` naming the privilege and the object, and changes nothing.
"""

from __future__ import annotations

import ast
import re
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

import conftest
import rally_etl
from bulletproof_etl import (
    DEFAULT_CONFIG,
    BulletproofTeamPreservation,
    HealthStatus,
    MissingPrivilege,
    PreservationConfig,
)
from bulletproof_etl.integration import create_bulletproof_etl_wrapper
from rally_etl import ComprehensiveETL
from reliability_support import (
    changed_tables,
    clone,
    data_checksums,
    template_database,
    write_seasons,
)
from support import team_keys, user_ref_keys, user_row_counts

ROOT = Path(__file__).resolve().parents[1]
N_TEAMS = 40


# -- 1. no SQL built from strings ----------------------------------------------------------------

EXECUTING = {"execute", "executemany", "copy_expert", "copy_from", "copy_to", "mogrify", "callproc"}


def _is_composable(node, assigned) -> bool:
    """A ``psycopg2.sql`` object: SQL/Identifier/Literal/Placeholder, their format/join/+, or a
    name bound to one."""
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in ("SQL", "Identifier", "Literal", "Placeholder", "Composed"):
            return True
        if isinstance(func, ast.Attribute) and func.attr in ("format", "join"):
            return _is_composable(func.value, assigned)
        return False
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        return _is_composable(node.left, assigned) or _is_composable(node.right, assigned)
    if isinstance(node, ast.Name) and node.id in assigned:
        return _is_composable(assigned[node.id], {})
    return False


def _built(node, assigned) -> str | None:
    """Why the SQL text ``node`` is built from strings at run time (None: it is not)."""
    if isinstance(node, ast.JoinedStr):
        return "f-string"
    if _is_composable(node, assigned):
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return "% formatting"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        for side in (node.left, node.right):
            if not isinstance(side, ast.Constant):
                return _built(side, assigned) or f"concatenation with {ast.unparse(side)}"
        return None
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("format", "join")
    ):
        return f"str.{node.func.attr}"
    if isinstance(node, ast.Name) and node.id in assigned:
        return _built(assigned[node.id], {})
    return None


def sql_built_from_strings(source: str, filename: str = "<source>") -> list:
    """``(file, line, why, code)`` for every SQL text built with f-strings, % or str.format."""
    tree = ast.parse(source)
    found = set()
    scopes = [
        n
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    for scope in scopes:
        assigned = {}
        for node in ast.walk(scope):
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
            ):
                assigned[node.targets[0].id] = node.value
        for node in ast.walk(scope):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in EXECUTING or name == "SQL":
                why = _built(node.args[0], assigned)
                if why:
                    found.add((filename, node.lineno, why, ast.unparse(node.args[0])[:100]))
    return sorted(found)


BAD_SNIPPETS = {
    "f-string": 'def f(cur, t):\n    cur.execute(f"DELETE FROM {t}")\n',
    "% formatting": 'def f(cur, t):\n    cur.execute("DELETE FROM %s" % t)\n',
    "str.format": 'def f(cur, t):\n    cur.execute("DELETE FROM {}".format(t))\n',
    "concatenation with t": 'def f(cur, t):\n    cur.execute("DELETE FROM " + t)\n',
    "f-string via a name": 'def f(cur, t):\n    q = f"DELETE FROM {t}"\n    cur.execute(q)\n',
    "f-string in sql.SQL": 'def f(cur, t):\n    cur.execute(sql.SQL(f"DELETE FROM {t}"))\n',
}


@pytest.mark.parametrize("kind", list(BAD_SNIPPETS))
def test_security_the_checker_finds_sql_built_from_strings(kind):
    found = sql_built_from_strings(BAD_SNIPPETS[kind])
    assert len(found) == 1, found
    assert found[0][2] == kind.replace(" via a name", "").replace(" in sql.SQL", "")


def test_security_the_checker_accepts_composed_sql():
    good = (
        "def f(cur, t, v):\n"
        '    cur.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(sql.Identifier(t)), (v,))\n'
        '    q = sql.SQL("SELECT 1 FROM {}").format(sql.Identifier("x", t))\n'
        '    cur.execute(q + sql.SQL(" LIMIT 1"))\n'
        '    cur.execute("SELECT %s", (t,))\n'
        '    cur.execute("SELECT 1 " "FROM x")\n'
    )
    assert sql_built_from_strings(good) == []


def test_security_no_sql_is_built_with_fstrings_or_percent_in_the_packages():
    files = sorted((ROOT / "src").rglob("*.py"))
    assert len(files) > 30  # both packages are really scanned
    found = []
    for path in files:
        found += sql_built_from_strings(
            path.read_text(encoding="utf-8"), str(path.relative_to(ROOT))
        )
    assert found == []


# -- 2. names with quotes, spaces and semicolons ---------------------------------------------

ODD_SCHEMA = "league app"
ODD_STATE = 'bp "state"; v2'
ODD_TABLES = {
    "leagues": "League's list",
    "clubs": 'Clubs "A-Z"',
    "series": "series; DROP TABLE x",
    "teams": 'Team\'s "roster"',
}
ODD_COLUMNS = {"teams": ("team_name", "Team Name"), "clubs": ("name", 'Club\'s "name"')}


def _install_odd_schema(conn) -> PreservationConfig:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(ODD_SCHEMA)))
        cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(ODD_SCHEMA)))
        cur.execute(rally_etl.schema_sql())
        for entity, (old, new) in ODD_COLUMNS.items():
            cur.execute(
                sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(
                    sql.Identifier(ODD_SCHEMA, entity), sql.Identifier(old), sql.Identifier(new)
                )
            )
        for entity, name in ODD_TABLES.items():
            cur.execute(
                sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                    sql.Identifier(ODD_SCHEMA, entity), sql.Identifier(name)
                )
            )
    conn.commit()
    return PreservationConfig(
        schema=ODD_SCHEMA,
        state_schema=ODD_STATE,
        tables=dict(ODD_TABLES),
        team_name=ODD_COLUMNS["teams"][1],
        club_name=ODD_COLUMNS["clubs"][1],
    )


def _odd(table: str) -> sql.Composed:
    return sql.Identifier(ODD_SCHEMA, ODD_TABLES.get(table, table))


def _odd_keys(conn) -> dict:
    """{team id: (league code, club, series)} straight from the odd tables."""
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT t.id, l.league_id, c.{club}, s.name FROM {t} t JOIN {l} l ON l.id = t.league_id "
                "JOIN {c} c ON c.id = t.club_id JOIN {s} s ON s.id = t.series_id"
            ).format(
                club=sql.Identifier(ODD_COLUMNS["clubs"][1]),
                t=_odd("teams"),
                l=_odd("leagues"),
                c=_odd("clubs"),
                s=_odd("series"),
            )
        )
        out = {i: (lg, club, series) for i, lg, club, series in cur.fetchall()}
    conn.rollback()
    return out


def _odd_refs(conn) -> dict:
    keys = _odd_keys(conn)
    out = {}
    with conn.cursor() as cur:
        for table, column in (
            ("polls", "team_id"),
            ("captain_messages", "team_id"),
            ("users", "team_id"),
            ("practice_times", "team_id"),
        ):
            cur.execute(
                sql.SQL("SELECT id, {} FROM {}").format(sql.Identifier(column), _odd(table))
            )
            for pk, ref in cur.fetchall():
                out[(table, pk)] = keys.get(ref, "ORPHAN")
    conn.rollback()
    return out


def _season_teams(tmp_path, n: int) -> list:
    s1, _s2 = write_seasons(tmp_path, n)
    etl = ComprehensiveETL(s1)
    etl.load_json_files()
    return etl.extract_teams()


def test_security_names_with_quotes_spaces_and_semicolons_work(conn, tmp_path):
    config = _install_odd_schema(conn)
    teams = _season_teams(tmp_path, N_TEAMS)
    leagues = sorted({t["league_id"] for t in teams})
    with conn.cursor() as cur:  # the ETL's own league step
        for code in leagues:
            cur.execute(
                sql.SQL("INSERT INTO {} (league_id, league_name) VALUES (%s, %s)").format(
                    _odd("leagues")
                ),
                (code, code.title()),
            )
    conn.commit()
    with BulletproofTeamPreservation(conn, config=config) as p:
        first = p.run(teams)
    conn.commit()
    assert first.teams["created"] == N_TEAMS
    keys_before = _odd_keys(conn)
    assert len(keys_before) == N_TEAMS
    # users build on the teams
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "INSERT INTO {u} (email, team_id) SELECT 'u' || t.id || '@example.org', t.id "
                "FROM {t} t"
            ).format(u=_odd("users"), t=_odd("teams"))
        )
        cur.execute(
            sql.SQL(
                "INSERT INTO {p} (team_id, created_by, question) SELECT u.team_id, u.id, "
                "'Practice on Sunday? It''s \"on\"; --' FROM {u} u"
            ).format(p=_odd("polls"), u=_odd("users"))
        )
        cur.execute(
            sql.SQL(
                "INSERT INTO {m} (team_id, captain_user_id, message) SELECT u.team_id, u.id, "
                "'Bring balls' FROM {u} u"
            ).format(m=_odd("captain_messages"), u=_odd("users"))
        )
        cur.execute(
            sql.SQL(
                "INSERT INTO {pt} (team_id, league_id, day_of_week, start_time, end_time) "
                "SELECT t.id, t.league_id, 'Sunday', '09:00', '10:30' FROM {t} t"
            ).format(pt=_odd("practice_times"), t=_odd("teams"))
        )
    conn.commit()
    refs_before = _odd_refs(conn)
    assert len(refs_before) == 4 * N_TEAMS
    # the legacy habit: delete every entity with foreign keys off, re-insert the leagues (new ids)
    with BulletproofTeamPreservation(conn, config=config) as p:
        p.validate_constraints()
        p.backup_user_data()
        with conn.cursor() as cur:
            cur.execute("SET LOCAL session_replication_role = replica")
            for entity in ("teams", "series", "clubs", "leagues"):
                cur.execute(sql.SQL("DELETE FROM {}").format(_odd(entity)))
            cur.execute("SET LOCAL session_replication_role = DEFAULT")
            for code in leagues:
                cur.execute(
                    sql.SQL("INSERT INTO {} (league_id, league_name) VALUES (%s, %s)").format(
                        _odd("leagues")
                    ),
                    (code, code.title()),
                )
        p.preserve_teams_during_import(teams)
        p.restore_user_data()
        health = p.validate_health(raise_on_critical=True)
    conn.commit()
    assert health.status is not HealthStatus.CRITICAL
    assert _odd_keys(conn) == keys_before  # every team kept its id (G3)
    assert _odd_refs(conn) == refs_before  # every user row on the same team (G1, G4)
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT (SELECT count(*) FROM {rows} WHERE run_id = %s) + (SELECT coalesce(sum(cardinality(pks)), 0) "
                "FROM {keys} WHERE run_id = %s AND column_name = '' AND NOT whole), (SELECT count(*) FROM {runs})"
            ).format(
                runs=sql.Identifier(ODD_STATE, "runs"), rows=sql.Identifier(ODD_STATE, "snap_rows"),
                keys=sql.Identifier(ODD_STATE, "snap_keys"),
            ),
            (p.report.run_id, p.report.run_id),
        )
        rows, runs = cur.fetchone()
        cur.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE entity = 'teams'").format(
                sql.Identifier(ODD_STATE, "ledger")
            )
        )
        ledger_teams = cur.fetchone()[0]
        cur.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (ODD_SCHEMA,)
        )
        odd_tables = cur.fetchone()[0]
    conn.rollback()
    assert runs == 2 and rows == 4 * N_TEAMS  # second run: users, polls, messages, practice
    assert ledger_teams == N_TEAMS
    assert odd_tables == 23  # nothing dropped, whatever the names say


# -- 3. the state schema is closed and owned by the running role ------------------------------------


@contextmanager
def login_role(db_dsn: str, *, owns_app_tables: bool = True, create_on_db: bool = True):
    """A new LOGIN role (not a superuser) and a DSN for it; dropped (with the database) after."""
    name = f"bp_app_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    admin = psycopg2.connect(db_dsn)
    admin.autocommit = True
    dbname = psycopg2.extensions.parse_dsn(db_dsn)["dbname"]
    try:
        with admin.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %s"
                ).format(sql.Identifier(name)),
                (password,),
            )
            if owns_app_tables:
                cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                for (table,) in cur.fetchall():
                    cur.execute(
                        sql.SQL("ALTER TABLE {} OWNER TO {}").format(
                            sql.Identifier("public", table), sql.Identifier(name)
                        )
                    )
            if create_on_db:
                cur.execute(
                    sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                        sql.Identifier(dbname), sql.Identifier(name)
                    )
                )
        params = psycopg2.extensions.parse_dsn(db_dsn)
        params.update(user=name, password=password)
        yield name, psycopg2.extensions.make_dsn(**params), admin
    finally:
        admin.close()
        conftest.drop_database(db_dsn)
        root = psycopg2.connect(conftest._server["dsn"])
        root.autocommit = True
        with root.cursor() as cur:
            for extra in ("_ops", "_x", ""):  # the operator test's roles too, should it have failed
                cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name + extra)))
        root.close()


def _acl_public(cur, kind: str, name: str, schema: str | None = None) -> list:
    """PUBLIC's entries in an ACL (``=...`` items)."""
    if kind == "schema":
        cur.execute("SELECT nspacl::text[] FROM pg_namespace WHERE nspname = %s", (name,))
    else:
        cur.execute(
            "SELECT c.relacl::text[] FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (schema, name),
        )
    acl = cur.fetchone()[0] or []
    return [item for item in acl if item.startswith("=")]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    seasons = write_seasons(tmp_path_factory.mktemp("security"), N_TEAMS)
    template = template_database(seasons[0])
    etl = ComprehensiveETL(seasons[1])
    etl.load_json_files()
    yield template, etl.extract_teams()
    conftest.drop_database(template)


def test_security_a_non_superuser_owner_runs_the_import_and_owns_the_closed_state_schema(seeded):
    template, teams = seeded
    with login_role(clone(template)) as (role, dsn, _admin):
        conn = psycopg2.connect(dsn)
        with conn.cursor() as cur:
            cur.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
            assert cur.fetchone() == (role, False)
        rows_before, refs_before = user_row_counts(conn), user_ref_keys(conn)
        with BulletproofTeamPreservation(conn) as p:
            report = p.run(teams)
        conn.commit()
        assert report.durable_snapshot  # the second connection logged in as the same role
        assert user_row_counts(conn) == rows_before
        assert all(v != "ORPHAN" for v in user_ref_keys(conn).values())
        assert len(refs_before) == len(user_ref_keys(conn))
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'bulletproof'"
            )
            assert cur.fetchone()[0] == role
            assert _acl_public(cur, "schema", "bulletproof") == []
            cur.execute(
                "SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'bulletproof' "
                "AND c.relkind IN ('r', 'S', 'v', 'm')"
            )
            objects = cur.fetchall()
            names = {r[0] for r in objects}
            assert {
                "runs",
                "ledger",
                "snap_entities",
                "snap_rows",
                "snap_keys",
                "mappings",
                "quarantine",
            } <= names
            for relname, _kind, owner in objects:
                assert owner == role, relname
                assert _acl_public(cur, "table", relname, "bulletproof") == [], relname
            # PUBLIC can neither use the schema nor read a table in it
            cur.execute(
                "SELECT has_schema_privilege('public', 'bulletproof', 'USAGE'), "
                "has_table_privilege('public', 'bulletproof.snap_rows', 'SELECT')"
            )
            assert cur.fetchone() == (False, False)
        conn.close()


def test_security_a_non_superuser_runs_the_wrapped_etl(seeded, tmp_path):
    """The legacy clear needs a superuser (session_replication_role); a protected run does not."""
    template, _teams = seeded
    seasons = write_seasons(tmp_path, N_TEAMS)
    wrapped = create_bulletproof_etl_wrapper(ComprehensiveETL)
    with login_role(clone(template)) as (_role, dsn, _admin):
        conn = psycopg2.connect(dsn)
        rows_before, keys_before = user_row_counts(conn), team_keys(conn)
        conn.close()
        assert ComprehensiveETL(seasons[1], dsn).run() is False  # unprotected: refused at its clear
        etl = wrapped(seasons[1], dsn)
        assert etl.run() is True, etl.bulletproof_report.error
        conn = psycopg2.connect(dsn)
        assert user_row_counts(conn) == rows_before
        keys_after = team_keys(conn)
        # every team keeps its id and key, except those the season no longer names that nothing
        # references: removed by the run, as the legacy ETL removes them (issue 17)
        removed = keys_before.keys() - keys_after.keys()
        assert len(removed) == etl.bulletproof_report.teams["removed"] == 2
        assert {i: keys_after[i] for i in keys_before if i not in removed} == {
            i: k for i, k in keys_before.items() if i not in removed}
        conn.close()


def _operator_grants() -> str:
    text = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    match = re.search(r"```sql\n(-- operator read access\n.*?)```", text, re.S)
    assert match, "docs/reliability.md must show the GRANTs for an operator role"
    return match.group(1)


def test_security_documented_grants_give_an_operator_read_access_and_nothing_more(seeded):
    template, teams = seeded
    with login_role(clone(template)) as (role, dsn, admin):
        conn = psycopg2.connect(dsn)
        with BulletproofTeamPreservation(conn) as p:
            p.run(teams)
        conn.commit()
        operator, stranger = f"{role}_ops", f"{role}_x"
        with admin.cursor() as cur:
            for extra in (operator, stranger):
                cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(extra)))
        grants = _operator_grants().replace("etl_owner", role).replace("ops_reader", operator)
        with conn.cursor() as cur:  # run by the owner of the state schema, as documented
            cur.execute(grants)
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM bulletproof.snap_rows")
            snap_rows = cur.fetchone()[0]
            assert snap_rows > 0
            checks = []
            for who in (operator, stranger):
                for table in ("runs", "snap_rows", "ledger", "quarantine"):
                    for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE"):
                        cur.execute(
                            "SELECT has_table_privilege(%s, %s, %s)",
                            (who, f"bulletproof.{table}", privilege),
                        )
                        checks.append((who, table, privilege, cur.fetchone()[0]))
        conn.rollback()
        assert [c for c in checks if c[3]] == [
            (operator, t, "SELECT", True) for t in ("runs", "snap_rows", "ledger", "quarantine")
        ]
        # really reading, as the operator
        with admin.cursor() as cur:
            cur.execute(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(operator), sql.Identifier(role))
            )
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(operator)))
            cur.execute("SELECT count(*) FROM bulletproof.snap_rows")
            assert cur.fetchone()[0] == snap_rows
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("DELETE FROM bulletproof.snap_rows")
        conn.rollback()
        with admin.cursor() as cur:
            for extra in (operator, stranger):
                cur.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(extra)))
                cur.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(extra)))
        conn.close()


# -- 4. missing privileges: named, and nothing changes ------------------------------------------------


def _public_checksums(dsn):
    conn = psycopg2.connect(dsn)
    try:
        return data_checksums(conn)
    finally:
        conn.close()


def _attempt(dsn, teams) -> MissingPrivilege:
    conn = psycopg2.connect(dsn)
    try:
        with pytest.raises(MissingPrivilege) as caught, BulletproofTeamPreservation(conn) as p:
            p.run(teams)
        conn.rollback()
    finally:
        conn.close()
    return caught.value


def test_security_without_create_on_the_database_names_the_privilege(seeded):
    template, teams = seeded
    db = clone(template)
    with login_role(db, create_on_db=False) as (role, dsn, _admin):
        before = _public_checksums(db)
        err = _attempt(dsn, teams)
        dbname = psycopg2.extensions.parse_dsn(db)["dbname"]
        assert (err.privilege, err.target, err.stage) == (
            "CREATE",
            f"database {dbname}",
            "snapshot",
        )
        assert f"the role {role} lacks CREATE on database {dbname}" in str(err)
        assert f"GRANT CREATE ON DATABASE {dbname} TO {role}" in str(err)
        assert changed_tables(before, _public_checksums(db)) == []


def test_security_without_temporary_tables_names_the_privilege(seeded):
    template, teams = seeded
    db = clone(template)
    with login_role(db) as (role, dsn, admin):
        dbname = psycopg2.extensions.parse_dsn(db)["dbname"]
        with admin.cursor() as cur:
            cur.execute(
                sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(
                    sql.Identifier(dbname)
                )
            )
        before = _public_checksums(db)
        err = _attempt(dsn, teams)
        assert (err.privilege, err.target) == ("TEMPORARY", f"database {dbname}")
        assert f"GRANT TEMPORARY ON DATABASE {dbname} TO {role}" in str(err)
        assert changed_tables(before, _public_checksums(db)) == []


def test_security_a_user_table_the_role_cannot_read_is_named(seeded):
    template, teams = seeded
    db = clone(template)
    with login_role(db) as (role, dsn, admin):
        with admin.cursor() as cur:  # videos stays with the administrator, nothing granted
            cur.execute("SELECT current_user")
            cur.execute(
                sql.SQL("ALTER TABLE public.videos OWNER TO {}").format(
                    sql.Identifier(cur.fetchone()[0])
                )
            )
        before = _public_checksums(db)
        err = _attempt(dsn, teams)
        assert err.target == "table videos"
        assert (
            err.privilege == "SELECT, INSERT, UPDATE, DELETE"
        )  # what a run needs there, all missing
        assert f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE videos TO {role}" in str(err)
        assert changed_tables(before, _public_checksums(db)) == []


def test_security_a_state_schema_made_by_an_administrator_needs_usage(seeded):
    template, teams = seeded
    db = clone(template)
    with login_role(db, create_on_db=False) as (role, dsn, admin):
        with admin.cursor() as cur:
            cur.execute("CREATE SCHEMA bulletproof")
            cur.execute("REVOKE ALL ON SCHEMA bulletproof FROM PUBLIC")
        before = _public_checksums(db)
        err = _attempt(dsn, teams)
        assert err.target == "schema bulletproof"
        assert err.privilege == "USAGE, CREATE"
        assert f"GRANT USAGE, CREATE ON SCHEMA bulletproof TO {role}" in str(err)
        assert changed_tables(before, _public_checksums(db)) == []


# -- 5. retention really removes old snapshots -----------------------------------------------------


def test_security_retention_removes_expired_snapshots_for_good(seeded):
    template, teams = seeded
    dsn = clone(template)
    config = DEFAULT_CONFIG.replace(keep_runs=2)
    secret = f"the door code is {uuid.uuid4().hex}"
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO videos (team_id, title, url) SELECT min(id), %s, 'https://v/secret' FROM teams",
                (secret,),
            )
        conn.commit()

        def run(fail: bool = False) -> int:
            with BulletproofTeamPreservation(conn, config=config) as p:
                p.validate_constraints()
                p.backup_user_data()
                if fail:
                    raise_later.append(p.report.run_id)
                    raise RuntimeError("a failed run")
                p.preserve_teams_during_import(teams)
                p.restore_user_data()
                p.validate_health(raise_on_critical=True)
            conn.commit()
            return p.report.run_id

        def holding_secret() -> dict:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT run_id, count(*) FROM bulletproof.snap_rows WHERE row->>'title' = %s "
                    "GROUP BY run_id",
                    (secret,),
                )
                out = dict(cur.fetchall())
            conn.rollback()
            return out

        raise_later: list = []
        r1 = run()
        with conn.cursor() as cur:  # the captain deletes the video (copied whole: it dies with its team)
            cur.execute("DELETE FROM videos WHERE title = %s", (secret,))
        conn.commit()
        r2 = run()
        with pytest.raises(RuntimeError):
            run(fail=True)
        failed = raise_later[0]
        r3 = run()
        assert holding_secret() == {r1: 1}  # two committed runs before r3: nothing expired yet
        r4 = run()
        assert holding_secret() == {}  # r1 expired: the deleted message is gone from every snapshot
        with conn.cursor() as cur:
            cur.execute(
                "SELECT run_id, count(*) FROM bulletproof.snap_rows GROUP BY run_id ORDER BY run_id"
            )
            with_rows = dict(cur.fetchall())
            cur.execute("SELECT DISTINCT run_id FROM bulletproof.snap_entities ORDER BY run_id")
            with_entities = [r[0] for r in cur.fetchall()]
            cur.execute("SELECT run_id, outcome FROM bulletproof.runs ORDER BY run_id")
            outcomes = dict(cur.fetchall())
            cur.execute(
                "SELECT count(*) FROM bulletproof.quarantine WHERE original->>'title' = %s",
                (secret,),
            )
            quarantined = cur.fetchone()[0]
        conn.rollback()
        kept = sorted([r2, failed, r3, r4])
        assert sorted(with_rows) == kept and with_entities == kept
        assert outcomes == {
            r1: "committed+expired",
            r2: "committed",
            failed: "failed",
            r3: "committed",
            r4: "committed",
        }
        assert quarantined == 0
    finally:
        conn.close()
        conftest.drop_database(dsn)
