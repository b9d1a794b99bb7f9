"""Session operations: create, list, get, update, pause, resume, delete."""

from __future__ import annotations

from chat_sessions import cursors, keys
from chat_sessions.clock import utc_now
from chat_sessions.config import get_settings
from chat_sessions.errors import NotFound
from chat_sessions.ids import new_id
from chat_sessions.items import SessionItem
from chat_sessions.items import SessionStatus as Status
from chat_sessions.models import CreateSessionRequest, Session, SessionPage, UpdateSessionRequest
from chat_sessions.services.request_keys import RequestKey, created_marker, first_created
from chat_sessions.services.retry import optimistic
from chat_sessions.session_status import transition
from chat_sessions.store import Store
from chat_sessions.store.markers import MarkerExists
from chat_sessions.views import session_view


def create_session(store: Store, user_id: str, request: CreateSessionRequest, key: RequestKey | None = None) -> Session:
    """A new active session. Under an ``Idempotency-Key`` whose earlier attempt DynamoDB
    committed (its answer lost), the session that attempt created."""
    now = utc_now()
    item = SessionItem(
        session_id=new_id(),
        name=request.name,
        status="active",
        chat_count=0,
        message_count=0,
        metadata=request.metadata or {},
        created_at=now,
        updated_at=now,
    )
    marker = created_marker(key, item.session_id)
    try:
        optimistic(lambda: store.sessions.create(user_id, item, get_settings().max_active_sessions, marker))
    except MarkerExists:
        assert key is not None
        return get_session(store, user_id, first_created(store, user_id, key).session_id)
    return session_view(item)


def list_sessions(store: Store, user_id: str, limit: int, cursor: str | None) -> SessionPage:
    scope = {"partition": keys.user_pk(user_id), "listing": "sessions"}
    after = cursors.decode(cursor, prefix=keys.SESSION_PREFIX, **scope)
    items, last = store.sessions.page(user_id, limit, after)
    return SessionPage(items=[session_view(i) for i in items], next_cursor=cursors.encode(last, **scope))


def get_session(store: Store, user_id: str, session_id: str) -> Session:
    return session_view(store.sessions.get(user_id, session_id))


def update_session(store: Store, user_id: str, session_id: str, request: UpdateSessionRequest) -> Session:
    changes = request.model_dump(exclude_unset=True)
    if not changes:
        return get_session(store, user_id, session_id)
    return session_view(optimistic(lambda: store.sessions.update(user_id, session_id, changes, utc_now())))


def _set_status(store: Store, user_id: str, session_id: str, status: Status) -> Session:
    def attempt() -> Session:
        item = store.sessions.get(user_id, session_id)
        change = transition(item.status, status)
        if change is None:
            return session_view(item)
        now = utc_now()
        store.sessions.set_status(user_id, session_id, change, now, get_settings().max_active_sessions)
        return session_view(item.model_copy(update={"status": status, "updated_at": now}))

    return optimistic(attempt)


def pause_session(store: Store, user_id: str, session_id: str) -> Session:
    """Pausing an already paused session answers it unchanged."""
    return _set_status(store, user_id, session_id, "paused")


def resume_session(store: Store, user_id: str, session_id: str) -> Session:
    """Resuming an active session answers it unchanged (it holds its quota slot already)."""
    return _set_status(store, user_id, session_id, "active")


def delete_session(store: Store, user_id: str, session_id: str) -> None:
    """A session that is gone by a retry was deleted (see ``chats.delete_chat``): 204. A session
    not found is purged all the same before the 404: a DELETE whose purge failed (throttled,
    DynamoDB unavailable) after the session item went is finished by the client's retry, not
    only by the table's stream."""
    attempts = 0

    def attempt() -> None:
        nonlocal attempts
        attempts += 1
        try:
            item = store.sessions.get(user_id, session_id)
        except NotFound:
            store.sessions.purge(user_id, session_id)  # what an earlier attempt may not have done
            if attempts > 1:
                return
            raise
        store.sessions.delete(user_id, session_id, item.status)

    optimistic(attempt)
