"""WebSocket connections and subscriptions: connect, subscribe to one of the caller's chats,
disconnect (the store's :mod:`~chat_sessions.store.connections` keeps them)."""

from __future__ import annotations

import time

from chat_sessions.clock import utc_now
from chat_sessions.errors import Conflict, NotFound
from chat_sessions.services import retry
from chat_sessions.store import Store
from chat_sessions.store.connections import ChatNotFound, ConnectionGone, ConnectionStore

CONNECTION_TTL_SECONDS = 2 * 3600 + 600
"""``expiresAt`` of connections and subscriptions: API Gateway ends every WebSocket connection
after two hours; ten minutes more, so TTL never removes a live one (DynamoDB's TTL deletes
expired items within days, not at once: pushes to a gone connection delete its subscription
meanwhile)."""


class ConnectionClosed(Conflict):
    code = "connection_closed"


def _expires_at() -> int:
    return int(time.time()) + CONNECTION_TTL_SECONDS


def connect(store: Store, user_id: str, connection_id: str) -> None:
    ConnectionStore(store.table).connect(user_id, connection_id, utc_now(), _expires_at())


def subscribe(store: Store, user_id: str, connection_id: str, session_id: str, chat_id: str) -> None:
    """Subscribe the connection to a chat of the caller's own: ``NotFound`` otherwise (another
    user's chat and a chat that does not exist look the same)."""
    try:  # a collision (a $disconnect or another subscribe at the same instant) is tried again
        retry.optimistic(
            lambda: ConnectionStore(store.table).subscribe(user_id, connection_id, session_id, chat_id, _expires_at())
        )
    except ChatNotFound as exc:
        raise NotFound("Chat not found.") from exc
    except ConnectionGone as exc:
        raise ConnectionClosed("The connection is closed.") from exc


def disconnect(store: Store, user_id: str, connection_id: str) -> int:
    """Delete the connection and its subscriptions; returns how many subscriptions it had."""
    return ConnectionStore(store.table).disconnect(user_id, connection_id)
