"""Reading a chat's messages (no model involved, so no ``openai`` import).

One query per page for a chat that shares nothing: its first page's query reads the chat's head
or base with its messages, which tells an empty chat from none (and a fork from a chat that
shares nothing); a fork's pages read the chats its lineage names too (:mod:`.history`)."""

from __future__ import annotations

from chat_sessions.services.history import list_messages

__all__ = ["list_messages"]
