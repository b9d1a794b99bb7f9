"""Replies that outlive the request, over HTTP against the local stack (issue 9), with a slow
local model (``LOCAL_MODEL_DELAY_MS``): the generating function runs in the stack's own workers,
invoked asynchronously through its Lambda Invoke API, exactly the deployed code path.

One stack for the module, with a short generation timeout so that a killed generation unlocks
its chat within seconds: ``GENERATION_TIMEOUT_SECONDS`` 20 + ``REPLY_LEASE_MARGIN_SECONDS`` 1 =
a 21 s lease. Replies to cancel or kill are made long (``[words 2000]``: two minutes of words),
so that a busy machine cannot finish them first. A WebSocket client joining a reply midway is
checked here too, on the same stack (a stack of its own cost about 6 CPU-s)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection

from tests.integration.conftest import CLEAN_ENV, client, error_code, new_user, ok
from tests.integration.test_websocket import chat_of, receive, socket_of, subscribe
from tests.servers import ROOT, child

pytestmark = pytest.mark.xdist_group("async_replies")

LEASE_SECONDS = 21
LONG = "a long one [words 2000]"
ASYNC = {"Prefer": "respond-async"}
WORDS = " ".join(f"w{i}" for i in range(30))  # the local model's reply echoes them: ~40 words
GENERATOR_COMM = "GenerateReplyFunction"[:15]


@pytest.fixture(scope="module")
def slow_stack() -> Iterator[tuple[str, int]]:
    env = {
        **CLEAN_ENV,
        "LOCAL_MODEL_DELAY_MS": "60",
        "GENERATION_TIMEOUT_SECONDS": "20",
        "REPLY_LEASE_MARGIN_SECONDS": "1",
        "LOCAL_DYNAMODB": "moto",
    }
    with child(["-m", "local_stack"], "ready ", env=env, timeout=120) as (proc, url):
        yield url, proc.pid


def new_chat(http: httpx.Client) -> str:
    sid = ok(http.post("/sessions", json={"name": "s"}), 201)["sessionId"]
    cid = ok(http.post(f"/sessions/{sid}/chats", json={"name": "c"}), 201)["chatId"]
    return f"/sessions/{sid}/chats/{cid}"


def start(http: httpx.Client, chat: str, content: str = WORDS) -> dict[str, Any]:
    sent = ok(http.post(f"{chat}/messages", json={"content": content}, headers=ASYNC), 202)
    assert sent["assistantMessage"]["status"] == "generating"
    return dict(sent)


def poll(http: httpx.Client, chat: str, message_id: str, after: int) -> dict[str, Any]:
    got = http.get(f"{chat}/messages/{message_id}", params={"wait": 10, "after": after})
    return dict(ok(got, 200))


def follow(http: httpx.Client, chat: str, message_id: str, until: float = 120) -> list[dict[str, Any]]:
    """Long-poll the reply until it is no longer generating: every answer seen."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + until
    while time.monotonic() < deadline:
        message = poll(http, chat, message_id, len(seen[-1]["content"]) if seen else 0)
        seen.append(message)
        if message["status"] != "generating":
            return seen
    raise AssertionError(f"still generating after {until} s: {seen[-1:]}")


def test_the_reply_grows_and_completes_after_the_client_that_asked_went_away(slow_stack: tuple[str, int]) -> None:
    url, _ = slow_stack
    user = new_user()
    with client(url, user) as first:
        chat = new_chat(first)
        sent = start(first, chat)
    # The client that asked is gone; another one (a page reloaded) follows the reply.
    with client(url, user) as second:
        seen = follow(second, chat, sent["assistantMessage"]["messageId"])
        growing = [m["content"] for m in seen if m["status"] == "generating"]
        final = seen[-1]
        assert final["status"] == "complete" and final["usage"]["totalTokens"] > 0
        assert WORDS in final["content"]
        assert growing and all(final["content"].startswith(part) for part in growing)  # it grew, in order
        assert len({len(part) for part in growing}) == len(growing)  # each answer longer than the last
        listed = ok(second.get(f"{chat}/messages"), 200)["items"]
        assert [m["status"] for m in listed] == ["complete", "complete"]


