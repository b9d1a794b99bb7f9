"""GET /me/usage and MONTHLY_TOKEN_BUDGET through the real handlers and store, on moto."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from chat_sessions import keys, usage
from chat_sessions.clock import utc_now
from tests.support import invoke, reset_caches, table_items
from tests.upstream import Reply, Upstream

ZERO = {"promptTokens": 0, "completionTokens": 0, "totalTokens": 0}


def new_session(user: str = "alice") -> str:
    return str(invoke("create_session", user=user, body={"name": "s"}).body["sessionId"])


def new_chat(sid: str, user: str = "alice") -> str:
    created = invoke("create_chat", user=user, session=sid, body={"name": "c", "model": "test-model"})
    assert created.status == 201, created
    return str(created.body["chatId"])


def me(user: str = "alice") -> dict[str, Any]:
    got = invoke("get_usage", user=user)
    assert got.status == 200, got
    body: dict[str, Any] = got.body
    return body


def sorted_items(table: str) -> list[dict[str, Any]]:
    return sorted(table_items(table), key=lambda i: (str(i["PK"]), str(i["SK"])))


def test_a_new_user_has_nothing(table: str) -> None:
    assert me("nobody") == {
        "sessions": {"active": 0, "paused": 0, "archived": 0},
        "chats": 0,
        "messages": 0,
        "usage": ZERO,
        "period": utc_now()[:7],
        "periodUsage": ZERO,
        "tokenBudget": None,
    }


def test_counts_follow_every_change(table: str, model: Upstream) -> None:
    model.default = Reply(content="ok", prompt_tokens=10, completion_tokens=2)
    a, b, c = new_session(), new_session(), new_session()
    invoke("pause_session", session=b)
    invoke("archive_session", session=c)
    chat_a = new_chat(a)
    new_chat(a)
    invoke("activate_chat", session=a, chat=chat_a)
    for text in ("one", "two"):
        assert invoke("send_message", session=a, chat=chat_a, body={"content": text}).status == 201
    assert invoke("regenerate", session=a, chat=chat_a).status == 201
    body = me()
    assert body["sessions"] == {"active": 1, "paused": 1, "archived": 1}
    assert (body["chats"], body["messages"]) == (2, 5)  # two exchanges and a second reply
    assert body["usage"] == body["periodUsage"] == {"promptTokens": 30, "completionTokens": 6, "totalTokens": 36}
    session = invoke("get_session", session=a).body
    assert session["messageCount"] == body["messages"] and session["chatCount"] == body["chats"]

    invoke("delete_chat", session=a, chat=chat_a)  # its 5 messages go; the tokens used stay used
    body = me()
    assert (body["chats"], body["messages"]) == (1, 0)
    assert body["usage"]["totalTokens"] == 36
    invoke("unarchive_session", session=c)
    invoke("resume_session", session=b)
    assert me()["sessions"] == {"active": 2, "paused": 1, "archived": 0}
    for sid in (a, b, c):
        assert invoke("delete_session", session=sid).status == 204
    assert me()["sessions"] == {"active": 0, "paused": 0, "archived": 0}
    assert (me()["chats"], me()["messages"]) == (0, 0)
    assert me("bob")["usage"] == ZERO  # per user


def test_a_session_deleted_with_its_messages_takes_its_counts(table: str, model: Upstream) -> None:
    sid = new_session()
    chat = new_chat(sid)
    invoke("send_message", session=sid, chat=chat, body={"content": "x"})
    invoke("pause_session", session=sid)
    assert (me()["chats"], me()["messages"], me()["sessions"]["paused"]) == (1, 2, 1)
    invoke("delete_session", session=sid)
    assert (me()["chats"], me()["messages"], me()["sessions"]["paused"]) == (0, 0, 0)


def test_a_new_period_starts_from_zero_and_drops_the_last(table: str) -> None:
    """Stored usage of another month is not this month's, and the next reply's update removes
    the previous month's attributes (the item does not grow month by month)."""
    from chat_sessions.store import get_store

    store = get_store()
    period = usage.period_of(utc_now())
    old = usage.previous_period(period)
    store.table.update(
        keys.quota_key("alice"),
        UpdateExpression="SET #t = :t",
        ExpressionAttributeNames={"#t": usage.period_field("totalTokens", old)},
        ExpressionAttributeValues={":t": 500},
    )
    assert me()["periodUsage"] == ZERO and me()["period"] == period
    assert usage.previous_period("2026-01") == "2025-12" and usage.previous_period("2026-11") == "2026-10"


