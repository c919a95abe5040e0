"""Votes over the evidence of a stale id's rows (:mod:`.evidence_paths`), and the decision.

Per row: the candidates every path of the row agrees on (the intersection of its non-empty
paths), narrowed by its filters where a filter leaves at least one. A row whose paths name
disjoint candidates is a *conflict*; a row left with one candidate is a *vote* for it; a row
left with several is *ambiguous* (consistent with each of them).

Per stale id, with ``min_support = config.evidence_min_support`` (2) and
``majority = config.evidence_majority`` (2/3):

A path may hold ``None`` (an unknown candidate: the author's player whose team is gone): it
never wins, and a row that cannot rule it out is ambiguous, not a vote.

- *mapped* to the candidate W with the most votes when W has at least ``min_support`` votes,
  these are at least ``majority`` of the rows with evidence against or for W (votes for W, for
  others, conflicts, ambiguous rows that exclude W), and no other candidate has
  ``min_support`` votes of its own (strong evidence that disagrees). Without any vote, the
  ambiguous rows may still name W together (their candidates' intersection is W alone).
- otherwise *not mapped*: when two candidates each have ``min_support`` votes the id is
  shared by rows of different entities (e.g. one stale series split into two); then, and
  whenever the id is refused, a row whose own evidence names one candidate through at least
  two paths (e.g. its author's team and the team its text names) is mapped alone
  (*per row*); every other row is quarantined with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import evidence_paths

ONE = {"teams": "team", "leagues": "league", "series": "series", "clubs": "club"}


def resolve_row(ev) -> tuple:
    """``(candidates or None, agreeing paths)``: None without evidence, an empty set on conflict."""
    sets = {p: s for p, s in ev.paths.items() if s and s != {None}}
    if not sets:
        return None, ()
    found = frozenset.intersection(*sets.values())
    if not found:
        return found, ()
    if None in found:  # an unknown (gone) candidate: the others cannot be told from it
        return found, tuple(sorted(sets))
    agreeing = sorted(sets)
    for name, allowed in sorted(ev.filters.items()):
        narrowed = found & allowed
        if narrowed:
            found = narrowed
            agreeing.append(name)
    return found, tuple(agreeing)


@dataclass
class StaleIdVotes:
    """The votes of one stale id and what was decided: ``mapped``, ``per_row`` or ``refused``."""

    entity: str
    old: int
    rows: int = 0
    with_evidence: int = 0
    candidates: dict = field(default_factory=dict)  # id -> {"rows": n, "paths": {path: n}}
    conflicts: int = 0
    ambiguous: int = 0
    decision: str = "refused"
    new: int | None = None
    reason: str = ""
    row_map: dict = field(default_factory=dict)  # (table, pk JSON, column) -> new id

    @property
    def agreeing(self) -> int:
        return self.candidates.get(self.new, {}).get("rows", 0) if self.new is not None else 0

    def evidence(self) -> str:
        """One line: who got how many rows, by which paths."""
        parts = []
        for cid, c in sorted(self.candidates.items(), key=lambda kv: (-kv[1]["rows"], kv[0])):
            paths = ", ".join(f"{p} {n}" for p, n in sorted(c["paths"].items()))
            parts.append(f"{ONE[self.entity]} {cid}: {c['rows']} of {self.rows} rows ({paths})")
        extra = [f"{n} {what}" for n, what in ((self.conflicts, "conflicting"), (self.ambiguous, "ambiguous"))
                 if n]
        return "; ".join(parts + extra) or f"none of its {self.rows} rows names a current {ONE[self.entity]}"

    def to_dict(self) -> dict:
        return {"entity": self.entity, "old_id": self.old, "rows": self.rows, "with_evidence": self.with_evidence,
                "candidates": {str(k): v for k, v in sorted(self.candidates.items())},
                "conflicts": self.conflicts, "ambiguous": self.ambiguous, "decision": self.decision,
                "new_id": self.new, "per_row": len(self.row_map), "reason": self.reason}


def decide(entity: str, old: int, rows: list, min_support: int = 2, majority: float = 2 / 3) -> StaleIdVotes:
    """The decision for one stale id from its rows' evidence (see the module docstring)."""
    v = StaleIdVotes(entity, old, rows=len(rows))
    resolved = [(ev, *resolve_row(ev)) for ev in rows]
    ambiguous_sets = []
    for _ev, found, agreeing in resolved:
        if found is None:
            continue
        v.with_evidence += 1
        if not found:
            v.conflicts += 1
        elif len(found) > 1:
            v.ambiguous += 1
            ambiguous_sets.append(found)
        else:
            c = v.candidates.setdefault(next(iter(found)), {"rows": 0, "paths": {}})
            c["rows"] += 1
            for p in agreeing:
                c["paths"][p] = c["paths"].get(p, 0) + 1
    ranked = sorted(v.candidates.items(), key=lambda kv: (-kv[1]["rows"], kv[0]))
    one = ONE[entity]
    if not ranked and ambiguous_sets:
        together = frozenset.intersection(*ambiguous_sets)
        if len(together) == 1 and None not in together:  # every ambiguous row allows exactly this one
            winner = next(iter(together))
            v.candidates[winner] = {"rows": len(ambiguous_sets), "paths": {"together": len(ambiguous_sets)}}
            v.ambiguous = 0
            ranked = [(winner, v.candidates[winner])]
            ambiguous_sets = []
    if ranked:
        winner, top = ranked[0]
        rivals = [c for c in ranked[1:] if c[1]["rows"] >= min_support]
        against = sum(c["rows"] for _i, c in ranked[1:]) + v.conflicts + sum(
            1 for s in ambiguous_sets if winner not in s)
        if rivals:
            v.reason = f"its rows name different {entity} ({v.evidence()})"
        elif top["rows"] < min_support:
            v.reason = f"too little evidence: {top['rows']} row(s) name {one} {winner}, {min_support} needed"
        elif top["rows"] < majority * (top["rows"] + against):
            v.reason = f"no majority of {majority:.0%} for {one} {winner} ({v.evidence()})"
        else:
            v.decision, v.new = "mapped", winner
            v.reason = v.evidence()
            return v
    else:
        v.reason = (f"its rows name no single current {one} ({v.evidence()})" if v.with_evidence
                    else f"none of its {v.rows} rows names a current {one}")
    for ev, found, agreeing in resolved:
        if found and len(found) == 1 and len(agreeing) >= 2:
            v.row_map[(ev.table, ev.pk, ev.column)] = next(iter(found))
    if v.row_map:
        v.decision = "per_row"
        v.reason += f"; {len(v.row_map)} row(s) mapped alone, each by two paths or more"
    return v


def votes(cur, config, catalog, run_id, entity: str, stale, *, team_now=None, schema=None, current=None) -> dict:
    """``{stale id: StaleIdVotes}`` for the stale ids of one entity. Writes nothing."""
    found = evidence_paths.collect(cur, config, catalog, run_id, entity, stale, team_now=team_now,
                                   schema=schema, current=current)
    return {old: decide(entity, old, rows, config.evidence_min_support, config.evidence_majority)
            for old, rows in sorted(found.items())}
