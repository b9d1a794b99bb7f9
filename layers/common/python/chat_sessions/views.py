"""Stored items to response models: the one place that knows both shapes."""

from __future__ import annotations

import time

from chat_sessions import retention
from chat_sessions.items import ChatItem, MessageItem, SessionItem
from chat_sessions.items import Usage as StoredUsage
from chat_sessions.models import Chat, ForkedFrom, Message, Session, Usage


def _usage(usage: StoredUsage) -> Usage:
    return Usage(
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens, total_tokens=usage.total_tokens
    )


def session_view(item: SessionItem) -> Session:
    return Session(
        session_id=item.session_id,
        name=item.name,
        status=item.status,
        active_chat_id=item.active_chat_id,
        chat_count=item.chat_count,
        message_count=item.message_count,
        usage=_usage(item.usage),
        metadata=item.metadata,
        created_at=item.created_at,
        updated_at=item.updated_at,
        expires_at=retention.iso(item.expires_at),
    )


def chat_view(item: ChatItem) -> Chat:
    return Chat(
        chat_id=item.chat_id,
        session_id=item.session_id,
        name=item.name,
        model=item.model,
        system_prompt=item.system_prompt,
        active=item.active,
        message_count=item.message_count,
        usage=_usage(item.usage),
        created_at=item.created_at,
        updated_at=item.updated_at,
        forked_from=None
        if item.forked_from is None
        else ForkedFrom(chat_id=item.forked_from.chat_id, seq=item.forked_from.seq),
    )


def message_view(item: MessageItem) -> Message:
    usage = item.usage
    return Message(
        message_id=item.message_id,
        chat_id=item.chat_id,
        session_id=item.session_id,
        seq=item.seq,
        role=item.role,
        content=item.content,
        status=item.shown_status(time.time()),
        model=item.model,
        usage=None if usage is None else _usage(usage),
        created_at=item.created_at,
    )
