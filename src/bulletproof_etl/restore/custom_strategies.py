"""Custom mapping strategies: functions registered in the configuration, tried in their place.

A :class:`CustomStrategy` names a function and the built-in strategy it follows: ``"direct"``
(tried after the ledger's direct match failed, before ``context``) or ``"context"`` (after
context failed, before the id is kept alive or quarantined). The function receives a
:class:`StrategyInput` and returns the new id, or ``None`` when it cannot name exactly one.
Its mappings are recorded in ``mappings`` under its own name, counted in the restore report
by that name, and (like context and content) accepted by health as a deliberate move to
another key. A returned id that no current row has is ignored, never written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import BulletproofError

logger = logging.getLogger(__name__)

POSITIONS = ("direct", "context")
BUILT_IN = ("direct", "context", "content")


@dataclass(frozen=True)
class CustomStrategy:
    name: str
    function: Callable
    after: str = "direct"
    entities: tuple = ("teams",)

    def __post_init__(self) -> None:
        if self.after not in POSITIONS:
            raise BulletproofError(f"custom strategy {self.name!r}: after must be one of {POSITIONS}")
        if self.name in BUILT_IN or not self.name:
            raise BulletproofError(f"custom strategy {self.name!r}: choose a name of its own")


@dataclass(frozen=True)
class StrategyInput:
    """What a custom strategy may look at (the cursor is the run's: read, do not write)."""

    entity: str
    old_id: int
    ledger_key: tuple | None
    ledger_row: dict | None
    current: dict  # {id: natural key} of the entity's rows now
    cursor: object


def after(position: str, config, cur, entity: str, old: int, ledger_key, ledger_row, current: dict):
    """``(new id, strategy name)`` from the first custom strategy at ``position`` that names one."""
    for strategy in getattr(config, "custom_strategies", ()) or ():
        if strategy.after != position or entity not in strategy.entities:
            continue
        new = strategy.function(StrategyInput(entity, old, ledger_key, ledger_row, current, cur))
        if new is None or new == old:
            continue
        if new not in current:
            logger.warning("custom strategy %s named %s %s for %s, which no row has: ignored",
                           strategy.name, entity, new, old)
            continue
        return new, strategy.name
    return None
