#!/usr/bin/env python3
"""Enable and check bulletproof ETL protection (the specification's script).

    python scripts/enable_bulletproof_etl.py                 # check protection, run the self-test
    python scripts/enable_bulletproof_etl.py --test-only     # the self-test only: the pipeline, rolled back
    python scripts/enable_bulletproof_etl.py --health-check  # health now (exit 0/1/2)
    python scripts/enable_bulletproof_etl.py --emergency     # repair constraints and orphans

A thin wrapper over the ``bulletproof-etl`` command: enable, test, health and repair --emergency.
Options after these (--dsn, -v, -q, --json ...) are passed on.
"""

from __future__ import annotations

import argparse
import sys

from bulletproof_etl.cli import main as cli_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="enable_bulletproof_etl.py",
        description="Enable and check bulletproof ETL protection (bulletproof-etl enable/test/health/repair).",
        epilog="Other options (--dsn DSN, -v, -q, --json) are passed to the bulletproof-etl command.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--test-only", action="store_true",
                      help="run the self-test only (the protected pipeline, rolled back; changes nothing)")
    mode.add_argument("--health-check", action="store_true", help="check health now (exit 0 healthy, 1, 2)")
    mode.add_argument("--emergency", action="store_true",
                      help="emergency repair: constraints, then orphans through the strategies (never deletes)")
    return parser


def main(argv: list | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    if args.test_only:
        command = ["test"]
    elif args.health_check:
        command = ["health"]
    elif args.emergency:
        command = ["repair", "--emergency"]
    else:
        command = ["enable"]
    return cli_main(command + rest)


if __name__ == "__main__":
    sys.exit(main())
