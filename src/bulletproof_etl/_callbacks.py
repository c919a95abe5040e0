"""Callbacks before and after each stage of a protected run (an extension point, issue 15).

``PreservationConfig.stage_callbacks`` holds callables; each is called with a
:class:`StageCall` before a stage starts (``when="before"``), after it finished
(``"after"``, with its result) and when it raised (``"failed"``, with the exception, which
then propagates). A callback that raises stops the run like a failing stage: everything is
rolled back. Stages: constraints, snapshot, upsert, restore, health.

Each stage also runs with Python's cyclic garbage collector paused (:func:`gc_paused`).
"""

from __future__ import annotations

import contextlib
import functools
import gc
from dataclasses import dataclass


@dataclass
class StageCall:
    when: str  # before, after, failed
    stage: str
    preservation: object  # the BulletproofTeamPreservation (its report, run id, connection)
    result: object = None
    error: BaseException | None = None


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector (process-wide) for the block, then restore its state.

    A stage allocates an object or more per record; every so many thousand allocations
    Python runs a full collection, which walks every object of the process, the ETL's loaded
    scrape included. At 100,000 teams that was 2.1 s of a 5.4 s unchanged re-import
    (docs/performance.md). Reference counting still frees everything the stages drop; the
    collector runs again, as configured, after the block. Nested blocks restore once."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def staged(stage: str):
    """Decorate a stage method of BulletproofTeamPreservation so its callbacks run around it."""

    def wrap(method):
        @functools.wraps(method)
        def inner(self, *args, **kwargs):
            with gc_paused():
                return _call(self, args, kwargs)

        def _call(self, args, kwargs):
            callbacks = getattr(self.config, "stage_callbacks", ()) or ()
            if not callbacks:
                return method(self, *args, **kwargs)
            for callback in callbacks:
                callback(StageCall("before", stage, self))
            try:
                result = method(self, *args, **kwargs)
            except BaseException as exc:
                for callback in callbacks:
                    callback(StageCall("failed", stage, self, error=exc))
                raise
            for callback in callbacks:
                callback(StageCall("after", stage, self, result))
            return result

        return inner

    return wrap
