"""Snapshot: what is kept before the ETL runs, durably, so that nothing can be lost.

What this stage guarantees: before the ETL touches anything, every entity row with its key
(``entities``, which also brings the ledger up to date) and every user-owned row is kept:
whole where the run can delete it (``rows``), as primary keys and referenced ids elsewhere
(``keys``). Rows of keyed tables that the run deleted are read back from the committed state
(``readback``). ``retention`` keeps the newest runs and never a failed run's snapshot away.
It hands the run id and its snapshot to the restore and to health. It imports the identity
stage (the ledger), never the restore or health.
"""
