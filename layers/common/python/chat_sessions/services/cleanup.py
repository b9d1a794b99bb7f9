"""Purging what a deleted session or chat owned, from the table's stream, and taking sessions
that DynamoDB's TTL removed off the user's counters.

``DELETE`` purges in the request already; this consumer of the table's ``REMOVE`` events is the
safety net that finishes a purge the request could not (a timeout, a crash), and Lambda retries
it until it succeeds. Purging is idempotent: a second pass over an empty range deletes nothing.

A session that retention removed (:mod:`chat_sessions.retention`) had no request to purge it or
to move the user's counters: the stream record, marked as DynamoDB's own removal, does both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chat_sessions import keys
from chat_sessions.items import SessionItem
from chat_sessions.store import Store
from chat_sessions.store.table import plain

TTL_PRINCIPAL = "dynamodb.amazonaws.com"
"""A stream record's ``userIdentity.principalId`` when DynamoDB's TTL removed the item."""
RECEIPT_SECONDS = 2 * 86400
"""How long an expired session's receipt is kept: longer than a stream record lives (24 hours),
so every redelivery of the record finds it."""


class MissingImage(Exception):
    """A TTL removal of a session arrived without the session's old image: the stream must be
    ``NEW_AND_OLD_IMAGES`` (the template's); retried, then dead-lettered, never guessed."""


def is_ttl_removal(user_identity: Mapping[str, Any]) -> bool:
    """Whether a stream record's ``userIdentity`` says DynamoDB's TTL removed the item (a user's
    ``DeleteItem`` has none)."""
    return user_identity.get("type") == "Service" and user_identity.get("principalId") == TTL_PRINCIPAL


def count_expired(store: Store, pk: str, sk: str, old_image: Mapping[str, Any] | None, now: float) -> bool:
    """Take an expired session (a TTL removal's keys and old image) off the user's counters,
    exactly once per session however often the record comes (the store's receipt). False for
    anything that is not a session, or a session counted before."""
    if keys.expired_session(pk, sk) is None:
        return False
    if not old_image:
        raise MissingImage(f"no old image for the removed session {sk}")
    session = SessionItem.from_item(plain(dict(old_image)))
    return store.sessions.count_expired(pk, sk, session, int(now) + RECEIPT_SECONDS)


def purge_children(store: Store, pk: str, sk: str) -> int:
    """Delete every item the removed item ``(pk, sk)`` owned; returns how many were left."""
    chat_id = keys.removed_chat(pk, sk)
    if chat_id is not None:  # its head says whether forks share messages it must keep
        return store.chats.purge_in(pk, chat_id)
    owned = keys.children_of_removed(pk, sk)
    if owned is None:
        return 0
    return store.table.purge(*owned)
