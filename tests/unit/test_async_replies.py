"""Replies that outlive the request, through the handlers (issue 9): ``Prefer: respond-async`` on
send, send to the active chat and regenerate; the generating function run with the event the
send handed to the Lambda service (a stand-in that records it, ``tests/lambda_service.py``);
reads, cancel, the chat's lease, a model failing midway, a duplicate delivery, a dead
generation. The real openai client streams from the scripted upstream."""

from __future__ import annotations

import time
from typing import Any

import pytest

from chat_sessions import keys
from tests.lambda_service import LambdaService
from tests.support import LambdaContext, invoke, reset_caches
from tests.unit.conftest import GENERATOR
from tests.upstream import Reply, Upstream

ASYNC = {"Prefer": "respond-async"}


def setup_chat() -> tuple[str, str]:
    sid = str(invoke("create_session", body={"name": "s"}).body["sessionId"])
    chat = str(invoke("create_chat", session=sid, body={"name": "c", "model": "test-model"}).body["chatId"])
    return sid, chat


def generate(event: dict[str, Any]) -> str:
    import generate_reply

    outcome: str = generate_reply.lambda_handler(event, LambdaContext(remaining_millis=300_000))["outcome"]
    return outcome


def message(sid: str, chat: str, message_id: str, user: str = "alice", **query: str) -> Any:
    return invoke("get_message", user=user, session=sid, chat=chat, message=message_id, query=query)


def test_async_send_answers_202_and_the_generation_completes_like_a_sync_reply(
    table: str, model: Upstream, lam: LambdaService
) -> None:
    model.default = Reply(content="a streamed reply in words", prompt_tokens=30, completion_tokens=5)
    sid, chat = setup_chat()
    sent = invoke("send_message", session=sid, chat=chat, body={"content": "hello"}, headers=ASYNC)
    assert sent.status == 202
    user, reply = sent.body["userMessage"], sent.body["assistantMessage"]
    assert (user["status"], reply["status"], reply["content"], reply["seq"]) == ("unanswered", "generating", "", 2)
    (event,) = lam.events(GENERATOR)
    assert event["messageId"] == reply["messageId"] and model.calls == 0  # nothing waited for the model
    assert generate(event) == "complete"
    done = message(sid, chat, reply["messageId"])
    assert done.status == 200
    assert (done.body["status"], done.body["content"]) == ("complete", "a streamed reply in words")
    assert done.body["usage"] == {"promptTokens": 30, "completionTokens": 5, "totalTokens": 35}
    assert message(sid, chat, user["messageId"]).body["status"] == "complete"
    session = invoke("get_session", session=sid).body
    assert (session["messageCount"], session["usage"]["totalTokens"]) == (2, 35)  # counted as a sync reply is
    assert model.received[-1]["stream"] is True
    # Lambda may deliver the same event twice: the second finds the reply claimed, and does nothing.
    assert generate(event) == "duplicate"
    assert model.calls == 1
    assert invoke("get_session", session=sid).body["messageCount"] == 2


def test_one_reply_in_flight_per_chat(table: str, model: Upstream, lam: LambdaService) -> None:
    sid, chat = setup_chat()
    reply = invoke("send_to_active_chat", session=sid, body={"content": "q"}, headers=ASYNC).body["assistantMessage"]
    for sending in (
        lambda h: invoke("send_message", session=sid, chat=chat, body={"content": "more"}, headers=h),
        lambda h: invoke("send_to_active_chat", session=sid, body={"content": "more"}, headers=h),
        lambda h: invoke("regenerate", session=sid, chat=chat, headers=h),
    ):
        for headers in ({}, ASYNC):
            refused = sending(headers)
            assert (refused.status, refused.body["error"]["code"]) == (409, "reply_in_progress")
    assert model.calls == 0 and len(lam.events(GENERATOR)) == 1  # nothing stored, nothing started
    assert generate(lam.events(GENERATOR)[0]) == "complete"
    assert message(sid, chat, reply["messageId"]).body["status"] == "complete"
    assert invoke("send_message", session=sid, chat=chat, body={"content": "more"}).status == 201


def test_a_model_failing_midway_leaves_failed_with_what_came_and_regenerate_answers(
    table: str, model: Upstream, lam: LambdaService
) -> None:
    sid, chat = setup_chat()
    sent = invoke("send_message", session=sid, chat=chat, body={"content": "q"}, headers=ASYNC).body
    model.script = [Reply(content="one two three four five", break_after=3)]
    assert generate(lam.events(GENERATOR)[0]) == "failed"
    failed = message(sid, chat, sent["assistantMessage"]["messageId"]).body
    assert (failed["status"], failed["content"]) == ("failed", "one two three")
    assert message(sid, chat, sent["userMessage"]["messageId"]).body["status"] == "unanswered"
    assert invoke("get_session", session=sid).body["messageCount"] == 0  # nothing answered yet
    again = invoke("regenerate", session=sid, chat=chat, headers=ASYNC)
    assert again.status == 202 and again.body["assistantMessage"]["seq"] == 3
    assert generate(lam.events(GENERATOR)[1]) == "complete"
    assert message(sid, chat, sent["userMessage"]["messageId"]).body["status"] == "complete"
    assert invoke("get_session", session=sid).body["messageCount"] == 2


