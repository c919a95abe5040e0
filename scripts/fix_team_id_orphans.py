#!/usr/bin/env python3
"""Repair orphaned team references through the restore strategies; never deletes a row.

    python scripts/fix_team_id_orphans.py                       # health, repair, health again
    python scripts/fix_team_id_orphans.py --dry-run             # report only, change nothing
    python scripts/fix_team_id_orphans.py --from-snapshot 12    # back to the snapshot of run 12

A thin wrapper over ``bulletproof-etl repair``; its options (--emergency, --from-snapshot RUN,
--dry-run, --json, --dsn DSN, -v, -q) are passed on.
"""

from __future__ import annotations

import argparse
import sys

from bulletproof_etl.cli import main as cli_main


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="fix_team_id_orphans.py",
        description="Repair orphaned references through the strategies (bulletproof-etl repair; never deletes).",
        epilog="Options (--emergency, --from-snapshot RUN, --dry-run, --json, --dsn DSN, -v, -q) "
               "are passed to bulletproof-etl repair.")


def main(argv: list | None = None) -> int:
    _args, rest = build_parser().parse_known_args(argv)
    return cli_main(["repair"] + rest)


if __name__ == "__main__":
    sys.exit(main())
