"""Markers of what an ``Idempotency-Key`` stored, written in the same transaction as the write.

Powertools Idempotency replays a key's response while its record lives, but a request that
failed leaves no record, and a write can fail to its caller after DynamoDB committed it (the
answer lost, the SDK's retries refused). The marker makes that committed write findable: a
repeat with the same key meets the marker's ``attribute_not_exists`` condition, reads it, and
answers what was stored instead of storing it again.
"""

from __future__ import annotations

from chat_sessions import keys
from chat_sessions.items import CreateMarkerItem, StoredItem
from chat_sessions.store.outcomes import ConditionFailed
from chat_sessions.store.table import Item, Table


class MarkerExists(Exception):
    """The key already stored something (its marker refused the write)."""


def marker_put(user_id: str, key_hash: str, record: StoredItem) -> Item:
    """The marker as a transaction item, refused if the key already has one."""
    return {
        "Put": {
            "Item": {**keys.marker_key(user_id, key_hash), **record.to_item()},
            "ConditionExpression": "attribute_not_exists(PK)",
        }
    }


def create(table: Table, user_id: str, ops: list[Item], marker: tuple[str, StoredItem] | None) -> None:
    """A create's transaction (its new item first), with the key's marker last when there is
    one. Success when the new item already exists (a new id nobody else has: an earlier attempt
    of this request landed and its answer was lost); :class:`MarkerExists` when the key created
    something before; any other refusal is raised as it is."""
    if marker is not None:
        ops = [*ops, marker_put(user_id, *marker)]
    try:
        table.transact(ops)
    except ConditionFailed as exc:
        if exc.failed(0):
            return
        if marker is not None and exc.failed(len(ops) - 1):
            raise MarkerExists from exc
        raise


def get_created(table: Table, user_id: str, key_hash: str) -> CreateMarkerItem | None:
    item = table.get(keys.marker_key(user_id, key_hash))
    return CreateMarkerItem.from_item(item) if item else None
