"""Stored items to response models: the one place that knows both shapes."""

from __future__ import annotations

from typing import Any

from chat_sessions.models import Chat, Message, Session, Usage
from chat_sessions.store import USAGE_FIELDS


def _usage(item: dict[str, Any]) -> Usage:
    return Usage(**{field: int(item.get(field, 0)) for field in USAGE_FIELDS})


def session_view(item: dict[str, Any]) -> Session:
    return Session(
        session_id=item["sessionId"],
        name=item["name"],
        status=item["status"],
        active_chat_id=item.get("activeChatId"),
        chat_count=item["chatCount"],
        message_count=item["messageCount"],
        usage=_usage(item),
        metadata=item.get("metadata", {}),
        created_at=item["createdAt"],
        updated_at=item["updatedAt"],
    )


def chat_view(item: dict[str, Any]) -> Chat:
    return Chat(
        chat_id=item["chatId"],
        session_id=item["sessionId"],
        name=item["name"],
        model=item["model"],
        system_prompt=item.get("systemPrompt"),
        active=item["active"],
        message_count=item["messageCount"],
        usage=_usage(item),
        created_at=item["createdAt"],
        updated_at=item["updatedAt"],
    )


def message_view(item: dict[str, Any]) -> Message:
    return Message(
        message_id=item["messageId"],
        chat_id=item["chatId"],
        session_id=item["sessionId"],
        seq=item["seq"],
        role=item["role"],
        content=item["content"],
        status=item["status"],
        model=item.get("model"),
        usage=_usage(item) if item["role"] == "assistant" else None,
        created_at=item["createdAt"],
    )
