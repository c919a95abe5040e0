"""What a restore did, per table and in total: the typed results of the restore stage."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

STRATEGIES = ("direct", "context", "content")


@dataclass
class TableRestore:
    """What the restore did to one user-owned table.

    ``rows_after = rows_before + reinserted``; ``kept`` rows were not written at all.
    ``remapped`` counts references (a row with two remapped columns counts twice), on live
    and re-inserted rows alike. ``quarantined`` counts quarantine entries: one per reference
    set to NULL (``nulled``), one per reference left on a placeholder (``on_placeholder``)
    and one per snapshot row that could not be put back (``withheld``; its data is whole in
    the quarantine table). ``left_deleted`` rows were deleted by another session (a user)
    while the run went on: that change is theirs, so they stay deleted (keyed tables, see
    snapshot/keys.py).
    """

    table: str
    rows_before: int = 0
    rows_after: int = 0
    kept: int = 0
    remapped: dict = field(default_factory=dict)  # strategy -> references
    reinserted: int = 0
    quarantined: int = 0
    nulled: int = 0
    on_placeholder: int = 0
    withheld: int = 0
    left_deleted: int = 0
    # references the run's own writes (the ETL's restore or fixers) had changed, set back
    # from the snapshot (restore/damage.py)
    repaired: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RestoreReport:
    run_id: int | None = None
    tables: dict = field(default_factory=dict)
    mapped_ids: dict = field(default_factory=dict)  # entity -> strategy -> distinct old ids mapped
    resurrected: dict = field(default_factory=dict)  # entity -> ids kept alive
    unresolved: dict = field(default_factory=dict)  # entity -> ids no strategy maps (placeholder or NULL)
    validated_constraints: list = field(default_factory=list)  # NOT VALID foreign keys validated afterwards

    def total(self, what: str) -> int:
        if what == "remapped":
            return sum(sum(t.remapped.values()) for t in self.tables.values())
        return sum(getattr(t, what) for t in self.tables.values())

    def remapped_by_strategy(self) -> dict:
        out: dict = {}
        for t in self.tables.values():
            for strategy, n in t.remapped.items():
                out[strategy] = out.get(strategy, 0) + n
        return out

    def to_dict(self) -> dict:
        """``totals`` holds only what the restore did (all zero: nothing to do)."""
        return {
            "run_id": self.run_id,
            "tables": {k: v.to_dict() for k, v in self.tables.items()},
            "mapped_ids": self.mapped_ids,
            "resurrected": {k: sorted(v) for k, v in self.resurrected.items()},
            "unresolved": {k: sorted(v) for k, v in self.unresolved.items()},
            "validated_constraints": self.validated_constraints,
            "rows": {w: self.total(w) for w in ("rows_before", "rows_after", "kept")},
            "remapped_by_strategy": self.remapped_by_strategy(),
            "totals": {w: self.total(w) for w in ("remapped", "reinserted", "quarantined", "nulled",
                                                  "on_placeholder", "withheld", "repaired")},
        }
