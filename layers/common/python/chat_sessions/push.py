"""Push to a chat's WebSocket subscribers (``delta`` frames as a reply is generated).

A function pushes only when its environment names the WebSocket API's management endpoint
(``WEBSOCKET_ENDPOINT``); without it every call here is a no-op, so code that generates a reply
runs the same whether or not a WebSocket API is deployed.
"""

from __future__ import annotations

import os


def endpoint() -> str | None:
    """The management endpoint (``https://<api>.execute-api.<region>.amazonaws.com/<stage>``)."""
    value = os.environ.get("WEBSOCKET_ENDPOINT", "").strip()
    return value or None


def push_delta(user_id: str, session_id: str, chat_id: str, message_id: str, offset: int, text: str) -> None:
    """Send ``{"type": "delta", "messageId", "offset", "text"}`` to every subscriber of the chat:
    ``text`` is the reply's content from character ``offset`` on. Never raises: a push that fails
    loses a frame, not the reply (the stored content is the truth, clients catch up from it)."""
    if endpoint() is None or not text:
        return
