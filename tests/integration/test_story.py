"""The user story over HTTP, and the two invariants raced by concurrent HTTP clients.

The stack runs handlers in Lambda-like worker processes against one DynamoDB, so concurrent
requests here race the way concurrent invocations do when deployed.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.integration.conftest import all_pages, client, error_code, new_user, ok, race

# Only the HTTP API and one user: `make e2e` runs these against any base URL too.
pytestmark = pytest.mark.e2e

THREADS = 20


def test_story_two_chats_one_active(stack: str) -> None:
    with client(stack, new_user("alice")) as http:
        session = ok(http.post("/sessions", json={"name": "Story"}), 201)
        sid = session["sessionId"]
        assert session["status"] == "active" and session["activeChatId"] is None

        debug = ok(http.post(f"/sessions/{sid}/chats", json={"name": "Debug Session"}), 201)
        assert debug["active"] is True
        assert ok(http.get(f"/sessions/{sid}"))["activeChatId"] == debug["chatId"]

        first = ok(http.post(f"/sessions/{sid}/messages", json={"content": "Why does my Lambda time out?"}), 201)
        assert first["userMessage"]["chatId"] == debug["chatId"]
        assert (first["userMessage"]["seq"], first["assistantMessage"]["seq"]) == (1, 2)
        assert first["userMessage"]["status"] == "complete"
        assert first["assistantMessage"]["content"].startswith("[local model]")
        assert "Why does my Lambda time out?" in first["assistantMessage"]["content"]

        feature = ok(http.post(f"/sessions/{sid}/chats", json={"name": "Feature Development"}), 201)
        assert feature["active"] is True
        assert ok(http.get(f"/sessions/{sid}/chats/{debug['chatId']}"))["active"] is False
        assert ok(http.get(f"/sessions/{sid}"))["activeChatId"] == feature["chatId"]
        not_active = http.post(f"/sessions/{sid}/chats/{debug['chatId']}/messages", json={"content": "hi"})
        assert error_code(not_active, 409) == "chat_not_active"

        switched = ok(http.post(f"/sessions/{sid}/chats/{debug['chatId']}/activate"))
        assert switched["chatId"] == debug["chatId"] and switched["active"] is True
        assert ok(http.get(f"/sessions/{sid}/chats/{feature['chatId']}"))["active"] is False
        assert ok(http.get(f"/sessions/{sid}"))["activeChatId"] == debug["chatId"]

        second = ok(http.post(f"/sessions/{sid}/messages", json={"content": "It calls a slow API."}), 201)
        assert second["userMessage"]["chatId"] == debug["chatId"]
        assert (second["userMessage"]["seq"], second["assistantMessage"]["seq"]) == (3, 4)
        assert "I was shown 3 message(s)" in second["assistantMessage"]["content"]  # the history went along

        messages = all_pages(http, f"/sessions/{sid}/chats/{debug['chatId']}/messages", limit=3)
        assert [m["seq"] for m in messages] == [1, 2, 3, 4]
        assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
        assert {m["chatId"] for m in messages} == {debug["chatId"]}
        assert messages[2]["content"] == "It calls a slow API."
        assert all_pages(http, f"/sessions/{sid}/chats/{feature['chatId']}/messages") == []

        chats = all_pages(http, f"/sessions/{sid}/chats")
        assert [(c["name"], c["active"]) for c in chats] == [("Debug Session", True), ("Feature Development", False)]
        final = ok(http.get(f"/sessions/{sid}"))
        assert (final["chatCount"], final["messageCount"]) == (2, 4)


def test_concurrent_switches_leave_exactly_one_active_chat(stack: str) -> None:
    user = new_user("racer")
    with client(stack, user) as http:
        sid = ok(http.post("/sessions", json={"name": "switches"}), 201)["sessionId"]
        ids = [
            ok(http.post(f"/sessions/{sid}/chats", json={"name": f"chat {i}"}), 201)["chatId"] for i in range(THREADS)
        ]

    def activate(i: int) -> httpx.Response:
        with client(stack, user) as own:
            return own.post(f"/sessions/{sid}/chats/{ids[i]}/activate")

    responses = race(THREADS, activate)
    for response in responses:
        assert response.status_code == 200 or error_code(response, 409) == "conflict", response.text
    assert any(r.status_code == 200 for r in responses)
    with client(stack, user) as http:
        chats = all_pages(http, f"/sessions/{sid}/chats")
        active = [c["chatId"] for c in chats if c["active"]]
        assert len(chats) == THREADS
        assert len(active) == 1
        assert ok(http.get(f"/sessions/{sid}"))["activeChatId"] == active[0]


def test_concurrent_sends_store_gap_free_seqs(stack: str) -> None:
    user = new_user("sender")
    with client(stack, user) as http:
        sid = ok(http.post("/sessions", json={"name": "sends"}), 201)["sessionId"]
        cid = ok(http.post(f"/sessions/{sid}/chats", json={"name": "busy"}), 201)["chatId"]

    def send(i: int) -> httpx.Response:
        with client(stack, user) as own:
            return own.post(f"/sessions/{sid}/chats/{cid}/messages", json={"content": f"message {i}"})

    responses = race(THREADS, send)
    assert [r.status_code for r in responses] == [201] * THREADS, [r.text for r in responses if r.status_code != 201]
    with client(stack, user) as http:
        messages: list[dict[str, Any]] = all_pages(http, f"/sessions/{sid}/chats/{cid}/messages", limit=7)
        chat = ok(http.get(f"/sessions/{sid}/chats/{cid}"))
    assert [m["seq"] for m in messages] == list(range(1, 2 * THREADS + 1))
    assert chat["messageCount"] == 2 * THREADS
    users = [m for m in messages if m["role"] == "user"]
    replies = [m for m in messages if m["role"] == "assistant"]
    assert sorted(m["content"] for m in users) == sorted(f"message {i}" for i in range(THREADS))
    assert all(m["status"] == "complete" for m in users)
    # Each reply answers one of the messages, and every message got its own reply.
    answered = sorted(m["content"].split("You said: ")[1].split(".")[0] for m in replies)
    assert answered == sorted(repr(f"message {i}") for i in range(THREADS))
    # Each response is its own exchange, as stored: thread i's message at the seq the response
    # names, and a reply stored at its seq, after that message, answering that message.
    stored = {m["seq"]: m for m in messages}
    named: list[int] = []
    for i, response in enumerate(responses):
        exchange = response.json()
        user, reply = exchange["userMessage"], exchange["assistantMessage"]
        assert user["content"] == f"message {i}"
        assert stored[user["seq"]] == user
        assert stored[reply["seq"]] == reply
        assert reply["seq"] > user["seq"]
        assert f"You said: {user['content']!r}." in reply["content"]
        named += [user["seq"], reply["seq"]]
    # ...and the exchanges account for every stored message, each once.
    assert sorted(named) == list(range(1, 2 * THREADS + 1))


def test_idempotency_key_passes_through_the_gateway(stack: str) -> None:
    with client(stack, new_user("retry")) as http:
        sid = ok(http.post("/sessions", json={"name": "retries"}), 201)["sessionId"]
        cid = ok(http.post(f"/sessions/{sid}/chats", json={"name": "c"}), 201)["chatId"]
        headers = {"Idempotency-Key": f"send-{uuid.uuid4()}"}
        path = f"/sessions/{sid}/chats/{cid}/messages"
        first = ok(http.post(path, json={"content": "once"}, headers=headers), 201)
        again = ok(http.post(path, json={"content": "once"}, headers=headers), 201)
        assert again == first
        assert ok(http.get(f"/sessions/{sid}/chats/{cid}"))["messageCount"] == 2
        reused = http.post(path, json={"content": "different"}, headers=headers)
        assert error_code(reused, 422) == "idempotency_key_reused"
