"""Issue 15: every review action on a real PostgreSQL: one transaction, audited, reversible,
refused (changing nothing) when the row or the team changed since it was shown."""

from __future__ import annotations

import json

import psycopg2
import pytest

from bulletproof_etl.cli import main
from bulletproof_etl.config import DEFAULT_CONFIG
from bulletproof_etl.review import ReviewRefused, accept, assign, discard, load_queue, revert, undo
from test_review_scenario import make_quarantine, value


@pytest.fixture
def q(db_dsn):
    return make_quarantine(db_dsn)


def _queue(dsn, **kw):
    conn = psycopg2.connect(dsn)
    try:
        return load_queue(conn, DEFAULT_CONFIG, **kw)
    finally:
        conn.close()


def _conn(dsn):
    return psycopg2.connect(dsn)


def test_queue_groups_by_stale_reference_with_candidates(db_dsn, q):
    queue = _queue(db_dsn)
    assert queue.counts() == {"open": 3, "assigned": 0, "discarded": 0}
    groups = dict(queue.groups())
    assert sorted(groups) == ["teams 99901", "teams 99905"]
    assert [e.id for e in groups["teams 99901"]] == [q["poll1"], q["poll2"]]
    poll = groups["teams 99901"][0]
    assert poll.current_ref is None and poll.stale_id == 99901 and len(poll.version) == 12
    assert poll.candidates == [] and poll.lookup_error is None  # "no match", not "lookup failed"
    message = groups["teams 99905"][0]
    assert message.current_ref == 99905  # on the inactive placeholder
    # the author's own team is a candidate, with its evidence; the ledger knows no key for 99905
    assert [(c.id, c.score) for c in message.candidates] == [(q["author_team"], 25)]
    assert message.candidates[0].evidence == ["a team of the row's author"]


def test_assign_moves_the_row_and_is_audited_and_undone(db_dsn, q):
    conn = _conn(db_dsn)
    shown = {e.id: e for e in _queue(db_dsn).entries}[q["poll1"]]
    result = assign(conn, DEFAULT_CONFIG, q["poll1"], q["other_team"], actor="ops", expect_row=shown.version)
    assert result.rows == ["polls id=9001"] and len(result.actions) == 1
    assert value(db_dsn, "SELECT team_id FROM polls WHERE id IN (9001, 9002) ORDER BY id") == [(q["other_team"],), (None,)]
    audit = value(db_dsn, "SELECT actor, action, quarantine_id, table_name, before->>'team_id', after->>'team_id' "
                          "FROM bulletproof.review_actions")
    assert audit == [("ops", "assign", q["poll1"], "polls", None, str(q["other_team"]))]
    assert _queue(db_dsn).counts() == {"open": 2, "assigned": 0, "discarded": 0}
    assert _queue(db_dsn, status="all").counts() == {"open": 2, "assigned": 1, "discarded": 0}
    # the quarantine entry itself is kept (never deleted)
    assert value(db_dsn, "SELECT count(*) FROM bulletproof.quarantine") == [(3,)]
    back = undo(conn, DEFAULT_CONFIG, result.actions[0], actor="ops")
    assert value(db_dsn, "SELECT team_id FROM polls WHERE id = 9001") == [(None,)]
    assert value(db_dsn, "SELECT undone_by FROM bulletproof.review_actions WHERE id = %s",
                 (result.actions[0],)) == [(back.actions[0],)]
    assert _queue(db_dsn).counts()["open"] == 3
    conn.close()


def test_assign_every_row_of_the_same_stale_reference_in_one_transaction(db_dsn, q):
    conn = _conn(db_dsn)
    result = assign(conn, DEFAULT_CONFIG, q["poll1"], q["author_team"], same_reference=True)
    assert sorted(result.rows) == ["polls id=9001", "polls id=9002"]
    assert value(db_dsn, "SELECT team_id FROM polls WHERE id IN (9001, 9002)") == [(q["author_team"],)] * 2
    assert value(db_dsn, "SELECT count(*) FROM bulletproof.review_actions") == [(2,)]
    conn.close()


