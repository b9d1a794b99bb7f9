"""Opaque pagination cursors, bound to the listing and the caller that received them.

A cursor carries the sort key to continue after, the listing's name and a digest of the
partition it was issued for (which contains the user id), so a cursor from another listing or
another user is refused with a 400 instead of silently paging through the wrong data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from chat_sessions.errors import ValidationFailed

_MAX_CURSOR = 1024


def _scope(partition: str, listing: str) -> str:
    return hashlib.sha256(f"{listing}\n{partition}".encode()).hexdigest()[:24]


def encode(sort_key: str | None, *, partition: str, listing: str) -> str | None:
    if sort_key is None:
        return None
    raw = json.dumps({"k": sort_key, "s": _scope(partition, listing)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str | None, *, partition: str, listing: str, prefix: str) -> str | None:
    if cursor is None:
        return None
    bad = ValidationFailed(
        "The cursor is not one this listing issued.", details=[{"loc": ["query", "cursor"], "type": "invalid_cursor"}]
    )
    if not cursor or len(cursor) > _MAX_CURSOR:
        raise bad
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise bad from exc
    if not isinstance(data, dict) or data.get("s") != _scope(partition, listing):
        raise bad
    sort_key = data.get("k")
    if not isinstance(sort_key, str) or not sort_key.startswith(prefix) or len(sort_key) <= len(prefix):
        raise bad
    return sort_key
