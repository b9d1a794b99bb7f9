"""An exchange (a user message and its reply) by reference: what an idempotency record keeps.

Kept apart from :mod:`.conversation` so that replaying a stored response needs no model client
(and no ``openai`` import).
"""

from __future__ import annotations

from typing import Any

from chat_sessions.errors import NotFound
from chat_sessions.models import Exchange
from chat_sessions.store import Store
from chat_sessions.views import message_view


def exchange_ref(exchange: Exchange) -> dict[str, Any]:
    """Where the exchange's messages are stored: a few dozen bytes, whatever their length."""
    user, reply = exchange.user_message, exchange.assistant_message
    return {"sessionId": user.session_id, "chatId": user.chat_id, "userSeq": user.seq, "replySeq": reply.seq}


def read_exchange(store: Store, user_id: str, ref: dict[str, Any]) -> Exchange:
    """The exchange ``ref`` points at, read back (one BatchGetItem)."""
    user, reply = store.messages.get_pair(
        user_id, str(ref["sessionId"]), str(ref["chatId"]), int(ref["userSeq"]), int(ref["replySeq"])
    )
    if user is None or reply is None:
        raise NotFound("The messages of this request no longer exist.")
    return Exchange(user_message=message_view(user), assistant_message=message_view(reply))