def test_seconds_to_the_next_period() -> None:
    assert usage.seconds_to_next_period(datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC)) == 30
    assert usage.seconds_to_next_period(datetime(2026, 11, 1, 0, 0, 0, tzinfo=UTC)) == 30 * 86400
    assert usage.seconds_to_next_period(datetime(2026, 2, 28, 23, 59, 59, 500_000, tzinfo=UTC)) == 1


@pytest.fixture
def budget(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("MONTHLY_TOKEN_BUDGET", "100")
    reset_caches()
    return 100


def test_the_budget_refuses_send_and_regenerate_once_reached(table: str, model: Upstream, budget: int) -> None:
    model.default = Reply(content="ok", prompt_tokens=40, completion_tokens=20)  # 60 a reply
    sid = new_session()
    chat = new_chat(sid)
    assert invoke("send_message", session=sid, chat=chat, body={"content": "one"}).status == 201
    assert me()["tokenBudget"] == 100 and me()["periodUsage"]["totalTokens"] == 60
    # below the budget: accepted, and the reply in flight takes it past (120: the bound)
    assert invoke("send_message", session=sid, chat=chat, body={"content": "two"}).status == 201
    assert me()["periodUsage"]["totalTokens"] == 120
    before = sorted_items(table)
    calls = len(model.received)
    ceiling = usage.seconds_to_next_period(datetime.now(UTC))  # read before the refusals: at least theirs
    for name, result in {
        "send": invoke("send_message", session=sid, chat=chat, body={"content": "three"}),
        "send to active": invoke("send_to_active_chat", session=sid, body={"content": "three"}),
        "regenerate": invoke("regenerate", session=sid, chat=chat),
        "keyed send": invoke(
            "send_message", session=sid, chat=chat, body={"content": "k"}, headers={"Idempotency-Key": "b1"}
        ),
    }.items():
        assert (result.status, result.body["error"]["code"]) == (429, "token_budget_exhausted"), name
        assert 0 < int(result.headers["Retry-After"]) <= ceiling, name
    assert len(model.received) == calls, "the model was called for a refused request"
    after = [i for i in sorted_items(table) if not str(i["PK"]).endswith("#IDEMPOTENCY")]
    assert after == [i for i in before if not str(i["PK"]).endswith("#IDEMPOTENCY")]
    # everything else still works
    assert invoke("create_chat", session=sid, body={"name": "d"}).status == 201
    assert invoke("list_messages", session=sid, chat=chat).status == 200


def test_no_budget_by_default(table: str, model: Upstream) -> None:
    model.default = Reply(content="ok", prompt_tokens=10**6, completion_tokens=10**6)
    sid = new_session()
    chat = new_chat(sid)
    for _ in range(2):
        assert invoke("send_message", session=sid, chat=chat, body={"content": "x"}).status == 201
    assert me()["tokenBudget"] is None and me()["periodUsage"]["totalTokens"] == 4 * 10**6


def test_message_ids_made_in_one_millisecond_at_one_seq_differ() -> None:
    """Two sends in one process racing for one seq: their message ids must differ, or the one
    whose write was refused takes the other's message for its own (found by the budget race)."""
    from chat_sessions import ids

    made = [ids.new_id() for _ in range(50)]  # most within one millisecond
    assert len({ids.message_id(base, 3) for base in made}) == 50
    assert made == sorted(made)


def test_the_budget_refuses_an_edit_before_its_fork(table: str, model: Upstream, budget: int) -> None:
    model.default = Reply(content="ok", prompt_tokens=90, completion_tokens=10)
    sid = new_session()
    chat = new_chat(sid)
    sent = invoke("send_message", session=sid, chat=chat, body={"content": "one"})
    before = sorted_items(table)
    edited = invoke(
        "edit_message", session=sid, chat=chat, message=sent.body["userMessage"]["messageId"], body={"content": "x"}
    )
    assert (edited.status, edited.body["error"]["code"]) == (429, "token_budget_exhausted")
    assert sorted_items(table) == before  # no fork
    assert me()["chats"] == 1
