"""200 sends at once against the local stack: every one stored once, with its reply (issue 14).

Not timed: what is checked is what the table holds afterwards. 10 users each send 20 messages
into their active chat on 20 threads released together, so sends race for the next ``seq`` of one
chat while the gateway queues them for the send function's workers.
"""

from __future__ import annotations

import httpx

from tests.integration.conftest import all_pages, client, new_user, ok, race

USERS = 10
PER_USER = 20


def test_200_concurrent_sends_leave_200_messages_and_200_replies(stack: str) -> None:
    chats: list[tuple[str, str, str]] = []
    for _ in range(USERS):
        user = new_user("load")
        with client(stack, user) as http:
            sid = ok(http.post("/sessions", json={"name": "load"}), 201)["sessionId"]
            cid = ok(http.post(f"/sessions/{sid}/chats", json={"name": "load"}), 201)["chatId"]
        chats.append((user, sid, cid))
    clients = [client(stack, user) for user, _, _ in chats]

    def send(i: int) -> httpx.Response:
        n = i % USERS
        return clients[n].post(f"/sessions/{chats[n][1]}/messages", json={"content": f"message {i}"})

    try:
        answers = race(USERS * PER_USER, send)
    finally:
        for http in clients:
            http.close()
    assert sorted(r.status_code for r in answers) == [201] * (USERS * PER_USER), {
        r.status_code: r.text for r in answers if r.status_code != 201
    }
    sent = {f"message {i}" for i in range(USERS * PER_USER)}
    stored_users: list[str] = []
    replies = 0
    for user, sid, cid in chats:
        with client(stack, user) as http:
            messages = all_pages(http, f"/sessions/{sid}/chats/{cid}/messages")
            chat = ok(http.get(f"/sessions/{sid}/chats/{cid}"))
        assert [m["seq"] for m in messages] == list(range(1, 2 * PER_USER + 1))
        mine = [m for m in messages if m["role"] == "user"]
        answered = [m for m in messages if m["role"] == "assistant" and m["status"] == "complete"]
        assert len(mine) == PER_USER and len(answered) == PER_USER
        assert all(m["status"] == "complete" for m in mine)
        assert chat["messageCount"] == 2 * PER_USER
        stored_users.extend(m["content"] for m in mine)
        replies += len(answered)
    assert sorted(stored_users) == sorted(sent)  # each send stored exactly once
    assert replies == USERS * PER_USER
    # every answer names the messages it stored
    assert {r.json()["userMessage"]["content"] for r in answers} == sent
