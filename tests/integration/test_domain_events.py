"""Domain events end to end: the story (examples/story.py) against the local stack publishes
exactly the events it should, in order, through the table's stream, the publisher function and
the local EventBridge bus (``GET /local/events``)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx

from local_stack.template import ROOT
from tests.integration.conftest import _token_for, client, new_user, ok
from tests.support import stream_drained


def events_of(stack: str, user: str, after: int) -> list[dict[str, Any]]:
    stream_drained(stack)
    with client(stack) as http:
        page = ok(http.get("/local/events", params={"after": after}))
    assert all(e["n"] > after for e in page["events"])
    assert [e["n"] for e in page["events"]] == sorted(e["n"] for e in page["events"])
    return [e for e in page["events"] if e["detail"]["userId"] == user]


def test_the_story_publishes_exactly_its_events_in_order(stack: str) -> None:
    with client(stack) as http:
        before = ok(http.get("/local/events"))["last"]
    user = new_user("events")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "story.py"), "--url", stack, "--token", _token_for(user)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    sid = lines[0].split()[1]
    debug = lines[1].split()[1]
    feature = lines[4].split()[1]

    seen = events_of(stack, user, before)
    got = [(e["detail-type"], e["detail"].get("chatId"), e["detail"].get("seq")) for e in seen]
    assert got == [
        ("session.created", None, None),
        ("chat.created", debug, None),
        ("message.created", debug, 1),  # the question
        ("reply.completed", debug, 2),  # its answer
        ("chat.created", feature, None),  # takes over...
        ("chat.deactivated", debug, None),  # ...from the first chat
        ("chat.activated", debug, None),  # switched back
        ("chat.deactivated", feature, None),
        ("message.created", debug, 3),
        ("reply.completed", debug, 4),
        ("session.deleted", None, None),
        ("chat.deleted", debug, None),  # with their session
        ("chat.deleted", feature, None),
    ]
    assert {e["detail"]["sessionId"] for e in seen} == {sid}
    assert {e["source"] for e in seen} == {"chat-sessions"}
    assert len({e["detail"]["changeId"] for e in seen}) == len(seen)  # one event per change
    assert seen[0]["detail"]["status"] == "active" and seen[-3]["detail"]["reason"] == "deleted"
    assert all("model:" not in str(e) and "Lambda time out" not in str(e) for e in seen)  # no content


def test_local_events_pages_and_refuses_bad_numbers(stack: str) -> None:
    user = new_user("events-page")
    with client(stack) as anonymous, client(stack, user) as http:
        before = ok(anonymous.get("/local/events"))["last"]
        sid = ok(http.post("/sessions", json={"name": "paged"}), 201)["sessionId"]
        ok(http.post(f"/sessions/{sid}/pause"))
        mine = events_of(stack, user, before)
        assert [e["detail-type"] for e in mine] == ["session.created", "session.paused"]
        first = mine[0]["n"]
        page = ok(anonymous.get("/local/events", params={"after": first - 1, "limit": 1}))
        assert [e["n"] for e in page["events"]] == [first] and page["last"] >= mine[-1]["n"]
        for bad in ({"after": "-1"}, {"after": "x"}, {"limit": "0"}, {"limit": "1001"}):
            response = anonymous.get("/local/events", params=bad)
            assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error"
        assert httpx.post(f"{stack}/local/events").status_code == 405


def test_erasing_a_user_ends_with_user_erased(stack: str) -> None:
    user = new_user("events-erase")
    with client(stack) as anonymous, client(stack, user) as http:
        before = ok(anonymous.get("/local/events"))["last"]
        sid = ok(http.post("/sessions", json={"name": "to erase"}), 201)["sessionId"]
        cid = ok(http.post(f"/sessions/{sid}/chats", json={"name": "c"}), 201)["chatId"]
        assert ok(http.delete("/me"), 202) == {"status": "erasing"}
        seen = events_of(stack, user, before)  # drained: every step of the erasure ran
        assert ok(http.get("/sessions"))["items"] == []
    got = [(e["detail-type"], e["detail"].get("chatId")) for e in seen]
    assert got == [
        ("session.created", None),
        ("chat.created", cid),
        ("session.deleted", None),
        ("chat.deleted", cid),
        ("user.erased", None),
    ]
    assert seen[-1]["detail"]["userId"] == user and set(seen[-1]["detail"]) == {"userId", "time", "changeId"}


def test_a_reply_generated_on_its_own_is_created_then_completed(stack: str) -> None:
    user = new_user("events-async")
    with client(stack) as anonymous, client(stack, user) as http:
        before = ok(anonymous.get("/local/events"))["last"]
        sid = ok(http.post("/sessions", json={"name": "async"}), 201)["sessionId"]
        cid = ok(http.post(f"/sessions/{sid}/chats", json={"name": "c"}), 201)["chatId"]
        sent = ok(
            http.post(
                f"/sessions/{sid}/chats/{cid}/messages", json={"content": "hi"}, headers={"Prefer": "respond-async"}
            ),
            202,
        )
        reply = sent["assistantMessage"]
        assert reply["status"] == "generating"
        done = ok(http.get(f"/sessions/{sid}/chats/{cid}/messages/{reply['messageId']}", params={"wait": 20}))
        assert done["status"] == "complete"
        seen = events_of(stack, user, before)
    got = [(e["detail-type"], e["detail"].get("seq"), e["detail"].get("status")) for e in seen]
    assert got == [
        ("session.created", None, "active"),
        ("chat.created", None, None),
        ("message.created", 1, "unanswered"),
        ("message.created", 2, "generating"),
        ("reply.completed", 2, "complete"),
    ]
