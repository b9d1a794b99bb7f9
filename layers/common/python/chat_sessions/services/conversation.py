"""Sending a message and regenerating a reply: the operations that call the model.

Order of events, for the contract's failure semantics: the user's message is committed first
(status ``unanswered``); the model is called; only then is the reply committed, together with
the user message turning ``complete`` and the usage totals. A model failure therefore leaves
exactly the stored user message behind and changes nothing else.

Retries never store a message twice. An append refused by its seq condition first asks whether
its own earlier attempt landed (its answer lost), and a send under an ``Idempotency-Key`` writes
a marker with its user message, so a repeat after a failure answers the message already stored
instead of storing another.
"""

from __future__ import annotations

import time

from aws_lambda_powertools.metrics import MetricUnit

from chat_sessions.clock import utc_now
from chat_sessions.config import get_settings
from chat_sessions.context_window import build_window, estimate_tokens
from chat_sessions.errors import (
    ChatNotActive,
    IdempotencyKeyReused,
    NoActiveChat,
    NotFound,
    NothingToRegenerate,
    ServiceError,
    SessionPaused,
)
from chat_sessions.ids import new_id
from chat_sessions.items import ChatItem, MessageItem, SendMarkerItem, SessionItem
from chat_sessions.llm import ChatModel, Completion
from chat_sessions.models import Exchange
from chat_sessions.observability import metrics
from chat_sessions.services.exchanges import SendKey
from chat_sessions.services.retry import Stale, optimistic
from chat_sessions.store import ConditionFailed, Item, Store
from chat_sessions.views import message_view


class _Repeat(Exception):
    """The key already stored a user message: answer that one."""

    def __init__(self, marker: SendMarkerItem) -> None:
        super().__init__(marker.message_id)
        self.marker = marker


def _check_sendable(session: SessionItem, chat: ChatItem) -> None:
    if session.status != "active":
        raise SessionPaused("The session is paused; resume it to send messages.")
    if session.active_chat_id != chat.chat_id or not chat.active:
        raise ChatNotActive("Only the session's active chat accepts messages; activate this chat first.")


def _load(store: Store, user_id: str, session_id: str, chat_id: str | None) -> tuple[SessionItem, ChatItem]:
    """Session and chat; ``chat_id`` None follows the session's pointer. A pointer that moved
    between the two reads is :class:`Stale` (retried), never an answer of ``chat_not_active``."""
    if chat_id is not None:
        return store.chats.get_with_session(user_id, session_id, chat_id)
    session = store.sessions.get(user_id, session_id)
    active = session.active_chat_id
    if active is None:
        if session.status != "active":
            raise SessionPaused("The session is paused; resume it to send messages.")
        raise NoActiveChat("The session has no active chat; create or activate one first.")
    try:
        chat = store.chats.get(user_id, session_id, active)
    except NotFound as exc:
        raise Stale("the active chat was deleted between two reads") from exc
    if not chat.active:
        raise Stale("the active chat changed between two reads")
    return session, chat


def _complete(model: ChatModel, chat: ChatItem, window: list[dict[str, str]]) -> Completion:
    try:
        completion = model.complete(chat.model, window)
    except ServiceError as exc:
        metrics.add_metric(name="ModelFailures", unit=MetricUnit.Count, value=1)
        metrics.add_metadata(key="modelError", value=exc.code)
        raise
    metrics.add_metric(name="ModelTokens", unit=MetricUnit.Count, value=completion.total_tokens)
    return completion


def _reply(
    store: Store,
    model: ChatModel,
    user_id: str,
    chat: ChatItem,
    user_message: MessageItem,
    last_seq_hint: int,
    history: list[Item] | None = None,
) -> MessageItem:
    """Answer ``user_message`` with ``history`` (read here when the caller has none) and
    append the reply after the chat's last message."""
    settings = get_settings()
    session_id, chat_id = chat.session_id, chat.chat_id
    if history is None:
        history = store.messages.window(user_id, session_id, chat_id, user_message.seq, settings.context_max_messages)
    completion = _complete(model, chat, build_window(chat.system_prompt, history, settings.context_token_budget))
    message_id = new_id()
    previous = last_seq_hint

    def attempt() -> MessageItem:
        nonlocal previous
        reply = MessageItem(
            message_id=message_id,
            chat_id=chat_id,
            session_id=session_id,
            seq=previous + 1,
            role="assistant",
            content=completion.content,
            status="complete",
            model=completion.model,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            total_tokens=completion.total_tokens,
            tokens=estimate_tokens(completion.content),
            reply_to_seq=user_message.seq,
            created_at=utc_now(),
        )
        try:
            store.messages.append_reply(user_id, reply, previous)
        except ConditionFailed:
            if store.messages.landed(reply, user_id):
                return reply
            previous = store.chats.get(user_id, session_id, chat_id).last_seq
            raise
        return reply

    return optimistic(attempt)


