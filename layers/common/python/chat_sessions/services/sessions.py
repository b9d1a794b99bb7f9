"""Session operations: create, list, get, update, pause, resume, delete."""

from __future__ import annotations

from chat_sessions import cursors, keys
from chat_sessions.clock import utc_now
from chat_sessions.config import get_settings
from chat_sessions.ids import new_id
from chat_sessions.models import CreateSessionRequest, Session, SessionPage, UpdateSessionRequest
from chat_sessions.services.retry import optimistic
from chat_sessions.store import DynamoStore, new_usage
from chat_sessions.views import session_view


def create_session(store: DynamoStore, user_id: str, request: CreateSessionRequest) -> Session:
    now = utc_now()
    item = {
        "sessionId": new_id(),
        "name": request.name,
        "status": "active",
        "chatCount": 0,
        "messageCount": 0,
        "metadata": request.metadata or {},
        "createdAt": now,
        "updatedAt": now,
        **new_usage(),
    }
    store.create_session(user_id, item, get_settings().max_active_sessions)
    return session_view(item)


def list_sessions(store: DynamoStore, user_id: str, limit: int, cursor: str | None) -> SessionPage:
    scope = {"partition": keys.user_pk(user_id), "listing": "sessions"}
    after = cursors.decode(cursor, prefix=keys.SESSION_PREFIX, **scope)
    items, last = store.list_sessions(user_id, limit, after)
    return SessionPage(items=[session_view(i) for i in items], next_cursor=cursors.encode(last, **scope))


def get_session(store: DynamoStore, user_id: str, session_id: str) -> Session:
    return session_view(store.get_session(user_id, session_id))


def update_session(store: DynamoStore, user_id: str, session_id: str, request: UpdateSessionRequest) -> Session:
    changes = request.model_dump(exclude_unset=True)
    if not changes:
        return get_session(store, user_id, session_id)
    return session_view(store.update_session(user_id, session_id, changes, utc_now()))


def _set_status(store: DynamoStore, user_id: str, session_id: str, status: str) -> Session:
    def attempt() -> Session:
        item = store.get_session(user_id, session_id)
        if item["status"] == status:
            return session_view(item)
        now = utc_now()
        store.set_session_status(user_id, session_id, status, now, get_settings().max_active_sessions)
        return session_view({**item, "status": status, "updatedAt": now})

    return optimistic(attempt)


def pause_session(store: DynamoStore, user_id: str, session_id: str) -> Session:
    """Pausing an already paused session answers it unchanged."""
    return _set_status(store, user_id, session_id, "paused")


def resume_session(store: DynamoStore, user_id: str, session_id: str) -> Session:
    """Resuming an active session answers it unchanged (it holds its quota slot already)."""
    return _set_status(store, user_id, session_id, "active")


def delete_session(store: DynamoStore, user_id: str, session_id: str) -> None:
    def attempt() -> None:
        item = store.get_session(user_id, session_id)
        store.delete_session(user_id, session_id, item["status"])

    optimistic(attempt)
