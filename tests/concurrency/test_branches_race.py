"""Forks raced against activations, creates, sends and the source's deletion in one session, by
real threads against moto's server mode; the stored state is checked afterwards.

As in :mod:`tests.concurrency.test_invariants`, the threads call the service layer (one
Lambda container never runs two handlers at once).
"""

from __future__ import annotations

from typing import Any

from chat_sessions.errors import NotFound, ServiceError
from chat_sessions.llm import get_chat_model
from chat_sessions.models import CreateChatRequest, ForkChatRequest
from chat_sessions.services import branches, chats, conversation, messages
from chat_sessions.store import get_store
from tests.concurrency.test_invariants import new_session, race
from tests.support import table_items
from tests.upstream import Upstream

THREADS = 16
USER = "alice"


def history(sid: str, chat_id: str) -> list[dict[str, Any]]:
    """Every message of the chat's listing, following cursors (pages of 3 cross the ranges)."""
    store = get_store()
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = messages.list_messages(store, USER, sid, chat_id, 3, cursor, "asc")
        out.extend(m.model_dump(by_alias=True) for m in page.items)
        cursor = page.next_cursor
        if cursor is None:
            return out


def check(server_table: str, sid: str, source: str, original: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The session's invariants after a race; the forks stored."""
    store = get_store()
    items = table_items(server_table)
    session = store.sessions.get(USER, sid)
    stored_chats = [i for i in items if i.get("type") == "chat"]
    # One active chat, the one the session names; the counts agree with the chats stored.
    assert [c["chatId"] for c in stored_chats if c["active"]] == [session.active_chat_id]
    assert session.chat_count == len(stored_chats)
    assert session.message_count == sum(int(c["messageCount"]) for c in stored_chats)
    for chat in stored_chats:
        listed = history(sid, chat["chatId"])
        assert [m["seq"] for m in listed] == list(range(1, len(listed) + 1)), chat["chatId"]
        own = sorted(int(m["seq"]) for m in items if m.get("type") == "message" and m["chatId"] == chat["chatId"])
        assert own == list(range(own[0], own[0] + len(own))) if own else True, "a gap in a chat's own range"
        if chat.get("forkedFrom"):
            upto = int(chat["forkedFrom"]["seq"])
            assert listed[:upto] == [{**m, "chatId": chat["chatId"]} for m in original[:upto]], chat["chatId"]
    return [c for c in stored_chats if c.get("forkedFrom")]


def allowed(results: list[Any], *kinds: type[ServiceError]) -> None:
    for result in results:
        assert not isinstance(result, ServiceError) or isinstance(result, kinds), result


def test_forks_against_activations_creates_sends_and_the_source_deletion(server_table: str, model: Upstream) -> None:
    """Round one: forks of the source at each seq raced with activations, creates and sends to
    the active chat (which may be a fork made a moment before). Round two: forks raced with the
    source's deletion: every fork that was made keeps its history, the source's messages it
    shares stay, the deleted source answers 404."""
    store = get_store()
    sid = new_session()
    source = chats.create_chat(store, USER, sid, CreateChatRequest(name="source")).chat_id
    for text in ("one", "two"):
        conversation.send_message(store, get_chat_model(), USER, sid, source, text)
    other = chats.create_chat(store, USER, sid, CreateChatRequest(name="other")).chat_id
    original = history(sid, source)
    assert [m["seq"] for m in original] == [1, 2, 3, 4]

    def round_one(i: int) -> Any:
        kind = i % 4
        if kind == 0:
            return branches.fork_chat(store, USER, sid, source, ForkChatRequest.model_validate({"uptoSeq": i // 4 + 1}))
        if kind == 1:
            return chats.activate_chat(store, USER, sid, source if i % 8 == 1 else other)
        if kind == 2:
            return conversation.send_message(store, get_chat_model(), USER, sid, None, f"raced {i}")
        return chats.create_chat(store, USER, sid, CreateChatRequest(name=f"new {i}"))

    results = race(THREADS, round_one)
    allowed(results)
    forks = check(server_table, sid, source, original)
    assert sorted(int(c["forkedFrom"]["seq"]) for c in forks) == [1, 2, 3, 4]
    original = history(sid, source)  # sends may have landed in the source meanwhile

    def round_two(i: int) -> Any:
        if i == 0:
            return chats.delete_chat(store, USER, sid, source)
        if i % 2:
            return branches.fork_chat(store, USER, sid, source, ForkChatRequest.model_validate({"uptoSeq": i % 5}))
        return conversation.send_message(store, get_chat_model(), USER, sid, None, f"raced {i}")

    results = race(THREADS // 2, round_two)
    allowed(results, NotFound)  # a fork or send that lost its race with the deletion
    assert results[0] is None, "the deletion went through"
    forks = check(server_table, sid, source, original)
    items = table_items(server_table)
    assert all(c["chatId"] != source for c in items if c.get("type") == "chat")
    kept = sorted(int(m["seq"]) for m in items if m.get("type") == "message" and m["chatId"] == source)
    shared = [int(c["forkedFrom"]["seq"]) for c in forks if c["forkedFrom"]["chatId"] == source]
    assert kept == list(range(1, max(shared) + 1))
    assert messages.list_messages(store, USER, sid, forks[0]["chatId"], 100, None, "asc").items
    try:
        messages.list_messages(store, USER, sid, source, 10, None, "asc")
    except NotFound:
        pass
    else:
        raise AssertionError("the deleted source is listed")