def _exchange(user_message: MessageItem, reply: MessageItem) -> Exchange:
    return Exchange(
        user_message=message_view(user_message.model_copy(update={"status": "complete", "reply_seq": reply.seq})),
        assistant_message=message_view(reply),
    )


def send_message(
    store: Store,
    model: ChatModel,
    user_id: str,
    session_id: str,
    chat_id: str | None,
    content: str,
    key: SendKey | None = None,
) -> Exchange:
    """Store the user's message in the active chat, then answer it.

    ``chat_id`` None sends to the session's active chat, whichever it is when the message is
    committed."""
    message_id = new_id()
    marker: tuple[str, SendMarkerItem] | None = None

    def store_user_message() -> tuple[ChatItem, MessageItem]:
        nonlocal marker
        session, chat = _load(store, user_id, session_id, chat_id)
        _check_sendable(session, chat)
        message = MessageItem(
            message_id=message_id,
            chat_id=chat.chat_id,
            session_id=session_id,
            seq=chat.last_seq + 1,
            role="user",
            content=content,
            status="unanswered",
            tokens=estimate_tokens(content),
            created_at=utc_now(),
        )
        if key is not None:
            marker = (key.key_hash, _marker(key, message))
        try:
            store.messages.append_user(user_id, message, chat.last_seq, marker)
        except ConditionFailed:
            if store.messages.landed(message, user_id):
                return chat, message
            if key is not None:
                stored = store.messages.get_marker(user_id, key.key_hash)
                if stored is not None:
                    raise _Repeat(stored) from None
            raise
        return chat, message

    try:
        chat, user_message = optimistic(store_user_message)
    except _Repeat as repeat:
        return _answer_stored(store, model, user_id, key, repeat.marker)
    reply = _reply(store, model, user_id, chat, user_message, user_message.seq)
    return _exchange(user_message, reply)


def _marker(key: SendKey, message: MessageItem) -> SendMarkerItem:
    return SendMarkerItem(
        session_id=message.session_id,
        chat_id=message.chat_id,
        seq=message.seq,
        message_id=message.message_id,
        request_hash=key.request_hash,
        expires_at=int(time.time()) + get_settings().idempotency_ttl_seconds,
    )


def _answer_stored(
    store: Store, model: ChatModel, user_id: str, key: SendKey | None, marker: SendMarkerItem
) -> Exchange:
    """A repeat of a send whose user message is stored: its first reply if it has one, else
    a reply now (under the same rules as a regenerate)."""
    if key is None or marker.request_hash != key.request_hash:
        raise IdempotencyKeyReused("This Idempotency-Key was already used with a different request.")
    session_id, chat_id = marker.session_id, marker.chat_id

    def attempt() -> Exchange:
        session, chat = store.chats.get_with_session(user_id, session_id, chat_id)
        user_message = store.messages.get(user_id, session_id, chat_id, marker.seq)
        if user_message is None or user_message.message_id != marker.message_id:
            raise NotFound("The message this Idempotency-Key stored no longer exists.")
        if user_message.reply_seq is not None:
            reply = store.messages.get(user_id, session_id, chat_id, user_message.reply_seq)
            if reply is not None:
                return _exchange(user_message, reply)
        _check_sendable(session, chat)
        history = store.messages.window(
            user_id, session_id, chat_id, user_message.seq, get_settings().context_max_messages
        )
        reply = _reply(store, model, user_id, chat, user_message, chat.last_seq, history)
        return _exchange(user_message, reply)

    return optimistic(attempt)


def regenerate(store: Store, model: ChatModel, user_id: str, session_id: str, chat_id: str) -> Exchange:
    """A new reply to the chat's last user message; earlier replies stay."""

    def load() -> tuple[ChatItem, MessageItem, list[Item]]:
        session, chat = _load(store, user_id, session_id, chat_id)
        _check_sendable(session, chat)
        if chat.last_user_seq == 0:
            raise NothingToRegenerate("The chat has no user message to answer.")
        # The window ends at the last user message, so its first item is that message: one
        # query gives both the message to answer and the history to answer it with.
        history = store.messages.window(
            user_id, session_id, chat_id, chat.last_user_seq, get_settings().context_max_messages, whole_items=True
        )
        if not history or history[0]["seq"] != chat.last_user_seq:
            raise NothingToRegenerate("The chat has no user message to answer.")
        return chat, MessageItem.from_item(history[0]), history

    chat, user_message, history = optimistic(load)
    reply = _reply(store, model, user_id, chat, user_message, chat.last_seq, history)
    return _exchange(user_message, reply)
