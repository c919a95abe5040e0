"""Callbacks before and after each stage of a protected run (an extension point, issue 15).

``PreservationConfig.stage_callbacks`` holds callables; each is called with a
:class:`StageCall` before a stage starts (``when="before"``), after it finished
(``"after"``, with its result) and when it raised (``"failed"``, with the exception, which
then propagates). A callback that raises stops the run like a failing stage: everything is
rolled back. Stages: constraints, snapshot, upsert, restore, health.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass
class StageCall:
    when: str  # before, after, failed
    stage: str
    preservation: object  # the BulletproofTeamPreservation (its report, run id, connection)
    result: object = None
    error: BaseException | None = None


def staged(stage: str):
    """Decorate a stage method of BulletproofTeamPreservation so its callbacks run around it."""

    def wrap(method):
        @functools.wraps(method)
        def inner(self, *args, **kwargs):
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
