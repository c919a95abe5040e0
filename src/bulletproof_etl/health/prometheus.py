"""The Prometheus text exposition format (version 0.0.4) of a HealthReport."""

from __future__ import annotations


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _columns(counts: dict) -> list:
    """``"table.column" -> n`` as ``({"table": ..., "column": ...}, n)`` samples."""
    return [(dict(zip(("table", "column"), label.split(".", 1), strict=True)), n)
            for label, n in sorted(counts.items())]


def render(report) -> str:
    """Every count of ``report`` as a gauge, each metric declared by HELP and TYPE first."""
    out: list = []

    def metric(name, help_text, samples):
        out.extend([f"# HELP bulletproof_{name} {help_text}", f"# TYPE bulletproof_{name} gauge"])
        for labels, value in samples:
            text = ",".join(f'{k}="{_esc(str(v))}"' for k, v in labels.items())
            out.append(f"bulletproof_{name}{{{text}}} {value}" if text else f"bulletproof_{name} {value}")

    metric("health_status", "0 perfect, 1 warning, 2 critical", [({}, report.status.exit_code)])
    metric("orphans", "Rows whose reference points at no row", _columns(report.orphans))
    metric("user_orphans", "User-owned references that point at no row", [({}, report.user_orphans)])
    metric("nulls", f"NULL user references counted under the {report.null_policy} policy", _columns(report.nulls))
    metric("lost_rows", "Snapshotted user rows neither live nor quarantined",
           [({"table": t}, n) for t, n in sorted(report.lost.items())])
    metric("misattached_rows", "User references on another natural key than before, unexplained",
           _columns(report.misattached))
    metric("missing_constraints", "Constraints the library relies on that are missing or not valid",
           [({}, len(report.missing_constraints))])
    metric("duplicate_keys", "Natural keys held by more than one row",
           [({"entity": e}, n) for e, n in sorted(report.duplicate_keys.items())])
    metric("quarantined_rows", "Quarantine entries written by the run", [({}, report.quarantined)])
    if report.preservation_rate is not None:
        metric("preservation_rate", "Team ids kept / team keys that survived", [({}, report.preservation_rate)])
    return "\n".join(out) + "\n"
