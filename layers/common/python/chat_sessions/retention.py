"""Retention: when a session expires (``RETENTION_DAYS``, ``ARCHIVED_RETENTION_DAYS``).

A session item carries ``expiresAt`` (epoch seconds), the table's TTL attribute: DynamoDB
removes the item some time after that instant (deployed: usually within days; the local stack:
within seconds, ``local_stack.ttl``), the removal reaches the stream, and the stream's purge
consumer removes everything under the session and takes it off the user's counters exactly once
(:func:`chat_sessions.services.cleanup.count_expired`).

``expiresAt`` is kept current by the writes that already touch the session item: every one of
them sets it to its own time plus the retention of the status it leaves the session in (or
removes it when that retention is 0), in the same update, so retention costs no request. A send's
transaction checked the session with a ``ConditionCheck``; it is an ``Update`` with the same
condition now, which costs the same write units (``tests/test_cost.py``).

A session whose ``expiresAt`` has passed but that DynamoDB has not removed yet (TTL can lag by
up to two days) is still a session: it is read, listed and counted as any other, and a write
renews it (``expiresAt`` moves on, and DynamoDB's removal, conditioned on the attribute still
being past, skips it). Its ``expiresAt`` in the past says it is due for removal.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from chat_sessions.config import get_settings

ATTRIBUTE = "expiresAt"
"""The table's TTL attribute (template ``TimeToLiveSpecification``), on sessions and on
idempotency records."""
DAY_SECONDS = 86400


def epoch_of(timestamp: str) -> float:
    """Seconds since the epoch of an ISO 8601 UTC timestamp as :func:`clock.utc_now` writes it."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def expires_at(now: str, archived: bool) -> int | None:
    """When a session written at ``now`` (and left archived or not) expires, in whole epoch
    seconds rounded up (never before its retention has passed); None: it is kept."""
    settings = get_settings()
    days = settings.archived_retention_days if archived else settings.retention_days
    if days <= 0:
        return None
    return math.ceil(epoch_of(now) + days * DAY_SECONDS)


def iso(expires: int | None) -> str | None:
    """``expiresAt`` as the API shows it (ISO 8601 UTC, like every other timestamp)."""
    if expires is None:
        return None
    return datetime.fromtimestamp(expires, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
