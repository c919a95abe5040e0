#!/usr/bin/env python3
"""Run the ETL with bulletproof protection (the specification's script).

    python scripts/run_bulletproof_etl.py                        # the full import, protected
    python scripts/run_bulletproof_etl.py --dry-run              # everything, then rolled back
    python scripts/run_bulletproof_etl.py --league APTA_CHICAGO  # one league only

A thin wrapper over ``bulletproof-etl run``; other options (--data-dir DIR, --dsn DSN,
--etl MODULE:CLASS, --force, --json, -v, -q) are passed on.
"""

from __future__ import annotations

import argparse
import sys

from bulletproof_etl.cli import main as cli_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_bulletproof_etl.py", description="Run the ETL with bulletproof protection (bulletproof-etl run).",
        epilog="Other options (--data-dir, --dsn, --etl, --force, --json, -v, -q) are passed to bulletproof-etl run.")
    parser.add_argument("--dry-run", action="store_true",
                        help="do everything and report it, then roll it all back (changes nothing)")
    parser.add_argument("--league", metavar="CODE", help="import one league only, e.g. APTA_CHICAGO")
    return parser


def main(argv: list | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    command = ["run"]
    if args.dry_run:
        command.append("--dry-run")
    if args.league:
        command += ["--league", args.league]
    return cli_main(command + rest)


if __name__ == "__main__":
    sys.exit(main())
