"""Chat operations: create (becomes active), list, get, update, activate, delete."""

from __future__ import annotations

from chat_sessions import cursors, keys
from chat_sessions.clock import utc_now
from chat_sessions.config import get_settings
from chat_sessions.ids import new_id
from chat_sessions.models import Chat, ChatPage, CreateChatRequest, UpdateChatRequest
from chat_sessions.services.retry import optimistic
from chat_sessions.store import DynamoStore, new_usage
from chat_sessions.views import chat_view


def create_chat(store: DynamoStore, user_id: str, session_id: str, request: CreateChatRequest) -> Chat:
    chat_id = new_id()

    def attempt() -> Chat:
        session = store.get_session(user_id, session_id)
        now = utc_now()
        item = {
            "chatId": chat_id,
            "sessionId": session_id,
            "name": request.name,
            "model": request.model or get_settings().default_model,
            "active": True,
            "messageCount": 0,
            "lastSeq": 0,
            "lastUserSeq": 0,
            "createdAt": now,
            "updatedAt": now,
            **new_usage(),
        }
        if request.system_prompt is not None:
            item["systemPrompt"] = request.system_prompt
        store.create_chat(user_id, session_id, item, session.get("activeChatId"))
        return chat_view(item)

    return optimistic(attempt)


def list_chats(store: DynamoStore, user_id: str, session_id: str, limit: int, cursor: str | None) -> ChatPage:
    scope = {"partition": keys.session_partition(user_id, session_id), "listing": "chats"}
    after = cursors.decode(cursor, prefix=keys.CHAT_PREFIX, **scope)
    store.get_session(user_id, session_id)
    items, last = store.list_chats(user_id, session_id, limit, after)
    return ChatPage(items=[chat_view(i) for i in items], next_cursor=cursors.encode(last, **scope))


def get_chat(store: DynamoStore, user_id: str, session_id: str, chat_id: str) -> Chat:
    return chat_view(store.get_chat(user_id, session_id, chat_id))


def update_chat(store: DynamoStore, user_id: str, session_id: str, chat_id: str, request: UpdateChatRequest) -> Chat:
    changes = request.model_dump(exclude_unset=True, by_alias=True)
    if not changes:
        return get_chat(store, user_id, session_id, chat_id)
    removes = [field for field, value in changes.items() if value is None]
    sets = {field: value for field, value in changes.items() if value is not None}
    return chat_view(store.update_chat(user_id, session_id, chat_id, sets, removes, utc_now()))


def activate_chat(store: DynamoStore, user_id: str, session_id: str, chat_id: str) -> Chat:
    """Activating the active chat answers it unchanged."""

    def attempt() -> Chat:
        session, chat = store.get_session_and_chat(user_id, session_id, chat_id)
        previous = session.get("activeChatId")
        if previous == chat_id and chat["active"]:
            return chat_view(chat)
        now = utc_now()
        store.activate_chat(user_id, session_id, chat_id, previous, now)
        return chat_view({**chat, "active": True, "updatedAt": now})

    return optimistic(attempt)


def delete_chat(store: DynamoStore, user_id: str, session_id: str, chat_id: str) -> None:
    def attempt() -> None:
        session, chat = store.get_session_and_chat(user_id, session_id, chat_id)
        store.delete_chat(user_id, session_id, chat, session.get("activeChatId"), utc_now())

    optimistic(attempt)
