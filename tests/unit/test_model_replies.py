"""What the model sends back is input too: every reply is validated before anything is stored.

The real ``openai`` client talks to a scripted local upstream (``tests.upstream``) that answers
with replies of the wrong shape, unreadable bodies, replies too long to store, and a trickle
that never trips a per-read timeout. Each case is either a well-typed stored reply (201) or
``502``/``504`` with the user's message kept ``unanswered`` and every listing still readable.
Issue 8, defects 7, 9 and 11 (reply size); each test here failed before its fix.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.capacity import ITEM_LIMIT, item_size
from chat_sessions.config import get_settings
from chat_sessions.models import MAX_CONTENT, Message
from tests.support import LambdaContext, invoke, reset_caches, table_items
from tests.upstream import Reply, Upstream


def completion(**overrides: Any) -> dict[str, Any]:
    """A well-formed chat completion; ``overrides`` replace top-level fields."""
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "served-model",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "fine"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    body.update(overrides)
    return body


def with_message(**message: Any) -> dict[str, Any]:
    return completion(choices=[{"index": 0, "finish_reason": "stop", "message": message}])


def with_usage(**usage: Any) -> dict[str, Any]:
    return completion(usage=usage)


def raw(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


UNREADABLE: dict[str, bytes] = {
    "model-is-a-number": raw(completion(model=123)),
    "content-is-a-list": raw(with_message(role="assistant", content=["a", "b"])),
    "content-is-null": raw(with_message(role="assistant", content=None)),
    "content-lone-surrogate": b'{"model": "m", "choices": [{"message": {"content": "a\\ud800b"}}]}',
    "not-json": b"this is not json",
    "html": b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    "empty-body": b"",
    "json-null": b"null",
    "json-list": b"[]",
    "choices-is-a-string": raw(completion(choices="abc")),
    "choices-empty": raw(completion(choices=[])),
    "choice-is-null": raw(completion(choices=[None])),
    "message-is-null": raw(completion(choices=[{"index": 0, "message": None}])),
    "message-missing": raw(completion(choices=[{"index": 0}])),
    "usage-float": raw(with_usage(prompt_tokens=1.5, completion_tokens=2)),
    "usage-integral-float": raw(with_usage(prompt_tokens=3.0, completion_tokens=2)),
    "usage-string": raw(with_usage(prompt_tokens="3", completion_tokens=2)),
    "usage-bool": raw(with_usage(prompt_tokens=True, completion_tokens=2)),
    "usage-negative": raw(with_usage(prompt_tokens=-5, completion_tokens=2)),
    "usage-huge": raw(with_usage(prompt_tokens=10**30, completion_tokens=2)),
    "usage-5000-digits": b'{"model": "m", "choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": '
    + b"9" * 5000
    + b', "completion_tokens": 1}}',
    "usage-is-a-list": raw(completion(usage=[1, 2])),
    "deeply-nested-extra": b'{"x": ' + b"[" * 20_000 + b"]" * 20_000 + b', "choices": [{"message": {"content": "x"}}]}',
    "reply-600-kb": raw(with_message(role="assistant", content="x" * 600_000)),
}


def setup_chat() -> tuple[str, str]:
    sid = str(invoke("create_session", body={"name": "s"}).body["sessionId"])
    chat = str(invoke("create_chat", session=sid, body={"name": "c", "model": "asked-model"}).body["chatId"])
    return sid, chat


def assert_readable(sid: str, chat: str) -> list[dict[str, Any]]:
    """Every listing and read of the session answers 200 with bodies of the contract's shape."""
    reads: list[tuple[str, dict[str, Any]]] = [
        ("list_sessions", {}),
        ("get_session", {"session": sid}),
        ("list_chats", {"session": sid}),
        ("get_chat", {"session": sid, "chat": chat}),
    ]
    for module, kwargs in reads:
        result = invoke(module, **kwargs)
        assert result.status == 200, (module, result)
    page = invoke("list_messages", session=sid, chat=chat, query={"limit": "100"})
    assert page.status == 200, page
    for item in page.body["items"]:
        Message.model_validate(item)
    items: list[dict[str, Any]] = page.body["items"]
    return items


@pytest.fixture
def chat(table: str, model: Upstream) -> Iterator[tuple[str, str]]:
    yield setup_chat()


