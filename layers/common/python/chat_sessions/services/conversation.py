"""Sending a message and regenerating a reply: the operations that call the model.

Order of events, for the contract's failure semantics: the user's message is committed first
(status ``unanswered``); the model is called; only then is the reply committed, together with
the user message turning ``complete`` and the usage totals. A model failure therefore leaves
exactly the stored user message behind and changes nothing else.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit

from chat_sessions.clock import utc_now
from chat_sessions.config import get_settings
from chat_sessions.context_window import build_window, estimate_tokens
from chat_sessions.errors import ChatNotActive, NoActiveChat, NothingToRegenerate, ServiceError, SessionPaused
from chat_sessions.ids import new_id
from chat_sessions.llm import ChatModel, Completion
from chat_sessions.models import Exchange
from chat_sessions.observability import metrics
from chat_sessions.services.retry import optimistic
from chat_sessions.store import DynamoStore, Item, WriteConflict
from chat_sessions.views import message_view


def _check_sendable(session: Item, chat: Item) -> None:
    if session["status"] != "active":
        raise SessionPaused("The session is paused; resume it to send messages.")
    if session.get("activeChatId") != chat["chatId"] or not chat["active"]:
        raise ChatNotActive("Only the session's active chat accepts messages; activate this chat first.")


def _load(store: DynamoStore, user_id: str, session_id: str, chat_id: str | None) -> tuple[Item, Item]:
    if chat_id is None:
        session = store.get_session(user_id, session_id)
        active = session.get("activeChatId")
        if active is None:
            if session["status"] != "active":
                raise SessionPaused("The session is paused; resume it to send messages.")
            raise NoActiveChat("The session has no active chat; create or activate one first.")
        return session, store.get_chat(user_id, session_id, active)
    return store.get_session_and_chat(user_id, session_id, chat_id)


def _reply(
    store: DynamoStore,
    model: ChatModel,
    user_id: str,
    chat: Item,
    user_message: Item,
    last_seq_hint: int,
    history: list[Item] | None = None,
) -> Item:
    """Answer ``user_message`` with ``history`` (read here when the caller has none)."""
    settings = get_settings()
    session_id, chat_id = chat["sessionId"], chat["chatId"]
    if history is None:
        history = store.context_window(user_id, session_id, chat_id, user_message["seq"], settings.context_max_messages)
    window = build_window(chat.get("systemPrompt"), history, settings.context_token_budget)
    try:
        completion: Completion = model.complete(chat["model"], window)
    except ServiceError as exc:
        metrics.add_metric(name="ModelFailures", unit=MetricUnit.Count, value=1)
        metrics.add_metadata(key="modelError", value=exc.code)
        raise
    metrics.add_metric(name="ModelTokens", unit=MetricUnit.Count, value=completion.total_tokens)

    reply: Item = {
        "messageId": new_id(),
        "chatId": chat_id,
        "sessionId": session_id,
        "role": "assistant",
        "content": completion.content,
        "status": "complete",
        "model": completion.model,
        "promptTokens": completion.prompt_tokens,
        "completionTokens": completion.completion_tokens,
        "totalTokens": completion.total_tokens,
        "tokens": estimate_tokens(completion.content),
        "replyToSeq": user_message["seq"],
    }
    previous = last_seq_hint

    def attempt() -> Item:
        nonlocal previous
        now = utc_now()
        candidate = {**reply, "seq": previous + 1, "createdAt": now}
        try:
            store.append_assistant_message(user_id, session_id, chat_id, candidate, previous, user_message["seq"])
        except WriteConflict:
            previous = int(store.get_chat(user_id, session_id, chat_id)["lastSeq"])
            raise
        return candidate

    return optimistic(attempt)


def send_message(
    store: DynamoStore, model: ChatModel, user_id: str, session_id: str, chat_id: str | None, content: str
) -> Exchange:
    """Store the user's message in the active chat, then answer it.

    ``chat_id`` None sends to the session's active chat."""
    message_id = new_id()

    def store_user_message() -> tuple[Item, Item]:
        session, chat = _load(store, user_id, session_id, chat_id)
        _check_sendable(session, chat)
        now = utc_now()
        message = {
            "messageId": message_id,
            "chatId": chat["chatId"],
            "sessionId": session_id,
            "seq": int(chat["lastSeq"]) + 1,
            "role": "user",
            "content": content,
            "status": "unanswered",
            "tokens": estimate_tokens(content),
            "createdAt": now,
        }
        store.append_user_message(user_id, session_id, chat["chatId"], message, int(chat["lastSeq"]))
        return chat, message

    chat, user_message = optimistic(store_user_message)
    reply = _reply(store, model, user_id, chat, user_message, user_message["seq"])
    return Exchange(
        user_message=message_view({**user_message, "status": "complete"}), assistant_message=message_view(reply)
    )


def regenerate(store: DynamoStore, model: ChatModel, user_id: str, session_id: str, chat_id: str) -> Exchange:
    """A new reply to the chat's last user message; earlier replies stay."""
    session, chat = _load(store, user_id, session_id, chat_id)
    _check_sendable(session, chat)
    last_user_seq = int(chat.get("lastUserSeq", 0))
    if last_user_seq == 0:
        raise NothingToRegenerate("The chat has no user message to answer.")
    # The window ends at the last user message, so its first item is that message: one query
    # gives both the message to answer and the history to answer it with.
    history = store.context_window(
        user_id, session_id, chat_id, last_user_seq, get_settings().context_max_messages, whole_items=True
    )
    if not history or history[0]["seq"] != last_user_seq:
        raise NothingToRegenerate("The chat has no user message to answer.")
    user_message = history[0]
    reply = _reply(store, model, user_id, chat, user_message, int(chat["lastSeq"]), history)
    return Exchange(
        user_message=message_view({**user_message, "status": "complete"}),
        assistant_message=message_view(reply),
    )