def test_cancel_keeps_the_partial_content(slow_stack: tuple[str, int]) -> None:
    url, _ = slow_stack
    with client(url, new_user()) as http:
        chat = new_chat(http)
        reply_id = start(http, chat, LONG)["assistantMessage"]["messageId"]
        partial = poll(http, chat, reply_id, 0)
        assert partial["status"] == "generating" and partial["content"]
        cancelled = ok(http.post(f"{chat}/messages/{reply_id}/cancel"), 200)
        assert cancelled["status"] == "cancelled"
        assert cancelled["content"].startswith(partial["content"]) and "word2000" not in cancelled["content"]
        assert error_code(http.post(f"{chat}/messages/{reply_id}/cancel"), 409) == "not_generating"
        assert ok(http.post(f"{chat}/messages", json={"content": "next"}), 201)  # the chat is free again
        assert ok(http.get(f"{chat}/messages/{reply_id}"), 200)["content"] == cancelled["content"]


def test_a_model_failing_midway_leaves_failed_then_regenerate_answers(slow_stack: tuple[str, int]) -> None:
    url, _ = slow_stack
    with client(url, new_user()) as http:
        chat = new_chat(http)
        sent = start(http, chat, "please [fail after 5 words] now")
        final = follow(http, chat, sent["assistantMessage"]["messageId"])[-1]
        assert final["status"] == "failed"
        assert final["content"] == "[local model] You said: 'please"  # the five words that came
        question = ok(http.get(f"{chat}/messages/{sent['userMessage']['messageId']}"), 200)
        assert question["status"] == "unanswered"
        # The question still has the magic words: regenerate asynchronously fails again, so the
        # regenerate here is synchronous: the model's whole reply, not streamed, does not fail.
        answered = ok(http.post(f"{chat}/regenerate"), 201)
        assert answered["userMessage"]["status"] == "complete" and answered["assistantMessage"]["seq"] == 3


def test_one_reply_in_flight_and_other_users_see_nothing(slow_stack: tuple[str, int]) -> None:
    url, _ = slow_stack
    with client(url, new_user()) as http, client(url, new_user("other")) as other:
        chat = new_chat(http)
        reply_id = start(http, chat, LONG)["assistantMessage"]["messageId"]
        assert error_code(http.post(f"{chat}/messages", json={"content": "more"}), 409) == "reply_in_progress"
        assert error_code(http.post(f"{chat}/regenerate", headers=ASYNC), 409) == "reply_in_progress"
        assert error_code(other.get(f"{chat}/messages/{reply_id}"), 404) == "not_found"
        assert error_code(other.post(f"{chat}/messages/{reply_id}/cancel"), 404) == "not_found"
        assert ok(http.post(f"{chat}/messages/{reply_id}/cancel"), 200)["status"] == "cancelled"
        assert ok(http.post(f"{chat}/messages", json={"content": "more"}), 201)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        for kid in children.get(pid, []):
            found.append(kid)
            pending.append(kid)
    return found


def generator_workers(stack_pid: int) -> list[int]:
    """The stack's workers of the generating function (a worker names itself after it)."""
    out = []
    for pid in _descendants(stack_pid):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == GENERATOR_COMM:
                out.append(pid)
        except OSError:
            continue
    return out