def test_stale_actions_are_refused_and_change_nothing(db_dsn, q):
    conn = _conn(db_dsn)
    shown = {e.id: e for e in _queue(db_dsn).entries}[q["poll1"]]
    team_version = value(db_dsn, "SELECT left(md5(to_jsonb(t)::text), 12) FROM teams t WHERE id = %s",
                         (q["author_team"],))[0][0]
    # the row changed since it was shown (a user edited the question)
    with conn.cursor() as cur:
        cur.execute("UPDATE polls SET question = 'edited' WHERE id = 9001")
    conn.commit()
    with pytest.raises(ReviewRefused, match="changed since it was shown") as err:
        assign(conn, DEFAULT_CONFIG, q["poll1"], q["author_team"], expect_row=shown.version)
    assert err.value.why == "row_changed"
    # the team changed since it was shown
    with conn.cursor() as cur:
        cur.execute("UPDATE teams SET display_name = display_name || ' (renamed)' WHERE id = %s", (q["author_team"],))
    conn.commit()
    fresh = {e.id: e for e in _queue(db_dsn).entries}[q["poll1"]]
    with pytest.raises(ReviewRefused, match="teams .* changed since it was shown") as err:
        assign(conn, DEFAULT_CONFIG, q["poll1"], q["author_team"], expect_row=fresh.version,
               expect_team=team_version)
    assert err.value.why == "team_changed"
    # someone fixed the reference by hand meanwhile
    with conn.cursor() as cur:
        cur.execute("UPDATE polls SET team_id = %s WHERE id = 9002", (q["other_team"],))
    conn.commit()
    with pytest.raises(ReviewRefused, match="not what the quarantine left"):
        assign(conn, DEFAULT_CONFIG, q["poll2"], q["author_team"])
    # an inactive team (the placeholder) is never a target
    with pytest.raises(ReviewRefused, match="inactive") as err:
        assign(conn, DEFAULT_CONFIG, q["poll1"], 99905)
    assert err.value.why == "team_inactive"
    assert value(db_dsn, "SELECT count(*) FROM bulletproof.review_actions") == [(0,)]
    assert value(db_dsn, "SELECT id, team_id FROM polls WHERE id IN (9001, 9002) ORDER BY id") == [
        (9001, None), (9002, q["other_team"])]
    conn.close()


def test_accept_takes_the_single_top_candidate(db_dsn, q):
    conn = _conn(db_dsn)
    with pytest.raises(ReviewRefused, match="no candidate") as err:
        accept(conn, DEFAULT_CONFIG, q["poll1"])
    assert err.value.why == "no_candidate"
    result = accept(conn, DEFAULT_CONFIG, q["message"], actor="ops")
    assert value(db_dsn, "SELECT team_id FROM captain_messages WHERE id = 9005") == [(q["author_team"],)]
    assert value(db_dsn, "SELECT action, before->>'team_id' FROM bulletproof.review_actions") == [("accept", "99905")]
    assert result.action == "accept"
    with pytest.raises(ReviewRefused, match="assigned already"):
        accept(conn, DEFAULT_CONFIG, q["message"])
    conn.close()


def test_discard_keeps_the_row_quarantined_and_marked(db_dsn, q):
    conn = _conn(db_dsn)
    with pytest.raises(ReviewRefused, match="needs a reason"):
        discard(conn, DEFAULT_CONFIG, q["message"], " ")
    discard(conn, DEFAULT_CONFIG, q["message"], "test message from the captain", actor="ops")
    assert value(db_dsn, "SELECT team_id FROM captain_messages WHERE id = 9005") == [(99905,)]
    assert value(db_dsn, "SELECT count(*) FROM bulletproof.quarantine") == [(3,)]
    entry = {e.id: e for e in _queue(db_dsn, status="all").entries}[q["message"]]
    assert (entry.status, entry.note) == ("discarded", "test message from the captain")
    conn.close()


