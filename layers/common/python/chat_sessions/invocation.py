"""How much time the current Lambda invocation has left.

The handler records the end of the invocation when it starts (from the Lambda context), so code
deep in a request, the model call, can stop waiting in time for the function to answer with
the contract's error instead of being cut off by Lambda. A ``ContextVar``, reset when the
invocation ends, so a thread that invokes handlers (tests, the local stack) never sees another
invocation's clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_ends_at: ContextVar[float | None] = ContextVar("invocation_ends_at", default=None)


@contextmanager
def running(context: Any) -> Iterator[None]:
    """The invocation of ``context`` is running; without a Lambda context, no limit is known."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    ends_at = time.monotonic() + remaining() / 1000 if callable(remaining) else None
    token = _ends_at.set(ends_at)
    try:
        yield
    finally:
        _ends_at.reset(token)


def seconds_left() -> float | None:
    """Seconds until Lambda stops the invocation, or None outside one."""
    ends_at = _ends_at.get()
    return None if ends_at is None else ends_at - time.monotonic()
