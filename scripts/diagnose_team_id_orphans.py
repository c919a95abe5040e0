#!/usr/bin/env python3
"""Find orphaned team (and league, series) references, with example rows (read-only).

    python scripts/diagnose_team_id_orphans.py [--examples N] [--json] [--dsn DSN]

A thin wrapper over ``bulletproof-etl diagnose``. Exit code 0 none, 1 only in ETL-owned
tables, 2 in user-owned tables.
"""

from __future__ import annotations

import argparse
import sys

from bulletproof_etl.cli import main as cli_main


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="diagnose_team_id_orphans.py",
        description="Orphaned references per column, with example rows (bulletproof-etl diagnose; read-only).",
        epilog="Options (--examples N, --json, --dsn DSN, -v, -q) are passed to bulletproof-etl diagnose.")


def main(argv: list | None = None) -> int:
    _args, rest = build_parser().parse_known_args(argv)
    return cli_main(["diagnose"] + rest)


if __name__ == "__main__":
    sys.exit(main())
