"""Push over WebSocket against the local stack: ``ws://127.0.0.1:$PORT/ws?token=<JWT>`` on the
gateway's port, the ``$connect`` check, subscriptions, and the ``message`` frames the stream
consumer (``push_messages``) posts through the same ``@connections`` API as deployed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from local_stack.token import make_token
from tests.integration.conftest import client, new_user, ok
from tests.support import stream_drained

FRAME_WAIT_S = 120.0
"""How long a test waits for a frame it expects: a bound for a hung stack, not a pace."""


def ws_url(stack: str, token: str | None) -> str:
    base = stack.replace("http://", "ws://", 1).rstrip("/") + "/ws"
    return base if token is None else f"{base}?token={token}"


@contextmanager
def socket_of(stack: str, user: str) -> Iterator[ClientConnection]:
    with connect(ws_url(stack, make_token(user)), open_timeout=FRAME_WAIT_S, close_timeout=FRAME_WAIT_S) as ws:
        yield ws


def receive(ws: ClientConnection, timeout: float = FRAME_WAIT_S) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(ws.recv(timeout=timeout))
    return frame


def subscribe(ws: ClientConnection, session_id: str, chat_id: str) -> dict[str, Any]:
    ws.send(json.dumps({"action": "subscribe", "sessionId": session_id, "chatId": chat_id}))
    return receive(ws)


def stream_state(stack: str) -> str:
    with client(stack) as http:
        return str(http.get("/local/stream").text)


def chat_of(stack: str, user: str) -> tuple[str, str]:
    with client(stack, user) as http:
        sid = ok(http.post("/sessions", json={"name": "push"}), 201)["sessionId"]
        cid = ok(http.post(f"/sessions/{sid}/chats", json={"name": "c"}), 201)["chatId"]
    return str(sid), str(cid)


def send_async(http: httpx.Client, sid: str, cid: str, content: str) -> str:
    """Send ``content`` with ``Prefer: respond-async``: the id of the reply being generated."""
    accepted = http.post(
        f"/sessions/{sid}/chats/{cid}/messages", json={"content": content}, headers={"Prefer": "respond-async"}
    )
    return str(ok(accepted, 202)["assistantMessage"]["messageId"])


@pytest.mark.parametrize(
    "token",
    [None, "", "not-a-jwt", "expired", "wrong-key"],
    ids=["missing", "empty", "garbage", "expired", "wrong-key"],
)
def test_a_connection_without_a_valid_token_is_refused(stack: str, token: str | None) -> None:
    if token == "expired":
        token = make_token("alice", ttl_seconds=-60)
    elif token == "wrong-key":
        token = make_token("alice", key="not-the-local-secret-at-all-32-bytes")
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(stack, token), open_timeout=FRAME_WAIT_S)
    assert refused.value.response.status_code == 401


def test_subscribing_to_another_users_chat_is_not_found(stack: str) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    sid, cid = chat_of(stack, bob)
    with socket_of(stack, alice) as ws:
        frame = subscribe(ws, sid, cid)
        assert (frame["type"], frame["code"]) == ("error", "not_found")
        ws.send(json.dumps({"action": "subscribe", "sessionId": "../../x", "chatId": cid}))
        assert receive(ws)["code"] == "not_found"
        ws.send("hello")  # not a request: the $default route answers it
        assert receive(ws)["code"] == "validation_error"
    with socket_of(stack, bob) as ws:
        assert subscribe(ws, sid, cid) == {"type": "subscribed", "sessionId": sid, "chatId": cid}


def test_a_send_pushes_message_frames_to_the_chats_subscribers(stack: str) -> None:
    """A synchronous send stores the question and the reply: each reaches the subscribers of that
    chat as a ``message`` frame with the stored Message, and nobody else's socket."""
    user = new_user("pushed")
    sid, cid = chat_of(stack, user)
    with client(stack, user) as http:
        other = ok(http.post(f"/sessions/{sid}/chats", json={"name": "other"}), 201)["chatId"]
        ok(http.post(f"/sessions/{sid}/chats/{cid}/activate"))  # a new chat is the active one
    with socket_of(stack, user) as ws, socket_of(stack, user) as elsewhere:
        assert subscribe(ws, sid, cid)["type"] == "subscribed"
        assert subscribe(elsewhere, sid, other)["type"] == "subscribed"
        with client(stack, user) as http:
            sent = ok(http.post(f"/sessions/{sid}/chats/{cid}/messages", json={"content": "push me"}), 201)
        reply = sent["assistantMessage"]
        seen: dict[str, dict[str, Any]] = {}
        while reply["messageId"] not in seen:
            try:
                frame = receive(ws)
            except TimeoutError as exc:  # say where the stream stands
                raise AssertionError(f"no frame; the stream: {stream_state(stack)}") from exc
            assert frame["type"] == "message", frame
            seen[frame["message"]["messageId"]] = frame["message"]
        assert seen[reply["messageId"]] == reply  # the stored Message, as the API answers it
        question = seen[sent["userMessage"]["messageId"]]
        assert (question["role"], question["content"], question["chatId"]) == ("user", "push me", cid)
        stream_drained(stack)  # every push of the send's records is done
        with pytest.raises(TimeoutError):
            elsewhere.recv(timeout=1)  # subscribed to another chat of the session: nothing


def test_the_management_api_answers_gone_for_an_unknown_connection(stack: str) -> None:
    """push.py's code path locally: boto3's apigatewaymanagementapi against the gateway."""
    api: Any = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=stack,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"total_max_attempts": 1}),
    )
    with pytest.raises(api.exceptions.GoneException):
        api.post_to_connection(ConnectionId="bm9ib2R5LWhlcmU=", Data=b"{}")


def test_the_deltas_of_an_async_reply_arrive_in_order_and_make_its_stored_content(stack: str) -> None:
    """``Prefer: respond-async``: the reply is generated by its own invocation, which pushes each
    piece as a ``delta``; the offsets follow each other, and the pieces put together are the
    content the ``message`` frame of the completed reply carries and GET answers."""
    user = new_user("deltas")
    sid, cid = chat_of(stack, user)
    with socket_of(stack, user) as ws:
        assert subscribe(ws, sid, cid)["type"] == "subscribed"
        with client(stack, user) as http:
            reply_id = send_async(http, sid, cid, "tell me a long story")
            deltas: list[dict[str, Any]] = []
            final: dict[str, Any] | None = None
            while final is None:
                frame = receive(ws)
                if frame["type"] == "delta" and frame["messageId"] == reply_id:
                    deltas.append(frame)
                elif frame["type"] == "message" and frame["message"]["messageId"] == reply_id:
                    final = None if frame["message"]["status"] == "generating" else frame["message"]
            stored = ok(http.get(f"/sessions/{sid}/chats/{cid}/messages/{reply_id}"))
    assert final["status"] == stored["status"] == "complete"
    assert len(deltas) > 1, "the local model streams word by word"
    offset = 0
    for delta in deltas:
        assert delta["offset"] == offset, deltas
        offset += len(delta["text"])
    assert "".join(d["text"] for d in deltas) == final["content"] == stored["content"]