@pytest.mark.parametrize("reply", list(UNREADABLE.values()), ids=list(UNREADABLE))
def test_an_unreadable_reply_is_502_and_nothing_but_the_user_message_is_stored(
    reply: bytes, chat: tuple[str, str], model: Upstream, table: str
) -> None:
    """Defect 7: wrong types were stored (and poisoned every listing); unreadable bodies,
    float, negative or huge usage and a 600 KB reply answered 500 or were accepted."""
    sid, chat_id = chat
    model.default = Reply(raw=reply)
    before = table_items(table)
    sent = invoke("send_message", session=sid, chat=chat_id, body={"content": "hello"})
    assert sent.status == 502, sent
    assert sent.body["error"]["code"] == "upstream_error"
    after = table_items(table)
    added = [i for i in after if i not in before]
    assert [(i["role"], i["status"], i["content"]) for i in added if "role" in i] == [("user", "unanswered", "hello")]
    assert [m["status"] for m in assert_readable(sid, chat_id)] == ["unanswered"]
    regenerated = invoke("regenerate", session=sid, chat=chat_id)
    assert regenerated.status == 502, regenerated
    assert [m["status"] for m in assert_readable(sid, chat_id)] == ["unanswered"]


ACCEPTED: dict[str, tuple[bytes, dict[str, Any]]] = {
    "no-usage": (raw(completion(usage=None)), {"content": "fine", "model": "served-model", "usage": (0, 0, 0)}),
    "usage-absent": (
        raw({k: v for k, v in completion().items() if k != "usage"}),
        {"content": "fine", "model": "served-model", "usage": (0, 0, 0)},
    ),
    "no-model": (raw(completion(model=None)), {"content": "fine", "model": "asked-model", "usage": (3, 2, 5)}),
    "extra-fields": (
        raw(with_message(role="assistant", content="ok", refusal=None, tool_calls=None, annotations=[])),
        {"content": "ok", "model": "served-model", "usage": (3, 2, 5)},
    ),
    "total-disagrees": (
        raw(with_usage(prompt_tokens=3, completion_tokens=2, total_tokens=99)),
        {"content": "fine", "model": "served-model", "usage": (3, 2, 5)},
    ),
    "emoji": (
        raw(with_message(role="assistant", content="\U0001f600 ok")),
        {"content": "\U0001f600 ok", "model": "served-model", "usage": (3, 2, 5)},
    ),
    "empty-content": (raw(with_message(content="")), {"content": "", "model": "served-model", "usage": (3, 2, 5)}),
}


