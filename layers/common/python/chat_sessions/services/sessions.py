"""Session operations: create, list, get, update, pause, resume, archive, unarchive, delete."""

from __future__ import annotations

from collections.abc import Callable

from chat_sessions import cursors, keys, retention, usage
from chat_sessions.clock import utc_now
from chat_sessions.config import get_settings
from chat_sessions.errors import NotFound, SessionArchived
from chat_sessions.ids import new_id
from chat_sessions.items import SessionItem
from chat_sessions.items import SessionStatus as Status
from chat_sessions.models import (
    CreateSessionRequest,
    Session,
    SessionCounts,
    SessionPage,
    UpdateSessionRequest,
    Usage,
    UserUsage,
)
from chat_sessions.services.request_keys import RequestKey, created_marker, first_created
from chat_sessions.services.retry import optimistic
from chat_sessions.session_status import READ_ONLY, transition
from chat_sessions.store import ConditionFailed, Store
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
        expires_at=retention.expires_at(now, archived=False),
    )
    marker = created_marker(key, item.session_id)
    try:
        optimistic(lambda: store.sessions.create(user_id, item, get_settings().max_active_sessions, marker))
    except MarkerExists:
        assert key is not None
        return get_session(store, user_id, first_created(store, user_id, key).session_id)
    return session_view(item)


LISTED_BY_DEFAULT: tuple[Status, ...] = ("active", "paused")
"""What ``GET /sessions`` without ``status`` lists: archived sessions are left out."""


def list_sessions(
    store: Store, user_id: str, limit: int, cursor: str | None, status: Status | None = None
) -> SessionPage:
    """Newest first, the sessions in ``status`` (without it, those not archived). A cursor is
    bound to the status it was issued for: another status's cursor answers 400."""
    statuses = LISTED_BY_DEFAULT if status is None else (status,)
    scope = {"partition": keys.user_pk(user_id), "listing": "sessions:" + ",".join(statuses)}
    after = cursors.decode(cursor, prefix=keys.SESSION_PREFIX, **scope)
    items, last = store.sessions.page(user_id, statuses, limit, after)
    return SessionPage(items=[session_view(i) for i in items], next_cursor=cursors.encode(last, **scope))


def get_session(store: Store, user_id: str, session_id: str) -> Session:
    return session_view(store.sessions.get(user_id, session_id))


def update_session(store: Store, user_id: str, session_id: str, request: UpdateSessionRequest) -> Session:
    """Refused in an archived session (read-only): the write's condition, read back after a
    refusal to tell "archived" from "gone"."""
    changes = request.model_dump(exclude_unset=True)
    if not changes:
        return get_session(store, user_id, session_id)

    def attempt() -> Session:
        try:
            return session_view(store.sessions.update(user_id, session_id, changes, utc_now()))
        except ConditionFailed:
            writable(store.sessions.get(user_id, session_id))  # NotFound when it is gone
            raise  # unarchived meanwhile: try again

    return optimistic(attempt)


def writable(session: SessionItem) -> SessionItem:
    """``session``, unless it is archived (read-only): then ``409 session_archived``."""
    if session.status == READ_ONLY:
        raise SessionArchived("The session is archived; unarchive it to change it.")
    return session


def _set_status(store: Store, user_id: str, session_id: str, status: Status, allowed_from: set[Status]) -> Session:
    """Move to ``status`` from one of ``allowed_from``. A session in any other status is
    answered unchanged, unless it is archived: an archived session this may not leave answers
    ``session_archived``. The write is conditioned on the status read (a stale read retries)."""

    def attempt() -> Session:
        item = store.sessions.get(user_id, session_id)
        if item.status not in allowed_from:
            return session_view(writable(item) if item.status != status else item)
        change = transition(item.status, status)
        if change is None:
            return session_view(item)
        now = utc_now()
        store.sessions.set_status(user_id, session_id, change, now, get_settings().max_active_sessions)
        expires = retention.expires_at(now, archived=status == READ_ONLY)
        return session_view(item.model_copy(update={"status": status, "updated_at": now, "expires_at": expires}))

    return optimistic(attempt)


def pause_session(store: Store, user_id: str, session_id: str) -> Session:
    """Pausing an already paused session answers it unchanged; an archived one is refused."""
    return _set_status(store, user_id, session_id, "paused", {"active"})


def resume_session(store: Store, user_id: str, session_id: str) -> Session:
    """Resuming an active session answers it unchanged (it holds its quota slot already)."""
    return _set_status(store, user_id, session_id, "active", {"paused"})


def archive_session(store: Store, user_id: str, session_id: str) -> Session:
    """Archived: read-only, and no longer holding a place under ``MAX_ACTIVE_SESSIONS``.
    Archiving an archived session answers it unchanged."""
    return _set_status(store, user_id, session_id, "archived", {"active", "paused"})


def unarchive_session(store: Store, user_id: str, session_id: str) -> Session:
    """Back to ``paused`` (taking no place: resuming it takes one, within the limit). A session
    that is not archived is answered unchanged."""
    return _set_status(store, user_id, session_id, "paused", {"archived"})


def get_usage(store: Store, user_id: str) -> UserUsage:
    """The caller's counters (one read of one item, exact: each is moved in the transaction
    that changes what it counts) and this month's tokens against ``MONTHLY_TOKEN_BUDGET``."""
    counters = store.sessions.counters(user_id)
    period = usage.period_of(utc_now())

    def tokens(name: Callable[[str], str]) -> Usage:
        return Usage.model_validate({f: counters.get(name(f), 0) for f in usage.TOKEN_FIELDS})

    budget = get_settings().monthly_token_budget
    return UserUsage(
        sessions=SessionCounts(**{s: counters.get(c, 0) for s, c in usage.STATUS_COUNTERS.items()}),
        chats=counters.get("chats", 0),
        messages=counters.get("messages", 0),
        usage=tokens(lambda f: f),
        period=period,
        period_usage=tokens(lambda f: usage.period_field(f, period)),
        token_budget=budget or None,
    )


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
        store.sessions.delete(user_id, session_id, item.status, item.chat_count, item.message_count)

    optimistic(attempt)
