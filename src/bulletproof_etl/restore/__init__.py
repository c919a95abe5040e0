"""Restore: every user row back on the team with the same natural key, or in quarantine.

What this stage guarantees: every stale reference gets a map to the current entity of the
same key (``entity_map``), by the strategies in priority order (``strategies``: direct,
context, content) and the evidence of the rows themselves (``row_evidence``); an id that
no strategy maps but that rows still need is kept alive with its old row (``revive``, and
``revive_row_by_row`` when a batch fails); ``apply`` rewrites the references, re-inserts the
rows the run deleted and quarantines what nothing maps, never deleting a row; ``report``
holds what it did. It hands a :class:`~.report.RestoreReport` to the run, which checks
health next. It imports identity, snapshot and health (the pending constraint checks).
"""
