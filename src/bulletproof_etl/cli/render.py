"""What a person sees: typed reports as plain tables, and progress per stage.

Only the command line uses this module; the library itself only logs.
"""

from __future__ import annotations

import sys
import time


def table(headers: list, rows: list, *, right: set | None = None) -> str:
    """A plain text table; columns in ``right`` (by index) are right-aligned (numbers)."""
    cells = [[_cell(v) for v in row] for row in rows]
    head = [str(h) for h in headers]
    widths = [max([len(head[i])] + [len(r[i]) for r in cells]) for i in range(len(head))]
    right = right if right is not None else {i for i in range(1, len(head))}

    def line(values):
        out = []
        for i, v in enumerate(values):
            out.append(v.rjust(widths[i]) if i in right else v.ljust(widths[i]))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), rule] + [line(r) for r in cells])


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def seconds(value: float) -> str:
    return f"{value:.2f}s" if value < 60 else f"{int(value // 60)}m{value % 60:04.1f}s"


class Progress:
    """Receives :class:`StageEvent` s. A bar on a terminal, one plain line per stage in a log."""

    def __init__(self, stream=None, *, total: int | None = None, enabled: bool = True,
                 tty: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.enabled = enabled
        self.tty = self.stream.isatty() if tty is None else tty
        self.done = 0
        self.started = time.perf_counter()
        self._open = False

    def __call__(self, event) -> None:
        if not self.enabled:
            return
        if event.status == "start":
            if self.tty:
                self._bar(f"{event.stage} ...")
            return
        if event.status == "done":
            self.done += 1
        parts = [f"{event.stage:<22}"]
        if event.status == "failed":
            parts.append("FAILED")
        if event.count is not None:
            parts.append(f"{event.count:>8,}")
        else:
            parts.append(" " * 8)
        parts.append(f"{seconds(event.elapsed):>8}")
        if event.detail:
            parts.append(f"  {event.detail}")
        text = " ".join(parts)
        if self.tty:
            self._clear()
            self.stream.write(text + "\n")
            self._bar("")
        else:
            elapsed = seconds(time.perf_counter() - self.started)
            self.stream.write(f"[{elapsed:>7}] {text}\n")
        self.stream.flush()

    def _bar(self, label: str) -> None:
        total = max(self.total or 0, self.done + 1)
        width = 30
        filled = int(width * self.done / total)
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{total} {label[:40]:<40}")
        self._open = True
        self.stream.flush()

    def _clear(self) -> None:
        if self._open:
            self.stream.write("\r" + " " * 90 + "\r")
            self._open = False

    def close(self) -> None:
        if self.tty and self._open:
            self._clear()
            self.stream.flush()


def health_text(health: dict, *, title: str = "health") -> str:
    """A HealthReport (as a dict) as a status line, the issues and a table of orphans."""
    lines = [f"{title}: {health['status']}"]
    for issue in health.get("issues") or []:
        lines.append(f"  - {issue}")
    orphans = health.get("orphans") or {}
    bad = {k: v for k, v in orphans.items() if v}
    if bad:
        lines.append("")
        lines.append(table(["column", "orphaned rows"], sorted(bad.items())))
    lost = health.get("lost") or {}
    if lost:
        lines.append("")
        lines.append(table(["table", "rows lost"], sorted(lost.items())))
    mis = health.get("misattached") or {}
    if mis:
        lines.append("")
        lines.append(table(["column", "rows on another team"], sorted(mis.items())))
    rate = health.get("preservation_rate")
    if rate is not None:
        lines.append(f"team ids preserved: {health.get('ids_kept')} of {health.get('keys_survived')} "
                     f"surviving keys ({rate:.1%})")
    if not bad:
        checked = len(orphans)
        lines.append(f"orphaned references: 0 (in {checked} dependent columns)")
    return "\n".join(lines)


def run_text(report: dict, ok: bool) -> str:
    """A RunReport (as a dict) after a protected ETL run."""
    lines = []
    verdict = ("DRY RUN: nothing was committed" if report.get("dry_run") and ok
               else "committed" if ok else "FAILED: everything was rolled back")
    lines.append(f"protected run {report.get('run_id') or '-'}: {verdict}")
    if report.get("error"):
        lines.append(f"  reason: {report['error']}")
    teams = report.get("teams")
    if teams:
        rows = [[k, teams.get(k, 0)] for k in ("read", "preserved", "created", "updated", "unchanged", "retired")]
        rows.append(["duplicates", len(teams.get("duplicates") or [])])
        rows.append(["errors", len(teams.get("errors") or [])])
        lines += ["", table(["teams", "count"], rows)]
    parents = report.get("parents") or {}
    if parents:
        rows = [[e, d.get("read", 0), d.get("preserved", 0), d.get("created", 0), d.get("updated", 0)]
                for e, d in parents.items()]
        lines += ["", table(["entity", "read", "preserved", "created", "updated"], rows)]
    restore = report.get("restore")
    if restore:
        rows = []
        for name, t in sorted((restore.get("tables") or {}).items()):
            remapped = t.get("remapped")
            remapped = sum(remapped.values()) if isinstance(remapped, dict) else remapped
            rows.append([name, t.get("kept", 0), remapped or 0, t.get("reinserted", 0), t.get("quarantined", 0)])
        rows = [r for r in rows if any(r[1:])]
        if rows:
            lines += ["", table(["user table", "kept", "remapped", "re-inserted", "quarantined"], rows)]
        else:
            lines += ["", "user tables: no user rows yet"]
    cleared = report.get("cleared") or {}
    if cleared:
        lines += ["", "cleared (ETL-owned rows, rebuilt by the ETL): "
                  + ", ".join(f"{t} {n:,}" for t, n in sorted(cleared.items()))]
    if report.get("health"):
        lines += ["", health_text(report["health"])]
    return "\n".join(lines)
