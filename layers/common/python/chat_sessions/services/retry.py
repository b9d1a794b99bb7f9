"""Optimistic retries: re-read and try again when a conditional write lost a race or DynamoDB
cancelled it as a collision."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from chat_sessions.errors import StoreContention
from chat_sessions.store import Collision, ConditionFailed

T = TypeVar("T")
_jitter = random.SystemRandom()
"""From ``os.urandom``, not the ``random`` module's state seeded at import: environments restored
from one SnapStart snapshot would otherwise draw the same backoffs and retry in step."""
ATTEMPTS = 30
MAX_BACKOFF_SECONDS = 0.2


class Stale(Exception):
    """Raised by an attempt whose reads disagree with each other (a pointer moved between two
    reads): retried like a lost race, never answered as a state the resource is not in."""


def optimistic(attempt: Callable[[], T], attempts: int | None = None) -> T:
    """Run ``attempt`` (read, decide, conditional write) until its write is neither refused
    by a concurrent change nor cancelled as a collision. Jittered exponential backoff spreads
    out writers racing on one item; contention that outlasts the attempts is ``409 conflict``."""
    for n in range(ATTEMPTS if attempts is None else attempts):
        try:
            return attempt()
        except (ConditionFailed, Collision, Stale):
            time.sleep(_jitter.uniform(0, min(MAX_BACKOFF_SECONDS, 0.005 * 2**n)))
    raise StoreContention("Too many concurrent changes to this resource; retry the request.")
