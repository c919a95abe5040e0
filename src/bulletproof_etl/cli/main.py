"""The ``bulletproof-etl`` command.

Exit codes (usable from cron): 0 healthy, 1 warning, 2 critical or failed. A library error
becomes one line on stderr and exit code 2, never a traceback (``-vv`` shows it).
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

import psycopg2

from ..errors import BulletproofError
from ..failures import first_line
from ..version import __version__
from . import capture as capture_cli
from . import notify
from .notify import add_notify_options
from .review import add_review_parser
from .serve import add_web_parsers

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_WARNING, EXIT_FAILED = 0, 1, 2

DESCRIPTION = """\
Re-run a PostgreSQL reference-data ETL without orphaning, misattaching or losing the user
data that points at its leagues, clubs, series and teams.

Without --dsn and without DATABASE_URL every command uses an embedded PostgreSQL kept in a
local data directory (BULLETPROOF_PGDATA overrides where).
Exit codes: 0 healthy, 1 warning, 2 critical or failed."""


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dsn", metavar="DSN", default=argparse.SUPPRESS,
                        help="PostgreSQL connection string (default: $DATABASE_URL, else the embedded server)")
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more output: -v the library's log, -vv debug and tracebacks")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress lines, only the result")
    return common


def _config_option() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--config", metavar="MODULE:NAME",
                        help="a PreservationConfig describing another schema (default: the reference schema)")
    return parent


def _etl_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR",
                        help="directory with players.json, series_stats.json, schedules.json and "
                             "match_history.json (default: the bundled sample, season 1)")
    parser.add_argument("--etl", metavar="MODULE:CLASS",
                        help="protect your own ETL class instead of the reference rally_etl.ComprehensiveETL; "
                             "it is built as CLASS(data_dir, dsn, league=CODE)")
    parser.add_argument("--league", metavar="CODE",
                        help="import one league only (e.g. NSTF); the other leagues' rows stay untouched")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bulletproof-etl", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version and exit")
    parser.set_defaults(dsn=None, verbose=0, quiet=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    common = _common()
    cfg = _config_option()

    run = sub.add_parser("run", parents=[common, cfg], help="run the ETL with protection (the main job)",
                         description="Run the ETL protected: one transaction, ids kept, user data restored, "
                                     "health checked before the commit.")
    _etl_options(run)
    run.add_argument("--dry-run", action="store_true",
                     help="do everything, report what would change, then roll it all back (changes nothing)")
    run.add_argument("--force", action="store_true",
                     help="import even when it would retire more teams than max_retire_share allows")
    run.add_argument("--json", action="store_true", help="print the run report as JSON")

    health = sub.add_parser("health", parents=[common, cfg], help="check orphans, constraints and duplicates",
                            description="Health of the database now: exit 0 PERFECT, 1 WARNING, 2 CRITICAL.")
    fmt = health.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the health report as JSON")
    fmt.add_argument("--prometheus", action="store_true", help="print the health report as Prometheus text")

    repair = sub.add_parser("repair", parents=[common, cfg], help="repair orphaned references (never deletes)",
                            description="Map orphaned references back through the restore strategies; "
                                        "quarantine what no strategy maps. Never deletes a row.")
    repair.add_argument("--emergency", action="store_true",
                        help="also repair constraints first (merge duplicate teams, add missing keys)")
    repair.add_argument("--from-snapshot", metavar="RUN",
                        help="bring back every entity id and user row of run RUN's durable snapshot "
                             "(a run id, or 'latest')")
    repair.add_argument("--dry-run", action="store_true", help="report what would be repaired, change nothing")
    repair.add_argument("--json", action="store_true", help="print the repair report as JSON")

    test = sub.add_parser("test", parents=[common, cfg], help="the whole protected pipeline, rolled back",
                          description="Run the protected pipeline against the real database as a dry run "
                                      "and prove with checksums that nothing changed.")
    _etl_options(test)
    test.add_argument("--json", action="store_true", help="print the test result as JSON")

    diag = sub.add_parser("diagnose", parents=[common, cfg], help="orphans per column, with example rows",
                          description="Read-only: orphaned references per dependent column, up to N example "
                                      "rows each, what the ledger knows about them, and the runs kept.")
    diag.add_argument("--examples", type=int, default=5, metavar="N", help="example rows per column (default 5)")
    diag.add_argument("--json", action="store_true", help="print the diagnosis as JSON")

    enable = sub.add_parser("enable", parents=[common, cfg], help="install the capture triggers, check that protection is active; run the self-test",
                            description="Install the capture triggers (a migration: run once, as the tables' "
                                        "owner), patch the ETL class in this process, check the patch, then run the "
                                        "self-test (the pipeline, rolled back) and the health check.")
    _etl_options(enable)
    enable.add_argument("--no-triggers", action="store_true",
                        help="do not install the capture triggers (every run then takes the full snapshot)")
    enable.set_defaults(handler=capture_cli.cmd_enable)
    enable.add_argument("--create-indexes", action="store_true",
                        help="first build, concurrently, an index on every column referencing a league, club, "
                             "series or team that has none (a migration: run once, as the tables' owner)")

    demo = sub.add_parser("demo", parents=[common], help="legacy vs protected, side by side",
                          description="Two fresh databases (the embedded server unless --dsn): season 1 of the "
                                      "sample and user activity in both, then season 2 with the legacy ETL in "
                                      "one and protected in the other; a table of what happened.")
    demo.add_argument("--keep", action="store_true", help="keep the two demo databases afterwards")
    demo.add_argument("--json", action="store_true", help="print the comparison as JSON")
    demo.add_argument("--prefix", metavar="NAME", default="bulletproof_demo",
                      help="name the two databases NAME_legacy and NAME_protected (default bulletproof_demo)")
    # issue 15: review, the dashboard, the report, alerts (their handlers live in their own modules)
    capture_cli.add_disable_parser(sub, [common, cfg])
    add_review_parser(sub, [common, cfg])
    add_web_parsers(sub, [common, cfg])
    add_notify_options(run, notify.cmd_run)
    add_notify_options(health, notify.cmd_health)
    return parser


def _logging(args) -> tuple:
    """Show the library's log on stderr at the chosen level; returns what to undo afterwards."""
    level = logging.ERROR if args.quiet else {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(min(level, previous) if previous else level)
    return handler, previous


def main(argv: list | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_FAILED
    log_handler, log_level = _logging(args)
    # the embedded server's helper warns about an unset XDG_RUNTIME_DIR and falls back to /tmp: harmless
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    from . import commands

    handler = getattr(args, "handler", None) or getattr(commands, f"cmd_{args.command}")
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("bulletproof-etl: interrupted; the open transaction was rolled back", file=sys.stderr)
        return EXIT_FAILED
    except (BulletproofError, psycopg2.Error, OSError, ValueError) as exc:
        if args.verbose >= 2:
            logger.exception("%s failed", args.command)
        print(f"bulletproof-etl {args.command}: error: {first_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        logging.getLogger().removeHandler(log_handler)
        logging.getLogger().setLevel(log_level)
