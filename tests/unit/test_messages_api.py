"""Sending, listing and regenerating, with the real openai client against a scripted upstream."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import invoke, reset_caches
from tests.upstream import Reply, Upstream


def setup_chat(system_prompt: str | None = None) -> tuple[str, str]:
    sid = str(invoke("create_session", body={"name": "s"}).body["sessionId"])
    body: dict[str, Any] = {"name": "c", "model": "test-model"}
    if system_prompt:
        body["systemPrompt"] = system_prompt
    chat = invoke("create_chat", session=sid, body=body).body["chatId"]
    return sid, str(chat)


def messages(sid: str, chat: str, order: str = "asc") -> list[dict[str, Any]]:
    page = invoke("list_messages", session=sid, chat=chat, query={"limit": "100", "order": order})
    assert page.status == 200
    items: list[dict[str, Any]] = page.body["items"]
    return items


def test_send_stores_both_messages_and_usage(table: str, model: Upstream) -> None:
    model.default = Reply(content="hello back", prompt_tokens=30, completion_tokens=5)
    sid, chat = setup_chat("be brief")
    sent = invoke("send_message", session=sid, chat=chat, body={"content": "hello"})
    assert sent.status == 201
    user, reply = sent.body["userMessage"], sent.body["assistantMessage"]
    assert (user["seq"], user["role"], user["status"], user["usage"]) == (1, "user", "complete", None)
    assert (reply["seq"], reply["role"], reply["content"], reply["model"]) == (
        2,
        "assistant",
        "hello back",
        "test-model",
    )
    assert reply["usage"] == {"promptTokens": 30, "completionTokens": 5, "totalTokens": 35}
    assert messages(sid, chat) == [user, reply]

    invoke("send_to_active_chat", session=sid, body={"content": "again"})
    chat_after = invoke("get_chat", session=sid, chat=chat).body
    session_after = invoke("get_session", session=sid).body
    for resource in (chat_after, session_after):
        assert resource["usage"] == {"promptTokens": 60, "completionTokens": 10, "totalTokens": 70}
        assert resource["messageCount"] == 4


def test_model_sees_system_prompt_first_and_new_message_last(table: str, model: Upstream) -> None:
    sid, chat = setup_chat("you are terse")
    for text in ("one", "two", "three"):
        invoke("send_message", session=sid, chat=chat, body={"content": text})
    sent = model.received[-1]
    assert sent["model"] == "test-model"
    assert sent["messages"][0] == {"role": "system", "content": "you are terse"}
    assert [m["role"] for m in sent["messages"][1:]] == ["user", "assistant", "user", "assistant", "user"]
    assert sent["messages"][-1] == {"role": "user", "content": "three"}


def test_window_is_trimmed_at_the_budget(table: str, model: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTEXT_TOKEN_BUDGET", "400")
    reset_caches()
    model.default = Reply(content="r" * 400)
    sid, chat = setup_chat("sys")
    for i in range(6):
        invoke("send_message", session=sid, chat=chat, body={"content": f"{i}" * 400})
    sent = model.received[-1]["messages"]
    # 400 characters ~ 104 estimated tokens: the system prompt and three whole messages fit in 400.
    assert sent[0]["role"] == "system"
    assert [len(m["content"]) for m in sent[1:]] == [400, 400, 400]
    assert sent[-1] == {"role": "user", "content": "5" * 400}


def test_paused_session_and_inactive_chat_refuse_messages(table: str, model: Upstream) -> None:
    sid, first = setup_chat()
    second = invoke("create_chat", session=sid, body={"name": "second"}).body["chatId"]
    refused = invoke("send_message", session=sid, chat=first, body={"content": "hi"})
    assert refused.status == 409 and refused.body["error"]["code"] == "chat_not_active"
    invoke("pause_session", session=sid)
    for module, chat in (("send_message", second), ("send_to_active_chat", None), ("regenerate", second)):
        result = invoke(module, session=sid, chat=chat, body={"content": "hi"} if module != "regenerate" else None)
        assert result.status == 409 and result.body["error"]["code"] == "session_paused", module
    assert model.calls == 0
    assert messages(sid, first) == [] and messages(sid, second) == []


@pytest.mark.parametrize(
    ("reply", "status", "code"),
    [
        (Reply(status=500), 502, "upstream_error"),
        (Reply(status=401), 502, "upstream_error"),
        (Reply(status=429, headers={"Retry-After": "7"}), 429, "rate_limited"),
        (Reply(delay=3.0), 504, "upstream_timeout"),
    ],
)
def test_model_failure_keeps_the_user_message_unanswered(
    table: str, model: Upstream, reply: Reply, status: int, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if reply.delay:  # a deadline well short of the reply's delay, so only the code is measured
        monkeypatch.setenv("MODEL_TIMEOUT_SECONDS", "1")
        reset_caches()
    sid, chat = setup_chat()
    model.script = [reply]
    failed = invoke("send_message", session=sid, chat=chat, body={"content": "are you there?"})
    assert failed.status == status and failed.body["error"]["code"] == code
    if status == 429:
        assert failed.headers.get("Retry-After") == "7"
    stored = messages(sid, chat)
    assert [(m["seq"], m["role"], m["status"], m["content"]) for m in stored] == [
        (1, "user", "unanswered", "are you there?")
    ]
    # Nothing but the message changed: counters count a user message once it is answered.
    chat_after = invoke("get_chat", session=sid, chat=chat).body
    assert chat_after["usage"]["totalTokens"] == 0 and chat_after["messageCount"] == 0
    assert invoke("get_session", session=sid).body["messageCount"] == 0

    # Regenerate answers the unanswered message; it becomes complete.
    model.default = Reply(content="yes")
    regenerated = invoke("regenerate", session=sid, chat=chat)
    assert regenerated.status == 201
    assert regenerated.body["userMessage"]["status"] == "complete"
    assert regenerated.body["assistantMessage"]["seq"] == 2
    assert [(m["seq"], m["status"]) for m in messages(sid, chat)] == [(1, "complete"), (2, "complete")]
    assert invoke("get_chat", session=sid, chat=chat).body["messageCount"] == 2
    assert invoke("get_session", session=sid).body["messageCount"] == 2


def test_upstream_unreachable_is_502(table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed_port}/v1")
    monkeypatch.setenv("MODEL_MAX_RETRIES", "0")
    reset_caches()
    sid, chat = setup_chat()
    failed = invoke("send_message", session=sid, chat=chat, body={"content": "hi"})
    assert failed.status == 502 and failed.body["error"]["code"] == "upstream_error"
    assert [m["status"] for m in messages(sid, chat)] == ["unanswered"]


def test_regenerate_appends_and_keeps_earlier_replies(table: str, model: Upstream) -> None:
    sid, chat = setup_chat()
    nothing = invoke("regenerate", session=sid, chat=chat)
    assert nothing.status == 409 and nothing.body["error"]["code"] == "nothing_to_regenerate"
    model.script = [Reply(content="first"), Reply(content="second")]
    invoke("send_message", session=sid, chat=chat, body={"content": "q"})
    again = invoke("regenerate", session=sid, chat=chat)
    assert again.status == 201
    assert again.body["assistantMessage"]["content"] == "second"
    assert [(m["seq"], m["role"], m["content"]) for m in messages(sid, chat)] == [
        (1, "user", "q"),
        (2, "assistant", "first"),
        (3, "assistant", "second"),
    ]
    # The regenerated reply is asked for the same question, without the earlier answer.
    assert model.received[-1]["messages"] == [{"role": "user", "content": "q"}]


def test_listing_orders_and_pages(table: str, model: Upstream) -> None:
    sid, chat = setup_chat()
    for i in range(5):
        invoke("send_message", session=sid, chat=chat, body={"content": f"m{i}"})
    for order, expected in (("asc", list(range(1, 11))), ("desc", list(range(10, 0, -1)))):
        seqs: list[int] = []
        cursor = None
        while True:
            query = {"limit": "3", "order": order} | ({"cursor": cursor} if cursor else {})
            page = invoke("list_messages", session=sid, chat=chat, query=query)
            assert page.status == 200
            seqs += [m["seq"] for m in page.body["items"]]
            cursor = page.body["nextCursor"]
            if cursor is None:
                break
        assert seqs == expected
    asc_cursor = invoke("list_messages", session=sid, chat=chat, query={"limit": "2"}).body["nextCursor"]
    mixed = invoke("list_messages", session=sid, chat=chat, query={"limit": "2", "order": "desc", "cursor": asc_cursor})
    assert mixed.status == 400
