"""Identity: who each league, club, series and team is, and which id it keeps.

What this stage guarantees: input records are checked before any SQL runs (``validate``,
``input_checks``: a bad record names itself and its field); every entity has a natural key;
the ledger (``ledger``) remembers every id ever seen with its key; the set-based upsert
(``upsert``, ``team_upsert``, with ``write`` as its row-by-row fallback) gives every key
that is still imported its old id, even after the legacy ETL deleted the row. Ids given
back: ``ledger_ids`` gives a row someone re-inserted under a new id its ledger id back
(re-keying); ``snapshot_ids`` puts entity rows back to a snapshot's ids (``repair
--from-snapshot``); ``sequences`` sets id sequences back after a rollback. It hands the ids
and keys of this run to the snapshot and the restore. It imports only the base modules (``config``, ``catalog``, ``state``, ``errors``, ``failures``).
"""
