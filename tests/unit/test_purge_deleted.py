"""The stream consumer finishes a purge that a DELETE request could not."""

from __future__ import annotations

import copy
from typing import Any

import boto3
import purge_deleted

from chat_sessions import keys
from tests.support import LambdaContext, invoke, load_event, table_items


def removal(pk: str, sk: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("purge_deleted"))
    event["Records"][0]["dynamodb"]["Keys"] = {"PK": {"S": pk}, "SK": {"S": sk}}
    return event


def seeded_session(chats: int = 2, messages_each: int = 30) -> tuple[str, list[str]]:
    """A session with chats and messages, written through the service (no model needed)."""
    from chat_sessions.store import get_store

    sid = str(invoke("create_session", body={"name": "s"}).body["sessionId"])
    chat_ids = [str(invoke("create_chat", session=sid, body={"name": f"c{i}"}).body["chatId"]) for i in range(chats)]
    store = get_store()
    for chat in chat_ids:
        for seq in range(1, messages_each + 1):
            key = keys.message_key("alice", sid, chat, seq)
            store.table.client.put_item(TableName=store.table.table_name, Item={**key, "type": "message", "seq": seq})
    return sid, chat_ids


def test_a_session_removed_without_its_purge_is_purged_from_the_stream(table: str) -> None:
    sid, _ = seeded_session()
    other, _ = seeded_session(chats=1, messages_each=3)
    session_key = keys.session_key("alice", sid)
    # The DELETE's first step happened, its purge did not (the request died).
    boto3.client("dynamodb").delete_item(
        TableName=table, Key={"PK": {"S": session_key["PK"]}, "SK": {"S": session_key["SK"]}}
    )
    assert len([i for i in table_items(table) if sid in str(i["PK"])]) == 2 * 2 + 60  # chats, heads, messages

    result = purge_deleted.lambda_handler(removal(session_key["PK"], session_key["SK"]), LambdaContext())
    assert result == {"batchItemFailures": []}
    assert [i for i in table_items(table) if sid in str(i["PK"])] == []
    assert len([i for i in table_items(table) if other in str(i["PK"])]) == 2 + 3
    # A second delivery of the same record finds nothing to do.
    assert purge_deleted.lambda_handler(removal(session_key["PK"], session_key["SK"]), LambdaContext()) == {
        "batchItemFailures": []
    }


def test_a_removed_chat_loses_its_messages_only(table: str) -> None:
    sid, (first, second) = seeded_session()
    chat_key = keys.chat_key("alice", sid, first)
    purge_deleted.lambda_handler(removal(chat_key["PK"], chat_key["SK"]), LambdaContext())
    left = [i for i in table_items(table) if i.get("type") in ("message", "head")]
    assert len(left) == 1 + 30
    assert all(second in str(i["SK"]) for i in left)


def test_removals_that_own_nothing_delete_nothing(table: str) -> None:
    sid, (chat, _) = seeded_session(messages_each=2)
    before = table_items(table)
    for pk, sk in [
        (keys.session_partition("alice", sid), keys.message_sk(chat, 1)),
        (keys.idempotency_pk("alice"), "POST /sessions#abc"),
        (keys.user_pk("alice"), "SESSION#not-an-id"),
    ]:
        assert purge_deleted.lambda_handler(removal(pk, sk), LambdaContext()) == {"batchItemFailures": []}
    assert table_items(table) == before
