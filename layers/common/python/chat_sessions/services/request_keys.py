"""A POST's ``Idempotency-Key`` as the services see it, and the markers keyed writes leave.

Powertools Idempotency replays a key's response while its record lives; a request that failed
leaves none. When the failure came after DynamoDB committed the write (its answer lost, the
SDK's retries refused), a repeat with the same key would write again. So creates and sends
under a key write a marker in the same transaction, and a repeat that meets it answers what the
first attempt stored (or ``422`` when the key came with another request).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from chat_sessions.config import get_settings
from chat_sessions.errors import IdempotencyKeyReused, NotFound
from chat_sessions.items import CreateMarkerItem
from chat_sessions.store import Store
from chat_sessions.store.markers import get_created


@dataclass(frozen=True)
class RequestKey:
    """The key hashed with its route (``key_hash``), and the hash of the request it came with."""

    key_hash: str
    request_hash: str


def expiry() -> int:
    """When a marker may go (the table's TTL): as long as Powertools keeps the key's record."""
    return int(time.time()) + get_settings().idempotency_ttl_seconds


def created_marker(
    key: RequestKey | None, session_id: str, chat_id: str | None = None
) -> tuple[str, CreateMarkerItem] | None:
    if key is None:
        return None
    return key.key_hash, CreateMarkerItem(
        session_id=session_id, chat_id=chat_id, request_hash=key.request_hash, expires_at=expiry()
    )


def first_created(store: Store, user_id: str, key: RequestKey) -> CreateMarkerItem:
    """What the key created before: refused (422) for another request, 404 when it is gone."""
    marker = get_created(store.table, user_id, key.key_hash)
    if marker is None:
        raise NotFound("What this Idempotency-Key created no longer exists.")
    if marker.request_hash != key.request_hash:
        raise IdempotencyKeyReused("This Idempotency-Key was already used with a different request.")
    return marker
