"""Sessions removed by TTL, their stream records delivered many times at once (Lambda's retries and
the stream's at-least-once delivery racing each other) while sends move the same counters item,
against moto's server mode: afterwards each removal was counted exactly once and every counter
equals what the table holds."""

from __future__ import annotations

import time
from typing import Any

from chat_sessions import keys, usage
from chat_sessions.items import SessionItem
from chat_sessions.llm import get_chat_model
from chat_sessions.models import CreateChatRequest
from chat_sessions.services import chats, cleanup, conversation
from chat_sessions.store import get_store
from chat_sessions.store.outcomes import Collision
from chat_sessions.store.table import plain
from tests.concurrency.test_invariants import new_session, race
from tests.support import table_items
from tests.upstream import Reply, Upstream

THREADS = 16


def test_ttl_removals_delivered_at_once_are_counted_once(server_table: str, model: Upstream) -> None:
    model.default = Reply(content="ok", prompt_tokens=3, completion_tokens=2)
    store = get_store()
    llm = get_chat_model()
    sids = [new_session() for _ in range(3)]
    for sid in sids:
        chats.create_chat(store, "alice", sid, CreateChatRequest(name="c"))
        conversation.send_message(store, llm, "alice", sid, None, "hello")
    live = sids[2]
    removed: list[tuple[str, str, dict[str, Any]]] = []
    for sid in sids[:2]:  # DynamoDB's TTL deletes the items: no counter moves
        key = keys.session_key("alice", sid)
        old = store.table.call("delete_item", TableName=server_table, Key=dict(key), ReturnValues="ALL_OLD")
        removed.append((key["PK"], key["SK"], plain(old["Attributes"])))

    def deliver(i: int) -> object:
        if i % 4 == 3:
            return conversation.send_message(store, llm, "alice", live, None, f"m{i}")
        pk, sk, image = removed[i % 2]
        while True:  # a collision fails the record, and Lambda delivers it again
            try:
                return cleanup.count_expired(store, pk, sk, image, time.time())
            except Collision:
                continue

    results = race(THREADS, deliver)
    counted = [r for r in results if isinstance(r, bool)]
    assert counted.count(True) == 2, results  # one delivery of each removal counted it

    items = table_items(server_table)
    sessions_left = [SessionItem.from_item(plain(i)) for i in items if i.get("type") == "session"]
    assert [s.session_id for s in sessions_left] == [live]
    receipts = sorted(str(i["sessionId"]) for i in items if i.get("type") == "expired")
    assert receipts == sorted(sids[:2])
    counters = store.sessions.counters("alice")
    assert counters[usage.STATUS_COUNTERS["active"]] == 1
    assert counters["chats"] == sum(s.chat_count for s in sessions_left)
    assert counters["messages"] == sum(s.message_count for s in sessions_left)
