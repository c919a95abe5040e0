"""``bulletproof-etl review``: the review queue and its actions, from the command line."""

from __future__ import annotations

import argparse
import json
import sys

from .. import db

EXIT_OK, EXIT_WARNING, EXIT_FAILED = 0, 1, 2


def add_review_parser(sub, parents: list) -> None:
    review = sub.add_parser(
        "review", parents=parents, help="review quarantined rows and mappings; assign, accept, discard, revert, undo",
        description="Without an action: the quarantine grouped by stale reference, each row with its ranked "
                    "candidate teams and their evidence, and the recorded mappings that moved rows to another "
                    "key. Every action is one transaction, audited, reversible (undo), and refused when the row "
                    "or the team changed since it was shown (--expect, --expect-team).")
    review.add_argument("--status", choices=("open", "assigned", "discarded", "all"), default="open",
                        help="which quarantine entries to list (default open)")
    review.add_argument("--run", type=int, metavar="RUN", help="only the entries and mappings of run RUN")
    review.add_argument("--json", action="store_true", help="print the queue or the action's result as JSON")
    review.add_argument("--by", metavar="NAME", help="who acts, for the audit table (default: the OS user)")
    actions = review.add_subparsers(dest="review_action", metavar="ACTION", title="actions")
    assign = actions.add_parser("assign", help="put a quarantined row on a team")
    assign.add_argument("entry", type=int, metavar="ID", help="the quarantine entry")
    assign.add_argument("--team", type=int, required=True, metavar="TEAM_ID", help="the team (or entity) id")
    assign.add_argument("--all-same", action="store_true",
                        help="every open row of the same stale reference, in the same transaction")
    assign.add_argument("--expect", metavar="VERSION", help="refuse unless the row's version is still this")
    assign.add_argument("--expect-team", metavar="VERSION", help="refuse unless the team's version is still this")
    accept = actions.add_parser("accept", help="put a quarantined row on its top candidate")
    accept.add_argument("entry", type=int, metavar="ID", help="the quarantine entry")
    accept.add_argument("--expect", metavar="VERSION", help="refuse unless the row's version is still this")
    discard = actions.add_parser("discard", help="mark a quarantined row discarded (it stays quarantined)")
    discard.add_argument("entry", type=int, metavar="ID", help="the quarantine entry")
    discard.add_argument("--reason", required=True, metavar="TEXT", help="why (kept in the audit table)")
    discard.add_argument("--expect", metavar="VERSION", help="refuse unless the row's version is still this")
    revert = actions.add_parser("revert", help="undo a recorded mapping (e.g. a followed club rename)")
    revert.add_argument("mapping", metavar="MAPPING", help="the mapping, as listed: run:table:column:primary key")
    revert.add_argument("--expect", metavar="VERSION", help="refuse unless the row's version is still this")
    undo = actions.add_parser("undo", help="undo an earlier review action")
    undo.add_argument("action_id", type=int, metavar="ACTION", help="the review action id")
    actions.add_parser("log", help="the audit table: every review action, newest first")
    review.set_defaults(handler=cmd_review, review_action=None)
    for p in (assign, accept, discard, revert, undo):
        p.set_defaults(handler=cmd_review)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def cmd_review(args: argparse.Namespace) -> int:
    from ..review import actions, queue
    from .commands import load_config

    config = load_config(args)
    conn = db.connect(args.dsn)
    try:
        act = args.review_action
        if act is None:
            q = queue.load_queue(conn, config, status=args.status, run_id=args.run)
            _out(queue.dumps(q) if args.json else render_queue(q))
            return EXIT_WARNING if q.counts()["open"] and args.status in ("open", "all") else EXIT_OK
        if act == "log":
            q = queue.load_queue(conn, config, status="all", candidates=False)
            if args.json:
                _out(json.dumps([a.to_dict() for a in q.actions], indent=2, sort_keys=True, default=str))
            else:
                _out(render_actions(q.actions))
            return EXIT_OK
        by = args.by
        if act == "assign":
            result = actions.assign(conn, config, args.entry, args.team, actor=by, expect_row=args.expect,
                                    expect_team=args.expect_team, same_reference=args.all_same)
        elif act == "accept":
            result = actions.accept(conn, config, args.entry, actor=by, expect_row=args.expect)
        elif act == "discard":
            result = actions.discard(conn, config, args.entry, args.reason, actor=by, expect_row=args.expect)
        elif act == "revert":
            result = actions.revert(conn, config, args.mapping, actor=by, expect_row=args.expect)
        else:
            result = actions.undo(conn, config, args.action_id, actor=by)
    except actions.ReviewRefused as exc:
        if args.json:
            _out(json.dumps({"ok": False, "refused": exc.why, "error": str(exc)}, indent=2))
            return EXIT_FAILED
        raise
    finally:
        conn.close()
    _out(json.dumps({"ok": True, **result.to_dict()}, indent=2, sort_keys=True) if args.json
         else f"done: {result.message}")
    return EXIT_OK


def render_queue(q) -> str:
    from .render import table

    counts = q.counts()
    lines = [f"quarantine: {counts['open']} open, {counts['assigned']} assigned, {counts['discarded']} discarded"]
    for label, entries in q.groups():
        lines.append(f"\nstale reference {label}: {len(entries)} row(s)")
        for e in entries:
            ref = e.current_ref if e.current else "(row not in its table)"
            lines.append(f"  entry {e.id} [{e.status}] run {e.run_id}: {e.table_name} "
                         f"{json.dumps(e.pk, sort_keys=True)} {e.column_name}={ref} version {e.version}")
            lines.append(f"    reason: {e.reason}")
            if e.lookup_error:
                lines.append(f"    candidates: lookup FAILED: {e.lookup_error}")
            elif e.status == "open" and not e.candidates:
                lines.append("    candidates: none (no evidence names a team)")
            for c in e.candidates[:5]:
                lines.append(f"    candidate {c.id} score {c.score} version {c.version}: {c.label}")
                for why in c.evidence:
                    lines.append(f"      - {why}")
    if q.mappings:
        rows = [[m.id, m.run_id, m.table_name, json.dumps(m.pk, sort_keys=True), m.strategy,
                 f"{m.old_id} -> {m.new_id}", "reverted" if m.reverted_by else ""] for m in q.mappings]
        lines.append("\nmappings to another key (revert MAPPING undoes one):")
        lines.append(table(["mapping", "run", "table", "row", "strategy", "team", ""], rows, right={0, 1}))
    return "\n".join(lines)


def render_actions(items) -> str:
    from .render import table

    if not items:
        return "no review action yet"
    rows = [[a.id, a.at, a.actor, a.action, a.target, a.reason or "",
             f"undone by {a.undone_by}" if a.undone_by else ""] for a in items]
    return table(["action", "at", "by", "what", "target", "reason", ""], rows, right={0})
