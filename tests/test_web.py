"""Issue 15: every page and API route of the dashboard, its security, and the static report."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("starlette", reason="the dashboard needs the 'web' extra")
from starlette.testclient import TestClient  # noqa: E402

from bulletproof_etl.cli import main  # noqa: E402
from bulletproof_etl.web.app import create_app  # noqa: E402
from bulletproof_etl.web.security import check_bind  # noqa: E402
from test_review_scenario import make_quarantine, value  # noqa: E402


@pytest.fixture
def q(db_dsn):
    return make_quarantine(db_dsn)


def _client(dsn, **kw):
    return TestClient(create_app(dsn, **kw), base_url="http://127.0.0.1:8765")


def _csrf(page: str) -> str:
    return re.search(r'<meta name="csrf" content="([^"]+)">', page).group(1)


def test_pages_and_api(db_dsn, q, capsys):
    client = _client(db_dsn)
    home = client.get("/")
    assert home.status_code == 200
    assert "Health PERFECT" in home.text and "last successful import" in home.text
    assert home.text.count("<svg") == 3 and "http://" not in home.text.replace("http://www.w3.org/2000/svg", "")
    assert re.findall(r'<a href="/runs/(\d+)">', home.text) == ["2", "1"]
    run = client.get("/runs/2")
    assert run.status_code == 200 and "What changed since run 1" in run.text
    assert client.get("/runs/99").status_code == 404
    review = client.get("/review")
    assert "Review queue: 3 open, 0 assigned, 0 discarded" in review.text
    assert "Stale reference teams 99901" in review.text
    # /api/health answers what `health --json` prints (but the server version line, equal too)
    api = client.get("/api/health")
    assert api.headers["content-type"].startswith("application/json")
    assert main(["health", "--json", "--dsn", db_dsn]) == 0
    assert api.json() == json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in client.get("/api/runs").json()] == [2, 1]
    assert client.get("/api/review").json()["counts"] == {"open": 3, "assigned": 0, "discarded": 0}


def test_assign_by_form_with_csrf_then_undo(db_dsn, q):
    client = _client(db_dsn, actor="web-test")
    page = client.get("/review").text
    token = _csrf(page)
    version = re.search(rf'name="entry" value="{q["message"]}"><input type="hidden" name="team" value="\d+">\s*'
                        r'<input type="hidden" name="expect" value="(\w+)">', page).group(1)
    form = {"entry": q["message"], "team": q["author_team"], "expect": version}
    assert client.post("/review/assign", data=form, follow_redirects=False).status_code == 403  # no CSRF
    done = client.post("/review/assign", data={**form, "csrf": token})
    assert done.status_code == 200 and "Done: 1 row(s) moved to teams" in done.text
    assert value(db_dsn, "SELECT team_id FROM captain_messages WHERE id = 9005") == [(q["author_team"],)]
    assert value(db_dsn, "SELECT actor, action FROM bulletproof.review_actions") == [("web-test", "assign")]
    # the same (now stale) form again: refused, nothing changed
    again = client.post("/review/assign", data={**form, "csrf": token})
    assert "Refused:" in again.text
    assert value(db_dsn, "SELECT count(*) FROM bulletproof.review_actions") == [(1,)]
    action = value(db_dsn, "SELECT id FROM bulletproof.review_actions")[0][0]
    undone = client.post("/review/undo", data={"action_id": action, "csrf": token})
    assert "Done: action" in undone.text
    assert value(db_dsn, "SELECT team_id FROM captain_messages WHERE id = 9005") == [(99905,)]
    discard = client.post("/review/discard", data={"entry": q["poll1"], "reason": "test data", "csrf": token})
    assert "discarded" in discard.text
    assert client.post("/review/nonsense", data={"csrf": token}).status_code == 400


def test_host_header_token_and_cross_site_post(db_dsn):
    assert main(["run", "-q", "--dsn", db_dsn]) == 0
    client = _client(db_dsn)
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200
    token = _csrf(client.get("/review").text)
    cross = client.post("/review/undo", data={"action_id": 1, "csrf": token},
                        headers={"origin": "http://evil.example"}, follow_redirects=False)
    assert cross.status_code == 403
    guarded = TestClient(create_app(db_dsn, host="0.0.0.0", token="s3cret"), base_url="http://0.0.0.0:8765")
    assert guarded.get("/api/health").status_code == 401
    assert guarded.get("/api/health", headers={"authorization": "Bearer s3cret"}).status_code == 200
    assert guarded.get("/?token=s3cret").status_code == 200  # sets the cookie, then the page
    assert guarded.get("/api/health").status_code == 200
    with pytest.raises(Exception, match="needs a token"):
        check_bind("0.0.0.0", None)
    check_bind("127.0.0.1", None)
    assert main(["serve", "--dsn", db_dsn, "--host", "0.0.0.0", "--token", ""]) == 2


def test_static_report_is_one_self_contained_file(db_dsn, q, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", "--dsn", db_dsn, "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    html = out.read_text()
    assert "<form" not in html and 'src="' not in html and "<link" not in html
    assert 'id="run-2"' in html and 'id="run-1"' in html and 'href="#run-2"' in html
    assert "Review queue: 3 open" in html and html.count("<svg") == 3
