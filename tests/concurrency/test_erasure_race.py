"""DELETE /me raced by creates and sends from real threads against moto's server mode, with
the stored items checked afterwards.

What "nothing left" means under a race: once the erasure's last step began, anything of the
user's still stored must come from a create answered after that instant (creates are refused
while the marker exists, so a session still stored was created once the marker was gone), with
its counters exact; every session the user had before, or created while the erasure ran, is
gone with everything in it, and no item is left in a partition whose session is gone.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from chat_sessions import keys
from chat_sessions.errors import ErasureInProgress, NotFound, ServiceError, SessionLimitReached
from chat_sessions.llm import get_chat_model
from chat_sessions.models import CreateChatRequest, CreateSessionRequest
from chat_sessions.services import chats, conversation, erasure, sessions
from chat_sessions.store import get_store
from tests.support import table_items
from tests.upstream import Reply, Upstream


def items_of(table: str, user: str) -> list[dict[str, Any]]:
    own = keys.user_pk(user)
    return [i for i in table_items(table) if str(i["PK"]) == own or str(i["PK"]).startswith(own + "#")]


def test_erasure_raced_by_creates_and_sends(server_table: str, model: Upstream) -> None:
    model.default = Reply(content="ok", prompt_tokens=1, completion_tokens=1)
    store = get_store()
    llm = get_chat_model()
    before = [sessions.create_session(store, "alice", CreateSessionRequest(name=f"s{n}")).session_id for n in range(3)]
    for sid in before:
        chat = chats.create_chat(store, "alice", sid, CreateChatRequest(name="c")).chat_id
        for n in range(3):
            conversation.send_message(store, llm, "alice", sid, chat, f"m{n}")
    sessions.create_session(store, "bob", CreateSessionRequest(name="bob's"))
    bob = [i for i in table_items(server_table) if not str(i["PK"]).startswith(keys.user_pk("alice"))]

    erasure.start_erasure(store, "alice")
    last_step_began: list[float] = []
    created: list[tuple[str, float]] = []  # (session id, when the 201 came back)
    created_after = threading.Event()
    stop = threading.Event()
    unexpected: list[BaseException] = []
    refused: list[ErasureInProgress] = []

    def eraser() -> None:
        while True:
            began = time.monotonic()
            if erasure.erase_step(store, "alice", items=4).done:
                last_step_began.append(began)
                return

    def creator() -> None:
        while not stop.is_set():
            try:
                sid = sessions.create_session(store, "alice", CreateSessionRequest(name="racer")).session_id
            except ErasureInProgress as exc:
                refused.append(exc)
                continue
            except SessionLimitReached:
                continue
            except Exception as exc:
                unexpected.append(exc)
                return
            created.append((sid, time.monotonic()))
            if last_step_began:
                created_after.set()
            try:
                chat = chats.create_chat(store, "alice", sid, CreateChatRequest(name="c")).chat_id
                conversation.send_message(store, llm, "alice", sid, chat, "after")
            except ServiceError as exc:  # erased under it: 404; anything else is unexpected
                if not isinstance(exc, NotFound):
                    unexpected.append(exc)

    def sender() -> None:
        while not stop.is_set():
            for sid in before:
                try:
                    conversation.send_message(store, llm, "alice", sid, None, "during")
                except ServiceError as exc:
                    if exc.status not in (404, 409):
                        unexpected.append(exc)

    racers = [threading.Thread(target=creator) for _ in range(2)] + [threading.Thread(target=sender)]
    for t in racers:
        t.start()
    erase = threading.Thread(target=eraser)
    erase.start()
    erase.join(timeout=120)
    assert last_step_began, "the erasure did not finish"
    assert created_after.wait(timeout=60), "no create was accepted after the erasure"
    stop.set()
    for t in racers:
        t.join(timeout=60)
    assert unexpected == []
    assert refused, "no create raced the erasure"

    left = items_of(server_table, "alice")
    left_sessions = {str(i["SK"])[len(keys.SESSION_PREFIX) :] for i in left if str(i["SK"]).startswith("SESSION#")}
    answered_at = dict(created)
    assert left_sessions, "the creates after the erasure left nothing"
    assert not left_sessions & set(before)
    for sid in left_sessions:
        assert answered_at[sid] > last_step_began[0], "a session created before the last step survived it"
    for sid, at in created:
        if at < last_step_began[0]:
            assert sid not in left_sessions
    for item in left:
        pk = str(item["PK"])
        if "#SESSION#" in pk:
            assert pk.rsplit("#SESSION#", 1)[1] in left_sessions, f"left in an erased session: {item}"
        elif pk == keys.user_pk("alice") and item["SK"] == keys.QUOTA_SK:
            assert keys.ERASING_SINCE not in item
            assert item["activeSessions"] == len(left_sessions)
            assert item.get("chats", 0) == len([i for i in left if i.get("type") == "chat"])
            assert item.get("messages", 0) == sum(int(i["messageCount"]) for i in left if i.get("type") == "session")
        else:
            assert pk == keys.idempotency_pk("alice") or str(item["SK"]).startswith("SESSION#"), item
    listed = sessions.list_sessions(store, "alice", 100, None)
    assert {s.session_id for s in listed.items} == left_sessions
    assert [i for i in table_items(server_table) if not str(i["PK"]).startswith(keys.user_pk("alice"))] == bob
