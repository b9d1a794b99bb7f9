"""Each invariant raced by real threads against moto's server mode on 127.0.0.1.

The threads call the service layer with the real store (boto3 over HTTP to the moto server)
and, for sends, the real ``openai`` client against a local upstream. Handlers are not used
here because Powertools' resolver keeps the current event in a class attribute: one Lambda
container serves one request at a time, so handlers never run concurrently in one process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import pytest

from chat_sessions import idempotency
from chat_sessions.config import get_settings
from chat_sessions.errors import ServiceError
from chat_sessions.idempotency import run_once
from chat_sessions.llm import get_chat_model
from chat_sessions.models import CreateChatRequest, CreateSessionRequest
from chat_sessions.services import chats, conversation, messages, sessions
from chat_sessions.store import get_store
from tests.support import LambdaContext, reset_caches, table_items
from tests.upstream import Upstream

T = TypeVar("T")
THREADS = 20


def race(n: int, work: Callable[[int], T]) -> list[T | ServiceError]:
    """Run ``work(i)`` for i in 0..n-1 on n threads released together by a barrier."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T | ServiceError:
        barrier.wait()
        try:
            return work(i)
        except ServiceError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def new_session(user: str = "alice") -> str:
    return sessions.create_session(get_store(), user, CreateSessionRequest(name="s")).session_id


def test_one_active_chat_under_concurrent_creates_and_switches(server_table: str) -> None:
    store = get_store()
    sid = new_session()
    ids = [chats.create_chat(store, "alice", sid, CreateChatRequest(name=f"c{i}")).chat_id for i in range(5)]

    def work(i: int) -> str:
        if i % 4 == 0:
            return chats.create_chat(store, "alice", sid, CreateChatRequest(name=f"new{i}")).chat_id
        return chats.activate_chat(store, "alice", sid, ids[i % len(ids)]).chat_id

    results = race(THREADS, work)
    assert all(isinstance(r, str) for r in results), results

    session = store.sessions.get("alice", sid)
    all_chats = [i for i in table_items(server_table) if i.get("type") == "chat"]
    active = [c["chatId"] for c in all_chats if c["active"]]
    assert len(all_chats) == 5 + THREADS // 4
    assert active == [session.active_chat_id]
    assert session.chat_count == len(all_chats)


def test_seq_has_no_gap_and_no_repeat_under_concurrent_sends(server_table: str, model: Upstream) -> None:
    store = get_store()
    sid = new_session()
    chat = chats.create_chat(store, "alice", sid, CreateChatRequest(name="busy")).chat_id
    llm = get_chat_model()

    results = race(THREADS, lambda i: conversation.send_message(store, llm, "alice", sid, chat, f"message {i}"))
    failures = [r for r in results if isinstance(r, ServiceError)]
    assert failures == []

    stored = sorted(int(m["seq"]) for m in table_items(server_table) if m.get("type") == "message")
    assert stored == list(range(1, 2 * THREADS + 1))
    page = messages.list_messages(store, "alice", sid, chat, 100, None, "asc")
    assert [m.seq for m in page.items] == stored
    assert sorted(m.content for m in page.items if m.role == "user") == sorted(f"message {i}" for i in range(THREADS))
    assert all(m.status == "complete" for m in page.items)
    chat_item = store.chats.get("alice", sid, chat)
    assert chat_item.message_count == 2 * THREADS
    assert store.sessions.get("alice", sid).message_count == 2 * THREADS
    assert model.calls == THREADS


def test_active_session_quota_under_concurrent_creates_and_resumes(
    server_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_ACTIVE_SESSIONS", "5")
    reset_caches()
    store = get_store()
    assert get_settings().max_active_sessions == 5

    created = race(THREADS, lambda i: new_session())
    ok = [r for r in created if isinstance(r, str)]
    refused = [r for r in created if isinstance(r, ServiceError)]
    assert len(ok) == 5
    assert {r.code for r in refused} == {"session_limit_reached"} and len(refused) == THREADS - 5
    assert store.sessions.active_count("alice") == 5

    # Pause all five, then race resumes of the five against five new creates: still five active.
    for sid in ok:
        sessions.pause_session(store, "alice", sid)
    assert store.sessions.active_count("alice") == 0

    def work(i: int) -> str:
        if i < 5:
            return sessions.resume_session(store, "alice", ok[i]).status
        return new_session()

    race(10, work)
    stored = [i for i in table_items(server_table) if i.get("type") == "session"]
    assert len([s for s in stored if s["status"] == "active"]) == 5
    assert store.sessions.active_count("alice") == 5


def test_concurrent_repeats_of_one_idempotency_key_run_once(server_table: str, model: Upstream) -> None:
    store = get_store()
    sid = new_session()
    chat = chats.create_chat(store, "alice", sid, CreateChatRequest(name="c")).chat_id
    llm = get_chat_model()
    request = {"method": "POST", "path": f"/sessions/{sid}/chats/{chat}/messages", "body": {"content": "once"}}

    def work(i: int) -> dict[str, Any]:
        idempotency.register_lambda_context(cast(Any, LambdaContext()))  # as the handler does, in its thread
        return run_once(
            "alice",
            "POST /sessions/{sessionId}/chats/{chatId}/messages",
            "same-key",
            request,
            lambda: {
                "status": 201,
                "body": conversation.send_message(store, llm, "alice", sid, chat, "once").model_dump(mode="json"),
            },
        )

    results = race(10, work)
    answered = [r for r in results if isinstance(r, dict)]
    in_progress = [r for r in results if isinstance(r, ServiceError)]
    assert answered, results
    assert all(r == answered[0] for r in answered)
    assert {e.code for e in in_progress} <= {"conflict"}
    assert model.calls == 1
    assert len([m for m in table_items(server_table) if m.get("type") == "message"]) == 2