def test_cancel_keeps_what_was_stored_and_stops_the_generation(
    table: str, model: Upstream, lam: LambdaService, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid, chat = setup_chat()
    reply = invoke("send_message", session=sid, chat=chat, body={"content": "q"}, headers=ASYNC).body[
        "assistantMessage"
    ]
    cancelled = invoke("cancel_message", session=sid, chat=chat, message=reply["messageId"])
    assert (cancelled.status, cancelled.body["status"], cancelled.body["content"]) == (200, "cancelled", "")
    again = invoke("cancel_message", session=sid, chat=chat, message=reply["messageId"])
    assert (again.status, again.body["error"]["code"]) == (409, "not_generating")
    assert generate(lam.events(GENERATOR)[0]) == "duplicate" and model.calls == 0  # cancelled before it ran
    # Cancelled while it runs: it stops at its next write, what was stored stays.
    monkeypatch.setenv("REPLY_FLUSH_SECONDS", "0")
    reset_caches()
    running = invoke("send_message", session=sid, chat=chat, body={"content": "q2"}, headers=ASYNC).body
    reply_id = running["assistantMessage"]["messageId"]
    original = model.next_reply

    def cancel_first(request: dict[str, Any], authorization: str) -> Reply:
        # The claim is stored before the model is asked: cancel now, as another request would.
        assert invoke("cancel_message", session=sid, chat=chat, message=reply_id).status == 200
        return original(request, authorization)

    monkeypatch.setattr(model, "next_reply", cancel_first)
    model.default = Reply(content="many words that will not be stored")
    assert generate(lam.events(GENERATOR)[1]) == "stopped"
    monkeypatch.setattr(model, "next_reply", original)
    stopped = message(sid, chat, reply_id).body
    assert (stopped["status"], stopped["content"]) == ("cancelled", "")
    assert invoke("send_message", session=sid, chat=chat, body={"content": "q3"}).status == 201  # unlocked


def test_another_user_sees_not_found(table: str, model: Upstream, lam: LambdaService) -> None:
    sid, chat = setup_chat()
    reply = invoke("send_message", session=sid, chat=chat, body={"content": "q"}, headers=ASYNC).body[
        "assistantMessage"
    ]
    for module in ("get_message", "cancel_message"):
        other = invoke(module, user="mallory", session=sid, chat=chat, message=reply["messageId"], query={})
        assert (other.status, other.body["error"]["code"]) == (404, "not_found")
    nowhere = invoke("get_message", session=sid, chat=chat, message="01JDQ3ZC7R8S9T0V1WZZZZZZZZ", query={})
    assert nowhere.status == 404
    assert message(sid, chat, reply["messageId"]).body["status"] == "generating"


def test_long_poll_bounds(table: str, model: Upstream, lam: LambdaService) -> None:
    sid, chat = setup_chat()
    reply = invoke("send_message", session=sid, chat=chat, body={"content": "q"}, headers=ASYNC).body[
        "assistantMessage"
    ]
    started = time.monotonic()
    polled = message(sid, chat, reply["messageId"], wait="1", after="0")
    assert polled.status == 200 and polled.body["status"] == "generating"
    assert time.monotonic() - started >= 1.0  # it waited: nothing grew
    for query in ({"wait": "0"}, {"wait": "21"}, {"wait": "1", "after": "-1"}):
        assert message(sid, chat, reply["messageId"], **query).status == 400
    assert message(sid, chat, "not-an-id").status == 404


def test_an_invocation_not_handed_over_fails_the_reply_and_frees_the_chat(
    table: str, model: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", "http://127.0.0.1:9")  # nothing listens
    reset_caches()
    sid, chat = setup_chat()
    refused = invoke("send_message", session=sid, chat=chat, body={"content": "q"}, headers=ASYNC)
    assert (refused.status, refused.body["error"]["code"]) == (503, "unavailable")
    listed = invoke("list_messages", session=sid, chat=chat, query={}).body["items"]
    assert [(m["role"], m["status"]) for m in listed] == [("user", "unanswered"), ("assistant", "failed")]
    assert invoke("regenerate", session=sid, chat=chat).status == 201


def test_a_dead_generation_shows_failed_and_unlocks_once_its_lease_runs_out(
    table: str, model: Upstream, lam: LambdaService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENERATION_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("REPLY_LEASE_MARGIN_SECONDS", "0")
    reset_caches()
    sid, chat = setup_chat()
    dead = invoke("send_message", session=sid, chat=chat, body={"content": "q"}, headers=ASYNC).body["assistantMessage"]
    assert invoke("send_message", session=sid, chat=chat, body={"content": "q2"}).status == 409
    until = lease_until(table, sid, chat)
    assert until <= time.time() + 2
    while int(time.time()) <= until:  # time passing is what is tested: the lease runs out (whole seconds)
        time.sleep(0.05)
    assert message(sid, chat, dead["messageId"]).body["status"] == "failed"  # shown so before it is stored so
    taken = invoke("send_message", session=sid, chat=chat, body={"content": "q2"}, headers=ASYNC)
    assert taken.status == 202
    stored = stored_message(table, sid, chat, dead["seq"])
    assert stored["status"] == "failed" and "leaseUntil" not in stored  # stored by the send that took over
    assert generate(lam.events(GENERATOR)[0]) == "duplicate"  # the dead one, delivered late, does nothing


def test_a_sync_send_after_a_dead_generation_stores_it_failed_and_clears_the_lease(
    table: str, model: Upstream, lam: LambdaService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only an async start takes over from a dead reply: the first sync send (or regenerate)
    after its lease ran out stores it ``failed`` and clears the head's lease in its own
    transaction, so nothing is left ``generating`` and no lease outlives its reply."""
    monkeypatch.setenv("GENERATION_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("REPLY_LEASE_MARGIN_SECONDS", "0")
    reset_caches()
    sid, chat = setup_chat()
    dead = invoke("send_message", session=sid, chat=chat, body={"content": "q"}, headers=ASYNC).body["assistantMessage"]
    other = invoke("send_message", session=sid, chat=chat, body={"content": "q"}, headers=ASYNC).body
    until = lease_until(table, sid, chat)
    while int(time.time()) <= until:  # time passing is what is tested: the lease runs out (whole seconds)
        time.sleep(0.05)
    assert stored_message(table, sid, chat, dead["seq"])["status"] == "generating"  # until a request takes over
    sent = invoke("send_message", session=sid, chat=chat, body={"content": "q2"})
    assert sent.status == 201, sent
    stored = stored_message(table, sid, chat, dead["seq"])
    assert stored["status"] == "failed" and "leaseUntil" not in stored
    assert not {"leaseUntil", "generatingSeq"} & set(head_item(table, sid, chat))
    assert other["error"]["code"] == "reply_in_progress"
    # The same for a sync regenerate after another dead reply.
    again = invoke("regenerate", session=sid, chat=chat, headers=ASYNC).body["assistantMessage"]
    until = lease_until(table, sid, chat)
    while int(time.time()) <= until:
        time.sleep(0.05)
    assert invoke("regenerate", session=sid, chat=chat).status == 201
    assert stored_message(table, sid, chat, again["seq"])["status"] == "failed"
    assert not {"leaseUntil", "generatingSeq"} & set(head_item(table, sid, chat))


def head_item(table: str, sid: str, chat: str) -> dict[str, Any]:
    import boto3

    resource: Any = boto3.resource("dynamodb")
    item: dict[str, Any] = resource.Table(table).get_item(Key=dict(keys.head_key("alice", sid, chat)))["Item"]
    return item


def lease_until(table: str, sid: str, chat: str) -> int:
    return int(head_item(table, sid, chat)["leaseUntil"])


def stored_message(table: str, sid: str, chat: str, seq: int) -> dict[str, Any]:
    import boto3

    key = dict(keys.message_key("alice", sid, chat, seq))
    resource: Any = boto3.resource("dynamodb")
    item: dict[str, Any] = resource.Table(table).get_item(Key=key)["Item"]
    return item


def test_an_edit_asked_async_forks_and_generates_there(table: str, model: Upstream, lam: LambdaService) -> None:
    sid, chat = setup_chat()
    question = invoke("send_message", session=sid, chat=chat, body={"content": "first"}).body["userMessage"]
    edited = invoke(
        "edit_message", session=sid, chat=chat, message=question["messageId"], body={"content": "second"}, headers=ASYNC
    )
    assert edited.status == 202
    fork, reply = edited.body["chat"]["chatId"], edited.body["assistantMessage"]
    assert (reply["status"], reply["chatId"], edited.body["chat"]["messageCount"]) == ("generating", fork, 0)
    assert generate(lam.events(GENERATOR)[0]) == "complete"
    assert message(sid, fork, reply["messageId"]).body["status"] == "complete"
    assert invoke("get_chat", session=sid, chat=fork).body["messageCount"] == 2
