"""The user's counters (GET /me/usage), the listing by status and the token budget raced by real
threads against moto's server mode, with the stored items checked afterwards."""

from __future__ import annotations

from typing import Any

import pytest

from chat_sessions import usage
from chat_sessions.clock import utc_now
from chat_sessions.errors import ServiceError
from chat_sessions.items import SessionStatus
from chat_sessions.llm import get_chat_model
from chat_sessions.models import CreateChatRequest, Exchange
from chat_sessions.services import chats, conversation, sessions
from chat_sessions.store import get_store
from tests.concurrency.test_invariants import new_session, race
from tests.support import reset_caches, table_items
from tests.upstream import Reply, Upstream

THREADS = 16


def stored(table: str, kind: str) -> list[dict[str, Any]]:
    return [i for i in table_items(table) if i.get("type") == kind]


def test_counters_are_exact_under_concurrent_changes(server_table: str, model: Upstream) -> None:
    """Sends, chat creates and deletes, status changes and session deletes race; afterwards every
    counter equals what the table holds, and GET /me/usage says the same."""
    model.default = Reply(content="ok", prompt_tokens=7, completion_tokens=3)
    store = get_store()
    llm = get_chat_model()
    sids = [new_session() for _ in range(4)]
    first_chats = [chats.create_chat(store, "alice", sid, CreateChatRequest(name="c")).chat_id for sid in sids]
    doomed = sids[3]

    def work(i: int) -> object:
        sid, chat = sids[i % 3], first_chats[i % 3]
        kind = i % 8
        if kind <= 2:
            return conversation.send_message(store, llm, "alice", sid, None, f"m{i}")
        if kind == 3:
            return chats.create_chat(store, "alice", sid, CreateChatRequest(name=f"n{i}"))
        if kind == 4:
            change = sessions.archive_session if i < 8 else sessions.pause_session
            return change(store, "alice", sid)
        if kind == 5:
            return sessions.unarchive_session(store, "alice", sid)
        if kind == 6:
            chats.delete_chat(store, "alice", sid, chat)
            return None
        if i == 7:
            sessions.delete_session(store, "alice", doomed)
            return None
        return conversation.send_message(store, llm, "alice", doomed, None, "late")

    results = race(THREADS, work)
    unexpected = [r for r in results if isinstance(r, ServiceError) and r.status >= 500]
    assert unexpected == []

    session_items = stored(server_table, "session")
    counters = store.sessions.counters("alice")
    for status, counter in usage.STATUS_COUNTERS.items():
        assert counters.get(counter, 0) == len([s for s in session_items if s["status"] == status]), status
    assert counters.get("chats", 0) == len(stored(server_table, "chat")) == sum(s["chatCount"] for s in session_items)
    assert counters.get("messages", 0) == sum(s["messageCount"] for s in session_items)
    # tokens used ever: 10 for every reply committed (an exchange answered), in a session deleted
    # since too; a reply refused (its session archived or deleted while the model answered) adds none
    exchanges = [r for r in results if isinstance(r, Exchange)]
    assert counters.get("totalTokens", 0) == 10 * len(exchanges)
    assert (counters.get("promptTokens", 0), counters.get("completionTokens", 0)) == (
        7 * len(exchanges),
        3 * len(exchanges),
    )
    me = sessions.get_usage(store, "alice")
    assert me.sessions.model_dump() == {
        s: counters.get(c, 0) for s, c in usage.STATUS_COUNTERS.items()
    } and me.messages == counters.get("messages", 0)
    assert me.period_usage.total_tokens == counters.get("totalTokens", 0)  # all of it this month

    # and the listings by status agree with the table
    statuses: tuple[SessionStatus, ...] = ("active", "paused", "archived")
    for status in statuses:
        listed = sessions.list_sessions(store, "alice", 100, None, status).items
        assert sorted(s.session_id for s in listed) == sorted(
            s["sessionId"] for s in session_items if s["status"] == status
        )


def test_racing_sends_overshoot_the_budget_by_at_most_the_replies_in_flight(
    server_table: str, model: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The month's budget is 100 and 99 are spent. Sends race: each user message accepted while
    the spend was below 100 gets its reply (10 tokens) counted, the rest are refused with 429
    and store nothing. Afterwards the spend is 99 + 10 x accepted, and no accepted message was
    stored after the spend reached the budget."""
    monkeypatch.setenv("MONTHLY_TOKEN_BUDGET", "100")
    reset_caches()
    store = get_store()
    llm = get_chat_model()
    sid = new_session()
    chat = chats.create_chat(store, "alice", sid, CreateChatRequest(name="c")).chat_id
    model.default = Reply(content="ok", prompt_tokens=90, completion_tokens=9)
    conversation.send_message(store, llm, "alice", sid, chat, "first")  # 99 spent
    model.default = Reply(content="ok", prompt_tokens=8, completion_tokens=2)

    results = race(THREADS, lambda i: conversation.send_message(store, llm, "alice", sid, chat, f"m{i}"))
    accepted = [r for r in results if not isinstance(r, ServiceError)]
    refused = [r for r in results if isinstance(r, ServiceError)]
    assert {r.code for r in refused} <= {"token_budget_exhausted"}
    assert 1 <= len(accepted) <= THREADS  # at least the first; at most every reply in flight at once
    spent = store.sessions.counters("alice")[usage.period_field("totalTokens", usage.period_of(utc_now()))]
    assert spent == 99 + 10 * len(accepted)
    user_messages = [m for m in stored(server_table, "message") if m["role"] == "user"]
    assert len(user_messages) == 1 + len(accepted)  # a refused send stored nothing
    assert all(m["status"] == "complete" for m in stored(server_table, "message"))
    # now it is reached: a send is refused before anything is stored
    with pytest.raises(ServiceError) as refused_now:
        conversation.send_message(store, llm, "alice", sid, chat, "after")
    assert refused_now.value.code == "token_budget_exhausted"
    assert len([m for m in stored(server_table, "message") if m["role"] == "user"]) == 1 + len(accepted)
