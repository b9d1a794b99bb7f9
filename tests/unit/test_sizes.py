"""The largest valid request and the longest reply the model may return, stored and replayed
without meeting DynamoDB's 400 KB item limit (issue 8, defect 11)."""

from __future__ import annotations

import json

from benchmarks.capacity import ITEM_LIMIT, item_size
from chat_sessions.config import get_settings
from chat_sessions.models import MAX_CONTENT
from tests.support import invoke, table_items
from tests.upstream import Reply, Upstream

EMOJI = "\U0001f600"  # 4 bytes of UTF-8; a JSON encoder escapes it to 12 bytes


def test_the_largest_exchange_is_stored_and_replayed_under_the_item_limit(table: str, model: Upstream) -> None:
    """32,000 emoji (a 384 KB body once escaped) answered by a reply of the longest size the
    service stores, under an Idempotency-Key: 201, every item (messages and the idempotency
    record) under 400 KB, and the repeat answers the same exchange."""
    sid = invoke("create_session", body={"name": "s"}).body["sessionId"]
    chat = invoke("create_chat", session=sid, body={"name": "c"}).body["chatId"]
    content = EMOJI * MAX_CONTENT
    body = json.dumps({"content": content})  # ensure_ascii: every emoji escaped
    assert len(body) > 380_000
    longest = EMOJI * (get_settings().max_reply_bytes // len(EMOJI.encode()))
    model.default = Reply(content=longest)
    key = {"Idempotency-Key": "largest", "Content-Type": "application/json"}

    first = invoke("send_message", session=sid, chat=chat, raw_body=body, headers=key)
    assert first.status == 201, first.body
    assert first.body["userMessage"]["content"] == content
    assert first.body["assistantMessage"]["content"] == longest

    sizes = {f"{i['SK']['S'][:40]}": item_size(i) for i in table_items(table, raw=True)}
    assert max(sizes.values()) < ITEM_LIMIT, sizes
    records = [size for sk, size in sizes.items() if sk.startswith("POST ")]
    assert len(records) == 1 and records[0] < 1024, sizes  # the record points at the messages

    again = invoke("send_message", session=sid, chat=chat, raw_body=body, headers=key)
    assert again.status == 201 and again.body == first.body
    assert model.calls == 1