def test_a_killed_generation_unlocks_the_chat_in_the_stated_time(slow_stack: tuple[str, int]) -> None:
    url, stack_pid = slow_stack
    with client(url, new_user()) as http:
        chat = new_chat(http)
        sent = start(http, chat, LONG)
        started = time.time()
        reply_id = sent["assistantMessage"]["messageId"]
        assert poll(http, chat, reply_id, 0)["content"]  # it is running
        workers = generator_workers(stack_pid)
        assert workers, "no worker of the generating function found"
        for pid in workers:  # processes of the stack this test started
            os.kill(pid, signal.SIGKILL)
        assert poll(http, chat, reply_id, 0)["status"] == "generating"  # dead, but its lease runs
        assert error_code(http.post(f"{chat}/messages", json={"content": "more"}), 409) == "reply_in_progress"
        while True:  # the lease runs out LEASE_SECONDS after the send: then the chat accepts messages
            answer = http.post(f"{chat}/messages", json={"content": "more"})
            if answer.status_code == 201:
                break
            assert error_code(answer, 409) == "reply_in_progress"
            assert time.time() - started <= LEASE_SECONDS + 2, "still locked after the lease"
            time.sleep(0.25)  # the lease is a clock: a few requests a second until it runs out
        assert time.time() - started >= LEASE_SECONDS - 2  # not before the lease ran out
        dead = ok(http.get(f"{chat}/messages/{reply_id}"), 200)
        assert dead["status"] == "failed" and dead["content"]  # what it stored before it died stays


def _chat_client(url: str, user: str, script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "local_stack.chat_client", "--user", user, "--url", url, *args],
        input=script,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_chat_follows_the_reply_and_a_client_back_later_sees_it_finished(slow_stack: tuple[str, int]) -> None:
    url, _ = slow_stack
    user = new_user("erin")
    out = _chat_client(url, user, WORDS + "\n/quit\n")
    assert f"assistant: [local model] You said: '{WORDS}'. I was shown 1 message(s).\n" in out
    # A reply started by a client that went away at once: a terminal joining later shows it finished.
    with client(url, user) as http:
        sid = ok(http.get("/sessions"), 200)["items"][0]["sessionId"]
        ok(http.post(f"/sessions/{sid}/messages", json={"content": "again " + WORDS}, headers=ASYNC), 202)
    back = _chat_client(url, user, "/history\n/quit\n", "--session", sid)
    assert f"   4 assistant: [local model] You said: 'again {WORDS}'. I was shown 3 message(s).\n" in back


def test_a_websocket_client_subscribing_midway_receives_the_rest_and_the_final_text(
    slow_stack: tuple[str, int],
) -> None:
    """The first client sees the reply start; a second one subscribes then: every delta it gets
    is the final content at its offset, and its message frame of the completed reply carries the
    same content as the first client's deltas put together and as GET. (On this module's stack:
    a hundred words at its model's pace take six seconds.)"""
    url, _ = slow_stack
    user = new_user("midway")
    sid, cid = chat_of(url, user)
    with socket_of(url, user) as first, socket_of(url, user) as second:
        assert subscribe(first, sid, cid)["type"] == "subscribed"
        with client(url, user) as http:
            sent = start(http, f"/sessions/{sid}/chats/{cid}", "a long one [words 100]")
            reply_id = sent["assistantMessage"]["messageId"]

            def until_complete(ws: ClientConnection, joined: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
                deltas: list[dict[str, Any]] = []
                while True:
                    frame = receive(ws)
                    if frame["type"] == "delta" and frame["messageId"] == reply_id:
                        deltas.append(frame)
                        if not joined:  # the reply has started: the second client joins now
                            assert subscribe(second, sid, cid)["type"] == "subscribed"
                            joined = True
                    elif frame["type"] == "message" and frame["message"]["messageId"] == reply_id:
                        message: dict[str, Any] = frame["message"]
                        if message["status"] != "generating":  # stored, or changed status: done
                            return deltas, message

            first_deltas, first_final = until_complete(first, joined=False)
            second_deltas, second_final = until_complete(second, joined=True)
            stored = ok(http.get(f"/sessions/{sid}/chats/{cid}/messages/{reply_id}"))
    content = stored["content"]
    assert stored["status"] == "complete" and len(content.split()) > 100
    assert "".join(d["text"] for d in first_deltas) == first_final["content"] == second_final["content"] == content
    for delta in second_deltas:
        assert content[delta["offset"] : delta["offset"] + len(delta["text"])] == delta["text"]