@pytest.mark.parametrize(("reply", "expected"), list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_a_readable_reply_is_stored_well_typed(
    reply: bytes, expected: dict[str, Any], chat: tuple[str, str], model: Upstream
) -> None:
    """Missing optional parts take defaults (usage 0, the requested model); the total is ours."""
    sid, chat_id = chat
    model.default = Reply(raw=reply)
    sent = invoke("send_message", session=sid, chat=chat_id, body={"content": "hello"})
    assert sent.status == 201, sent
    answer = sent.body["assistantMessage"]
    usage = answer["usage"]
    assert answer["content"] == expected["content"] and answer["model"] == expected["model"]
    assert (usage["promptTokens"], usage["completionTokens"], usage["totalTokens"]) == expected["usage"]
    assert assert_readable(sid, chat_id)[-1] == answer


def test_the_reply_length_is_bounded_by_max_tokens(chat: tuple[str, str], model: Upstream) -> None:
    """Defect 11: the request asks for at most ``MAX_COMPLETION_TOKENS`` (default 8,192), so a
    model that honours it never produces a reply too long to store."""
    sid, chat_id = chat
    assert invoke("send_message", session=sid, chat=chat_id, body={"content": "hello"}).status == 201
    assert model.received[-1]["max_tokens"] == get_settings().max_completion_tokens == 8192


def test_the_longest_storable_reply_to_the_longest_message_fits_a_dynamodb_item(
    table: str, model: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 11: a reply of ``MAX_REPLY_BYTES`` of 4-byte characters, answering 32,000 emoji,
    for the longest user id (256 ``#``, each escaped to 3 bytes in every key), is stored and
    listed; the measured item sizes stay under DynamoDB's 400 KB with room to spare."""
    user = "#" * 256
    cap = get_settings().max_reply_bytes
    longest_reply = "\U0001f600" * (cap // 4)
    model.default = Reply(content=longest_reply)
    sid = str(invoke("create_session", user=user, body={"name": "s"}).body["sessionId"])
    chat_id = str(invoke("create_chat", user=user, session=sid, body={"name": "c"}).body["chatId"])
    sent = invoke("send_message", user=user, session=sid, chat=chat_id, body={"content": "\U0001f600" * MAX_CONTENT})
    assert sent.status == 201, sent.body
    assert sent.body["assistantMessage"]["content"] == longest_reply
    sizes = sorted(item_size(i) for i in table_items(table, raw=True) if "role" in i)
    assert sizes[-1] < cap + 2_000 < ITEM_LIMIT, sizes
    page = invoke("list_messages", user=user, session=sid, chat=chat_id)
    assert page.status == 200 and page.body["items"][1]["content"] == longest_reply

    model.default = Reply(content=longest_reply + "x")
    over = invoke("send_message", user=user, session=sid, chat=chat_id, body={"content": "again"})
    assert over.status == 502, over
    assert "long" in over.body["error"]["message"]


def test_every_model_client_of_a_process_shares_one_tls_context() -> None:
    """Loading the CA bundle into a TLS context is about 30 ms of CPU: a transport, hence a
    model client, built again (a test resetting the caches, a second client) reuses the one
    the process made, with httpx's defaults."""
    from chat_sessions import llm

    first, second = llm.deadline_transport(), llm.deadline_transport()
    shared = llm.tls_context()
    assert first._pool._ssl_context is shared
    assert second._pool._ssl_context is shared
    assert shared.verify_mode is ssl.CERT_REQUIRED and shared.check_hostname


@pytest.mark.parametrize("body_only", [False, True], ids=["trickled-headers", "trickled-body"])
def test_a_trickling_model_meets_the_total_deadline(
    body_only: bool, table: str, model: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 9: one byte every 0.2 s never trips a per-read timeout of 2 s, so the call ran for
    as long as the model trickled. The deadline is on the whole call: 504 once it passes."""
    monkeypatch.setenv("MODEL_TIMEOUT_SECONDS", "1")
    reset_caches()
    sid, chat_id = setup_chat()
    model.default = Reply(content="slow " * 40, trickle=0.2, trickle_body_only=body_only)
    started = time.monotonic()
    sent = invoke("send_message", session=sid, chat=chat_id, body={"content": "hello"})
    elapsed = time.monotonic() - started
    assert sent.status == 504, sent
    assert sent.body["error"]["code"] == "upstream_timeout"
    # The trickle alone would take 40 s (200 bytes, 0.2 s apart): well under that proves the
    # deadline cut it, with room for a busy machine's client set-up.
    assert elapsed < 10, elapsed
    assert [m["status"] for m in assert_readable(sid, chat_id)] == ["unanswered"]


def test_the_deadline_leaves_the_function_time_to_answer(table: str, model: Upstream) -> None:
    """Defect 9: with 4 s left in the invocation, the model gets what remains after the margin
    for storing the reply, not its own 2 s timeout per read, so the function answers 504 itself
    instead of being cut off by Lambda (whose error is not the contract's)."""
    sid, chat_id = setup_chat()
    model.default = Reply(content="slow " * 40, trickle=0.2)
    context = LambdaContext(remaining_millis=4_000)
    started = time.monotonic()
    sent = invoke("send_message", session=sid, chat=chat_id, body={"content": "hello"}, context=context)
    elapsed = time.monotonic() - started
    assert sent.status == 504, sent
    assert elapsed < 10, elapsed  # against the trickle's 40 s, with room for a busy machine


def test_no_time_left_answers_504_without_calling_the_model(table: str, model: Upstream) -> None:
    sid, chat_id = setup_chat()
    sent = invoke(
        "send_message",
        session=sid,
        chat=chat_id,
        body={"content": "hello"},
        context=LambdaContext(remaining_millis=1_000),
    )
    assert sent.status == 504, sent
    assert model.calls == 0


def test_retries_stay_inside_the_deadline(table: str, model: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    """``MODEL_MAX_RETRIES`` retries a server error after a short backoff while the deadline
    leaves room, and never a reply that was read and refused (it would be refused again)."""
    monkeypatch.setenv("MODEL_MAX_RETRIES", "1")
    reset_caches()
    sid, chat_id = setup_chat()
    model.script = [Reply(status=500), Reply(content="second try")]
    sent = invoke("send_message", session=sid, chat=chat_id, body={"content": "hello"})
    assert sent.status == 201 and sent.body["assistantMessage"]["content"] == "second try"
    assert model.calls == 2

    model.script = [Reply(raw=b"not json"), Reply(content="never asked")]
    assert invoke("send_message", session=sid, chat=chat_id, body={"content": "again"}).status == 502
    assert model.calls == 3


def test_no_retry_when_the_backoff_would_pass_the_deadline(
    table: str, model: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_MAX_RETRIES", "3")
    monkeypatch.setenv("MODEL_TIMEOUT_SECONDS", "1")
    reset_caches()
    sid, chat_id = setup_chat()
    model.default = Reply(status=500)
    sent = invoke("send_message", session=sid, chat=chat_id, body={"content": "hello"})
    assert sent.status == 502
    # A 0.5 s backoff plus a second attempt does not fit in 1 s: one call. (The wall time is not
    # asserted: on a busy machine the first call alone may take most of the second.)
    assert model.calls == 1