def test_revert_a_context_mapping_and_refuse_a_direct_one(db_dsn, q):
    conn = _conn(db_dsn)
    with conn.cursor() as cur:  # a followed rename, as the restore records it
        cur.execute("SELECT id, team_id FROM polls WHERE team_id <> %s AND id < 9000 ORDER BY id LIMIT 2",
                    (q["other_team"],))
        (poll, team), (other_poll, _) = cur.fetchall()
        cur.execute("INSERT INTO bulletproof.mappings (run_id, table_name, pk, column_name, old_id, new_id, strategy) "
                    "VALUES (2, 'polls', %s, 'team_id', %s, %s, 'context'), "
                    "(2, 'polls', %s, 'team_id', 1, 1, 'direct')",
                    (json.dumps({"id": poll}), q["other_team"], team, json.dumps({"id": other_poll})))
    conn.commit()
    mapping, direct = f"2:polls:team_id:{poll}", f"2:polls:team_id:{other_poll}"
    assert [m.id for m in _queue(db_dsn).mappings] == [mapping]  # direct ones are not listed
    with pytest.raises(ReviewRefused, match="is direct"):
        revert(conn, DEFAULT_CONFIG, direct)
    result = revert(conn, DEFAULT_CONFIG, mapping, actor="ops")
    assert value(db_dsn, "SELECT team_id FROM polls WHERE id = %s", (poll,)) == [(q["other_team"],)]
    with pytest.raises(ReviewRefused, match="reverted already"):
        revert(conn, DEFAULT_CONFIG, mapping)
    undo(conn, DEFAULT_CONFIG, result.actions[0])
    assert value(db_dsn, "SELECT team_id FROM polls WHERE id = %s", (poll,)) == [(team,)]
    conn.close()


def test_undo_refuses_when_the_row_moved_since(db_dsn, q):
    conn = _conn(db_dsn)
    done = assign(conn, DEFAULT_CONFIG, q["poll1"], q["other_team"])
    with conn.cursor() as cur:
        cur.execute("UPDATE polls SET question = 'edited after the assign' WHERE id = 9001")
    conn.commit()
    with pytest.raises(ReviewRefused, match="changed since action"):
        undo(conn, DEFAULT_CONFIG, done.actions[0])
    assert value(db_dsn, "SELECT team_id FROM polls WHERE id = 9001") == [(q["other_team"],)]
    conn.close()


def test_cli_review_json_and_actions(db_dsn, q, capsys):
    assert main(["review", "--dsn", db_dsn, "--json"]) == 1  # open entries: exit 1
    listed = json.loads(capsys.readouterr().out)
    assert listed["counts"] == {"open": 3, "assigned": 0, "discarded": 0}
    entry = next(e for g in listed["groups"] for e in g["entries"] if e["id"] == q["poll1"])
    assert main(["review", "--dsn", db_dsn, "--json", "--by", "cli-test", "assign", str(q["poll1"]),
                 "--team", str(q["author_team"]), "--expect", entry["version"]]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["ok"] is True and done["rows"] == ["polls id=9001"]
    # the same version again: the row moved, the action is refused with exit 2
    assert main(["review", "--dsn", db_dsn, "--json", "assign", str(q["poll2"]), "--team",
                 str(q["author_team"]), "--expect", entry["version"]]) == 2
    refused = json.loads(capsys.readouterr().out)
    assert refused["ok"] is False and refused["refused"] == "row_changed"
    assert main(["review", "--dsn", db_dsn, "discard", str(q["message"]), "--reason", "spam"]) == 0
    assert main(["review", "--dsn", db_dsn, "undo", str(done["actions"][0])]) == 0
    assert main(["review", "--dsn", db_dsn, "log"]) == 0
    out = capsys.readouterr().out
    assert "cli-test" in out and "undone by" in out
    assert value(db_dsn, "SELECT action, actor FROM bulletproof.review_actions ORDER BY id") == [
        ("assign", "cli-test"), ("discard", value(db_dsn, "SELECT actor FROM bulletproof.review_actions "
                                                           "WHERE action = 'discard'")[0][0]),
        ("undo", value(db_dsn, "SELECT actor FROM bulletproof.review_actions WHERE action = 'undo'")[0][0])]
