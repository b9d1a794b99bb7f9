"""Push to a chat's WebSocket subscribers: ``delta`` frames as a reply is generated, ``message``
frames when a message is stored or changes status (``functions/push_messages.py``).

A function pushes only when its environment names the WebSocket API's management endpoint
(``WEBSOCKET_ENDPOINT``: ``https://<api>.execute-api.<region>.amazonaws.com/<stage>`` deployed,
the local gateway's URL locally, which serves the same ``@connections`` API); without it every
call here is a no-op, so code that generates a reply runs the same whether or not anyone
listens. A push never raises: a lost frame loses nothing stored (the stored message is the
truth, and a client catches up from it with ``GET .../messages/{id}?after=``).

Subscribers are the subscription items of the chat (``store.connections``), one query per push,
except that the deltas of one reply reuse the list for up to ``SUBSCRIBERS_TTL_SECONDS`` (a
subscriber that joins midway starts receiving within that time; the first delta of a reply,
offset 0, always reads it afresh), and that the messages of one stream batch read each chat's
list once (:func:`one_read_per_chat`: a send's question, its reply and the question turning
``complete`` are three records, often of one batch). A connection API Gateway reports gone
(``GoneException``) has its subscription deleted.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from chat_sessions import keys

SUBSCRIBERS_TTL_SECONDS = 1.0
_subscribers_cache: dict[tuple[str, str], tuple[float, list[dict[str, Any]]]] = {}
_batch_began: float | None = None  # when one_read_per_chat began: lists read since are the batch's


@contextmanager
def one_read_per_chat() -> Iterator[None]:
    """Within the block (one stream batch), a chat's subscribers are read by its first push and
    reused by the others, whatever their ``fresh``: the batch's frames are posted within
    milliseconds, as the deltas of one reply are."""
    global _batch_began
    _batch_began = time.monotonic()
    try:
        yield
    finally:
        _batch_began = None


def endpoint() -> str | None:
    """The management endpoint, or None when this function does not push."""
    value = os.environ.get("WEBSOCKET_ENDPOINT", "").strip()
    return value or None


@lru_cache(maxsize=4)
def _client(url: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=2, read_timeout=5)
    return boto3.client("apigatewaymanagementapi", endpoint_url=url, config=config)


def _connections() -> Any:
    from chat_sessions.store import get_store
    from chat_sessions.store.connections import ConnectionStore

    return ConnectionStore(get_store().table)


def _logger() -> Any:
    from chat_sessions.observability import logger

    return logger


def push_delta(user_id: str, session_id: str, chat_id: str, message_id: str, offset: int, text: str) -> None:
    """Send ``{"type": "delta", "messageId", "offset", "text"}`` to every subscriber of the chat:
    ``text`` is the reply's content from character ``offset`` on."""
    if endpoint() is None or not text:
        return
    try:
        partition = keys.session_partition(user_id, session_id)
        frame = {"type": "delta", "messageId": message_id, "offset": offset, "text": text}
        send_to_chat(partition, chat_id, frame, fresh=offset == 0)
    except Exception:  # never the generation's problem
        _logger().warning("delta not pushed", exc_info=True)


def push_message(partition: str, chat_id: str, message: dict[str, Any]) -> int:
    """Send ``{"type": "message", "message": Message}`` to the chat's subscribers (by the session
    partition a stream record names); returns how many connections received it."""
    if endpoint() is None:
        return 0
    try:
        return send_to_chat(partition, chat_id, {"type": "message", "message": message}, fresh=True)
    except Exception:
        _logger().warning("message not pushed", exc_info=True)
        return 0


def send_to_chat(partition: str, chat_id: str, frame: dict[str, Any], fresh: bool) -> int:
    """Post ``frame`` to every connection subscribed to the chat, in the order of the calls (one
    post at a time); a gone connection's subscription is deleted. Returns the posts delivered."""
    url = endpoint()
    if url is None:
        return 0
    from botocore.exceptions import BotoCoreError, ClientError

    client = _client(url)
    subscribers = _subscribers(partition, chat_id, fresh)
    data = json.dumps(frame, ensure_ascii=False).encode()
    delivered = 0
    for subscription in list(subscribers):
        try:
            client.post_to_connection(ConnectionId=subscription["connectionId"], Data=data)
            delivered += 1
        except client.exceptions.GoneException:
            subscribers.remove(subscription)
            _connections().forget(subscription)
        except (ClientError, BotoCoreError):
            _logger().warning("push failed", extra={"connectionId": subscription["connectionId"]}, exc_info=True)
    return delivered


def _subscribers(partition: str, chat_id: str, fresh: bool) -> list[dict[str, Any]]:
    now = time.monotonic()
    chat = (partition, chat_id)
    cached = _subscribers_cache.get(chat)
    if cached is not None:
        read_at = cached[0]
        if _batch_began is not None and read_at >= _batch_began:  # read by this batch already
            return cached[1]
        if not fresh and now - read_at < SUBSCRIBERS_TTL_SECONDS:
            return cached[1]
    found: list[dict[str, Any]] = _connections().subscribers(partition, chat_id)
    if len(_subscribers_cache) > 256:  # a warm container serves many chats: keep the cache small
        _subscribers_cache.clear()
    _subscribers_cache[chat] = (now, found)
    return found
