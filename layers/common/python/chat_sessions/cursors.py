"""Opaque pagination cursors, signed, and bound to the listing and the caller that received them.

A cursor is ``<payload>.<tag>``: the payload (base64url JSON) carries the sort key to continue
after; the tag is an HMAC-SHA256 under a server key over the listing's name, the partition it
was issued for (which contains the user id) and the payload. So a cursor from another listing or
another user fails the check, and so does one made by hand: without the key nobody can produce
a tag, whereas an unkeyed digest of known values (what cursors carried before) can be computed
by anyone. Any failure is the contract's ``400 validation_error``.

The key: deployed, a Secrets Manager secret the template generates (``CURSOR_KEY_SECRET``),
fetched through Powertools Parameters on the first cursor a container signs or checks and
cached; only the three list functions may read it. Locally and in tests, ``CURSOR_SIGNING_KEY``
or a fixed local default. Rotating the secret invalidates the cursors in flight (a client
restarts its listing), which is acceptable for tokens that live as long as a page view.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re

from chat_sessions.config import get_settings
from chat_sessions.errors import ValidationFailed

_MAX_CURSOR = 1024
_TAG_BYTES = 16
PATTERN = r"^[A-Za-z0-9_-]{1,1000}\.[A-Za-z0-9_-]{22}$"
"""The shape of every cursor this server issues (base64url payload, ``.``, the 16-byte tag in
base64url): the OpenAPI document states it and :func:`decode` refuses anything else before
checking the tag. A cursor of this shape is still refused unless the server signed it."""
_PATTERN_RE = re.compile(PATTERN)
KEY_CACHE_SECONDS = 300


def _signing_key() -> bytes:
    settings = get_settings()
    if settings.cursor_key_secret:
        # Imported here: only a request that has a cursor to sign or check pays for it.
        from aws_lambda_powertools.utilities import parameters

        secret = parameters.get_secret(settings.cursor_key_secret, max_age=KEY_CACHE_SECONDS)
        return secret if isinstance(secret, bytes) else str(secret).encode()
    return settings.cursor_signing_key.encode()


def _tag(payload: str, partition: str, listing: str) -> str:
    message = f"{listing}\n{partition}\n{payload}".encode()
    digest = hmac.new(_signing_key(), message, hashlib.sha256).digest()[:_TAG_BYTES]
    return _b64(digest)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def encode(sort_key: str | None, *, partition: str, listing: str) -> str | None:
    if sort_key is None:
        return None
    payload = _b64(json.dumps({"k": sort_key}, separators=(",", ":")).encode())
    return f"{payload}.{_tag(payload, partition, listing)}"


def decode(cursor: str | None, *, partition: str, listing: str, prefix: str) -> str | None:
    if cursor is None:
        return None
    bad = ValidationFailed(
        "The cursor is not one this listing issued.", details=[{"loc": ["query", "cursor"], "type": "invalid_cursor"}]
    )
    if len(cursor) > _MAX_CURSOR or not _PATTERN_RE.fullmatch(cursor):
        raise bad
    payload, tag = cursor.split(".")
    if not hmac.compare_digest(tag, _tag(payload, partition, listing)):
        raise bad
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - only a signed payload gets here
        raise bad from exc
    sort_key = data.get("k") if isinstance(data, dict) else None
    if not isinstance(sort_key, str) or not sort_key.startswith(prefix) or len(sort_key) <= len(prefix):
        raise bad
    return sort_key
