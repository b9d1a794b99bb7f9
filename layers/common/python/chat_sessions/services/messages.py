"""Reading a chat's messages (no model involved, so no ``openai`` import).

One query per page: a page with messages shows that the chat exists (its messages go with
it); only an empty first page asks for the chat, to tell an empty chat from none."""

from __future__ import annotations

from typing import Literal

from chat_sessions import cursors, keys
from chat_sessions.models import MessagePage
from chat_sessions.store import Store
from chat_sessions.views import message_view


def list_messages(
    store: Store,
    user_id: str,
    session_id: str,
    chat_id: str,
    limit: int,
    cursor: str | None,
    order: Literal["asc", "desc"],
) -> MessagePage:
    scope = {"partition": keys.session_partition(user_id, session_id), "listing": f"messages:{chat_id}:{order}"}
    after = cursors.decode(cursor, prefix=keys.message_prefix(chat_id), **scope)
    items, last = store.messages.page(user_id, session_id, chat_id, limit, after, oldest_first=order == "asc")
    if not items and after is None:
        store.chats.get(user_id, session_id, chat_id)  # an empty first page: empty chat, or none (404)
    return MessagePage(items=[message_view(i) for i in items], next_cursor=cursors.encode(last, **scope))
