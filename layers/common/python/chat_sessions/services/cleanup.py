"""Purging what a deleted session or chat owned, from the table's stream.

``DELETE`` purges in the request already; this consumer of the table's ``REMOVE`` events is the
safety net that finishes a purge the request could not (a timeout, a crash), and Lambda retries
it until it succeeds. Purging is idempotent: a second pass over an empty range deletes nothing.
"""

from __future__ import annotations

from chat_sessions import keys
from chat_sessions.store import Store


def purge_children(store: Store, pk: str, sk: str) -> int:
    """Delete every item the removed item ``(pk, sk)`` owned; returns how many were left."""
    chat_id = keys.removed_chat(pk, sk)
    if chat_id is not None:  # its head says whether forks share messages it must keep
        return store.chats.purge_in(pk, chat_id)
    owned = keys.children_of_removed(pk, sk)
    if owned is None:
        return 0
    return store.table.purge(*owned)
