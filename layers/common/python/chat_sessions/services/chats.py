"""Chat operations: create (becomes active), list, get, update, activate, delete.

In an archived session every write here answers ``409 session_archived``: each transaction is
conditioned on the session not being archived, and the status read before it (or after its
refusal) names the answer."""

from __future__ import annotations

from chat_sessions import cursors, keys
from chat_sessions.clock import utc_now
from chat_sessions.config import get_settings
from chat_sessions.errors import IdempotencyKeyReused, NotFound, SessionArchived
from chat_sessions.ids import new_id
from chat_sessions.items import ChatItem
from chat_sessions.models import Chat, ChatPage, CreateChatRequest, UpdateChatRequest
from chat_sessions.services.request_keys import RequestKey, created_marker, first_created
from chat_sessions.services.retry import optimistic
from chat_sessions.services.sessions import writable
from chat_sessions.store import ConditionFailed, Store
from chat_sessions.store.markers import MarkerExists, get_created
from chat_sessions.views import chat_view


def create_chat(
    store: Store, user_id: str, session_id: str, request: CreateChatRequest, key: RequestKey | None = None
) -> Chat:
    """A new chat, now the session's active one. Under an ``Idempotency-Key`` whose earlier
    attempt DynamoDB committed (its answer lost), the chat that attempt created."""
    chat_id = new_id()
    marker = created_marker(key, session_id, chat_id)

    def attempt() -> Chat:
        session = writable(store.sessions.get(user_id, session_id))
        now = utc_now()
        item = ChatItem(
            chat_id=chat_id,
            session_id=session_id,
            name=request.name,
            model=request.model or get_settings().default_model,
            system_prompt=request.system_prompt,
            active=True,
            message_count=0,
            created_at=now,
            updated_at=now,
        )
        store.chats.create(user_id, session_id, item, session.active_chat_id, marker)
        return chat_view(item)

    def created_before() -> Chat:
        assert key is not None
        first = first_created(store, user_id, key)
        if first.chat_id is None or first.session_id != session_id:
            raise IdempotencyKeyReused("This Idempotency-Key was already used with a different request.") from None
        return get_chat(store, user_id, session_id, first.chat_id)

    try:
        return optimistic(attempt)
    except MarkerExists:
        return created_before()
    except SessionArchived:
        # A repeat whose earlier attempt DynamoDB committed (its answer lost) before the session
        # was archived: that chat exists, so answer it, not a refusal of what was done (found
        # by the fault tier: the retry answered 409 session_archived with the chat stored).
        if key is None or get_created(store.table, user_id, key.key_hash) is None:
            raise
        return created_before()


def list_chats(store: Store, user_id: str, session_id: str, limit: int, cursor: str | None) -> ChatPage:
    scope = {"partition": keys.session_partition(user_id, session_id), "listing": "chats"}
    after = cursors.decode(cursor, prefix=keys.CHAT_PREFIX, **scope)
    store.sessions.get(user_id, session_id)
    items, last = store.chats.page(user_id, session_id, limit, after)
    return ChatPage(items=[chat_view(i) for i in items], next_cursor=cursors.encode(last, **scope))


def get_chat(store: Store, user_id: str, session_id: str, chat_id: str) -> Chat:
    return chat_view(store.chats.get(user_id, session_id, chat_id))


def update_chat(store: Store, user_id: str, session_id: str, chat_id: str, request: UpdateChatRequest) -> Chat:
    changes = request.model_dump(exclude_unset=True, by_alias=True)
    if not changes:
        return get_chat(store, user_id, session_id, chat_id)
    removes = [field for field, value in changes.items() if value is None]
    sets = {field: value for field, value in changes.items() if value is not None}

    def attempt() -> Chat:
        try:
            return chat_view(store.chats.update(user_id, session_id, chat_id, sets, removes, utc_now()))
        except ConditionFailed:  # the session's check: archived, gone, or unarchived since
            try:
                writable(store.sessions.get(user_id, session_id))
            except NotFound:
                raise NotFound("Chat not found.") from None
            raise

    return optimistic(attempt)


def activate_chat(store: Store, user_id: str, session_id: str, chat_id: str) -> Chat:
    """Activating the active chat answers it unchanged."""

    def attempt() -> Chat:
        session, chat = store.chats.get_with_session(user_id, session_id, chat_id)
        writable(session)
        previous = session.active_chat_id
        if previous == chat_id and chat.active:
            return chat_view(chat)
        now = utc_now()
        store.chats.activate(user_id, session_id, chat_id, previous, now)
        return chat_view(chat.model_copy(update={"active": True, "updated_at": now}))

    return optimistic(attempt)


def delete_chat(store: Store, user_id: str, session_id: str, chat_id: str) -> None:
    """A chat that is gone by a retry was deleted: by an earlier attempt of this request whose
    answer was lost, or by a concurrent delete. Either way the answer is 204, after making sure
    its messages are purged. A chat not found on the first attempt is purged too before the
    404, so a client's retry finishes a purge that failed after the chat item went."""
    attempts = 0

    def attempt() -> None:
        nonlocal attempts
        attempts += 1
        try:
            session, chat = store.chats.get_with_session(user_id, session_id, chat_id)
        except NotFound:
            store.chats.purge(user_id, session_id, chat_id)  # what an earlier attempt may not have done
            if attempts > 1:
                return
            raise
        writable(session)
        store.chats.delete(user_id, session_id, chat, session.active_chat_id, utc_now())

    optimistic(attempt)
