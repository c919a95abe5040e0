"""``run --notify URL``, ``health --notify URL`` and the last-success gauge of ``health --prometheus``.

The commands themselves are ``commands.cmd_run`` and ``commands.cmd_health``; this module runs
them and then says (and posts) what happened, read back from what the run recorded.
"""

from __future__ import annotations

import argparse
import sys

from .. import db


def add_notify_options(parser: argparse.ArgumentParser, handler) -> None:
    parser.add_argument("--notify", metavar="URL",
                        help="post a JSON alert (Slack-compatible 'text') to URL on CRITICAL, WARNING, failure, "
                             "or a last success older than --stale-hours")
    parser.add_argument("--stale-hours", type=float, default=26.0, metavar="H",
                        help="alert when the last successful import is older than H hours (default 26)")
    parser.set_defaults(handler=handler)


def _note(text: str) -> None:
    sys.stderr.write(text + "\n")


def _deliver(args, alert) -> None:
    from ..review.alerts import send
    from .commands import load_config

    if not alert.due:
        age = alert.last_success_age_hours
        _note(f"no alert sent: health {alert.status}, last success {age:.1f} h ago" if age is not None
              else f"no alert sent: health {alert.status}")
        return
    conn = None
    try:
        conn = db.connect(args.dsn)
    except Exception as exc:  # noqa: BLE001 - the alert still goes out; only its record is lost
        _note(f"cannot record the alert delivery: {exc}")
    try:
        delivery = send(conn, load_config(args), args.notify, alert)
    finally:
        if conn is not None:
            conn.close()
    if delivery.ok:
        _note(f"alert sent to {delivery.target}: {'; '.join(alert.reasons)}")
    else:
        _note(f"alert delivery to {delivery.target} FAILED: {delivery.error}"
              + (" (recorded; the dashboard shows it)" if delivery.recorded else ""))


def _last_ok(args):
    from ..review.runs import last_success
    from .commands import load_config

    conn = db.connect(args.dsn)
    try:
        return last_success(conn, load_config(args))
    finally:
        conn.close()


def _newest_run(args):
    from psycopg2 import sql

    from ..review.runs import has_runs
    from ..state import state
    from .commands import load_config

    config = load_config(args)
    conn = db.connect(args.dsn)
    try:
        with conn.cursor() as cur:
            if not has_runs(cur, config):
                return None
            cur.execute(sql.SQL("SELECT run_id, outcome, error, report->'health'->>'status', "
                                "coalesce(report->'health'->'issues', '[]'::jsonb) FROM {} ORDER BY run_id DESC "
                                "LIMIT 1").format(state(config, "runs")))
            return cur.fetchone()
    finally:
        conn.close()


def cmd_run(args) -> int:
    from ..review.alerts import decide
    from . import commands

    if not args.notify:
        return commands.cmd_run(args)
    before = _newest_run(args)
    try:
        code = commands.cmd_run(args)
    except Exception as exc:
        _deliver(args, decide("run", status=None, failed=True, error=str(exc), last_ok=_safe(_last_ok, args),
                              stale_hours=args.stale_hours))
        raise
    newest = _newest_run(args)
    if newest is None or (before is not None and newest[0] == before[0]):
        alert = decide("run", status=None, failed=True, error="the run recorded nothing (it did not start)",
                       last_ok=_last_ok(args), stale_hours=args.stale_hours)
    else:
        run_id, outcome, error, status, issues = newest
        failed = outcome not in ("committed", "committed+expired", "dry_run")
        alert = decide("run", status=status, failed=failed or code == 2 and status is None,
                       error=error, issues=issues, run_id=run_id, last_ok=_last_ok(args),
                       stale_hours=args.stale_hours)
    _deliver(args, alert)
    return code


def _safe(fn, args):
    try:
        return fn(args)
    except Exception:  # noqa: BLE001 - the database may be what failed
        return None


def cmd_health(args) -> int:
    from ..review.alerts import decide, last_success_metric
    from . import commands

    if not args.notify:
        code = commands.cmd_health(args)
    else:
        from ..catalog import read_catalog
        from ..health.check import check_health
        from . import render

        conn = db.connect(args.dsn)
        try:
            config = commands.load_config(args)
            report = check_health(conn, config, read_catalog(conn, config))
            conn.rollback()
        finally:
            conn.close()
        if args.json:
            sys.stdout.write(report.to_json() + "\n")
        elif args.prometheus:
            sys.stdout.write(report.to_prometheus())
        else:
            sys.stdout.write(render.health_text(report.to_dict()) + "\n")
        code = report.status.exit_code
    if args.prometheus:
        conn = db.connect(args.dsn)
        try:
            sys.stdout.write(last_success_metric(conn, commands.load_config(args)))
        finally:
            conn.close()
    if args.notify:
        _deliver(args, decide("health", status=report.status.value, issues=report.issues,
                              last_ok=_last_ok(args), stale_hours=args.stale_hours))
    return code
