"""Review: what operators see of the library's decisions, and how they close the loop.

Guarantees: every review action (assign a quarantined row to a team, accept the top
candidate, discard, revert a recorded mapping, undo an earlier action) is one transaction
under the import's advisory lock, refuses with a :class:`ReviewRefused` when the row or the
team changed since it was shown (their versions), never deletes a row, and is recorded in
``review_actions`` with who, when, what and the row before and after, so it can be undone.
Alerts (:mod:`.alerts`) say only what happened, and every delivery, failed or not, is
recorded in ``alert_deliveries``.

Hands on: the review queue (:mod:`.queue`), the run history and trends (:mod:`.runs`), the
alert decisions; used by ``web/`` and ``cli/``. Imports only the stages below it (base,
health, restore's strategies, the preservation's lock key); nothing above.
"""

from .actions import ReviewRefused, accept, assign, discard, revert, undo
from .queue import load_queue

__all__ = ["ReviewRefused", "accept", "assign", "discard", "load_queue", "revert", "undo"]
