"""``bulletproof-etl serve`` (the dashboard) and ``bulletproof-etl report`` (the same pages, one file)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .. import db
from ..errors import BulletproofError

EXIT_OK, EXIT_FAILED = 0, 2


def add_web_parsers(sub, parents: list) -> None:
    serve = sub.add_parser(
        "serve", parents=parents, help="the local web dashboard: health, runs, trends, the review queue",
        description="A local web dashboard (pages rendered on the server, inline SVG charts, nothing from a CDN): "
                    "the status banner, the run history and each run's changes, trend charts, the review queue "
                    "with its actions, and /api/health. Binds 127.0.0.1 unless --host is given with a token. "
                    "Needs the 'web' extra: pip install 'bulletproof-etl[web]'.")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; any other needs a token)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    serve.add_argument("--token", metavar="TOKEN", default=os.environ.get("BULLETPROOF_DASHBOARD_TOKEN"),
                       help="require this token (?token=... once, or Authorization: Bearer); "
                            "default $BULLETPROOF_DASHBOARD_TOKEN")
    serve.add_argument("--stale-hours", type=float, default=26.0, metavar="H",
                       help="the banner turns red when the last successful import is older than H hours (default 26)")
    serve.set_defaults(handler=cmd_serve)
    report = sub.add_parser(
        "report", parents=parents, help="the dashboard's pages as one self-contained HTML file",
        description="Write the dashboard, the newest runs' details and the review queue (read-only) into one "
                    "HTML file with everything inline, for places without a server.")
    report.add_argument("--out", required=True, metavar="FILE", help="the HTML file to write")
    report.add_argument("--runs", type=int, default=10, metavar="N", help="detail for the newest N runs (default 10)")
    report.add_argument("--stale-hours", type=float, default=26.0, metavar="H",
                        help="call the last success stale after H hours (default 26)")
    report.set_defaults(handler=cmd_report)


def _web():
    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
    except ImportError as exc:
        raise BulletproofError(f"the dashboard needs the 'web' extra ({exc.name} is missing): "
                               "pip install 'bulletproof-etl[web]'") from exc


def cmd_serve(args) -> int:
    _web()
    import uvicorn

    from ..web.app import create_app
    from ..web.security import check_bind
    from .commands import load_config

    check_bind(args.host, args.token)
    dsn = db.resolve_dsn(args.dsn)
    conn = db.connect(dsn)  # fail now, with one clear line, if the database cannot be reached
    conn.close()
    app = create_app(dsn, load_config(args), host=args.host, token=args.token, stale_hours=args.stale_hours)
    where = f"http://{args.host}:{args.port}/"
    sys.stderr.write(f"dashboard of {db.describe_dsn(dsn)} on {where}"
                     + (" (token required)" if args.token else "") + "; Ctrl-C stops it\n")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if args.quiet or not args.verbose else "info")
    return EXIT_OK


def cmd_report(args) -> int:
    _web()
    from ..web.report import write_report
    from .commands import load_config

    conn = db.connect(args.dsn)
    try:
        size = write_report(conn, load_config(args), Path(args.out), stale_hours=args.stale_hours,
                            runs_shown=args.runs)
    finally:
        conn.close()
    sys.stdout.write(f"wrote {args.out} ({size:,} bytes, self-contained)\n")
    return EXIT_OK
