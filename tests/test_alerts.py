"""Issue 15: alerts posted to a real local HTTP server; failed deliveries recorded and shown;
the last-success gauge of ``health --prometheus``."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import psycopg2
import pytest

from bulletproof_etl.cli import main
from test_review_scenario import value


class Hook:
    """A webhook receiver on 127.0.0.1 (a free port); ``answer`` is the HTTP status it replies."""

    def __init__(self, answer: int = 200) -> None:
        self.received: list = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the http.server name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append((self.path, self.headers["Content-Type"], json.loads(body)))
                self.send_response(hook.answer)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.answer = answer
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/T000/secret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def test_healthy_run_sends_nothing_and_says_so(db_dsn, hook, capsys):
    assert main(["run", "-q", "--dsn", db_dsn, "--notify", hook.url]) == 0
    assert hook.received == []
    assert "no alert sent: health PERFECT" in capsys.readouterr().err


def test_warning_run_posts_slack_text(db_dsn, hook, capsys):
    from test_review_scenario import make_quarantine

    make_quarantine(db_dsn)
    conn = psycopg2.connect(db_dsn)
    with conn.cursor() as cur:  # a new stale row: the next run quarantines it (WARNING)
        cur.execute("SET session_replication_role = replica")
        cur.execute("INSERT INTO polls (id, team_id, question) VALUES (9009, 99909, 'Anyone?')")
        cur.execute("SET session_replication_role = DEFAULT")
    conn.commit()
    conn.close()
    assert main(["run", "-q", "--dsn", db_dsn, "--notify", hook.url]) == 1
    assert len(hook.received) == 1
    path, ctype, message = hook.received[0]
    assert (path, ctype) == ("/hooks/T000/secret", "application/json")
    assert message["text"].startswith("bulletproof-etl run: health is WARNING")
    assert message["status"] == "WARNING" and message["failed"] is False and message["run_id"] == 3
    assert "1 quarantine entries written by run 3" in message["text"]
    assert "alert sent to http://127.0.0.1" in capsys.readouterr().err
    assert value(db_dsn, "SELECT target, ok FROM bulletproof.alert_deliveries") == [
        (f"http://127.0.0.1:{hook.server.server_port}/...", True)]


def test_failed_run_and_stale_success_alert(db_dsn, hook, tmp_path):
    assert main(["run", "-q", "--dsn", db_dsn]) == 0
    conn = psycopg2.connect(db_dsn)
    with conn.cursor() as cur:  # the last success, two days ago
        cur.execute("UPDATE bulletproof.runs SET finished_at = now() - interval '48 hours'")
    conn.commit()
    conn.close()
    assert main(["health", "-q", "--dsn", db_dsn, "--notify", hook.url]) == 0
    text = hook.received[-1][2]["text"]
    assert "the last successful import finished 48.0 h ago (threshold 26 h)" in text
    assert main(["run", "-q", "--dsn", db_dsn, "--data-dir", str(tmp_path / "missing"), "--notify", hook.url]) == 2
    message = hook.received[-1][2]
    assert message["failed"] is True and "FAILED" in message["text"]
    assert len(hook.received) == 2


def test_failed_delivery_is_logged_recorded_and_shown(db_dsn, capsys):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from bulletproof_etl.web.app import create_app

    down = Hook(answer=500)
    url = down.url
    assert main(["run", "-q", "--dsn", db_dsn]) == 0
    conn = psycopg2.connect(db_dsn)
    with conn.cursor() as cur:
        cur.execute("UPDATE bulletproof.runs SET finished_at = now() - interval '30 hours'")
    conn.commit()
    conn.close()
    assert main(["health", "-q", "--dsn", db_dsn, "--notify", url]) == 0
    assert "FAILED: HTTP 500" in capsys.readouterr().err
    down.close()
    assert main(["health", "-q", "--dsn", db_dsn, "--notify", url]) == 0  # nobody listens now
    assert "FAILED" in capsys.readouterr().err
    rows = value(db_dsn, "SELECT ok, error FROM bulletproof.alert_deliveries ORDER BY id")
    assert [r[0] for r in rows] == [False, False] and rows[0][1].startswith("HTTP 500")
    page = TestClient(create_app(db_dsn), base_url="http://127.0.0.1").get("/").text
    assert "Alert deliveries that FAILED" in page and "HTTP 500" in page
    assert "STALE" in page


def test_prometheus_adds_the_last_success_timestamp(db_dsn, capsys):
    assert main(["health", "--prometheus", "--dsn", db_dsn]) == 0
    assert "bulletproof_last_success_timestamp_seconds 0\n" in capsys.readouterr().out
    assert main(["run", "-q", "--dsn", db_dsn]) == 0
    capsys.readouterr()
    assert main(["health", "--prometheus", "--dsn", db_dsn]) == 0
    out = capsys.readouterr().out
    stamp = value(db_dsn, "SELECT floor(extract(epoch FROM finished_at))::bigint FROM bulletproof.runs")[0][0]
    assert f"bulletproof_last_success_timestamp_seconds {stamp}\n" in out
    assert out.count("# TYPE bulletproof_last_success_timestamp_seconds gauge") == 1
