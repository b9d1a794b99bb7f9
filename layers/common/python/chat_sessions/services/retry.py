"""Optimistic retries: re-read and try again when a conditional write lost a race."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from chat_sessions.errors import StoreContention
from chat_sessions.store import WriteConflict

T = TypeVar("T")
ATTEMPTS = 30


def optimistic(attempt: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """Run ``attempt`` (read, decide, conditional write) until its write is not cancelled
    by a concurrent one. Jittered backoff spreads out writers racing on one item."""
    for n in range(attempts):
        try:
            return attempt()
        except WriteConflict:
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2**n)))
    raise StoreContention("Too many concurrent changes to this resource; retry the request.")
