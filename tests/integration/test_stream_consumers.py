"""The stream consumers run in the local stack (local_stack/streams.py): a session whose item was
removed without its purge (a DELETE that died after its first step) is purged by
PurgeDeletedFunction, invoked from the table's stream, as deployed. Read in the table itself:
the stack runs on the tests' moto server (``DYNAMODB_ENDPOINT``), which this test also reads."""

from __future__ import annotations

import uuid
from typing import Any

import boto3

from chat_sessions import keys
from tests.integration.conftest import client, local_stack, new_user, ok
from tests.support import stream_drained


def partition_items(dynamodb: Any, table: str, pk: str) -> list[dict[str, Any]]:
    page = dynamodb.query(
        TableName=table, KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": pk}}
    )
    return list(page["Items"])


def test_a_removed_session_is_purged_by_the_stream_consumer(dynamodb_endpoint: str) -> None:
    table = f"chat-sessions-stream-{uuid.uuid4().hex[:8]}"
    dynamodb = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    user = new_user("purge")
    with local_stack(DYNAMODB_ENDPOINT=dynamodb_endpoint, TABLE_NAME=table) as url, client(url, user) as http:
        assert dynamodb.describe_table(TableName=table)["Table"]["StreamSpecification"] == {
            "StreamEnabled": True,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        sid = ok(http.post("/sessions", json={"name": "left behind"}), 201)["sessionId"]
        kept = ok(http.post("/sessions", json={"name": "kept"}), 201)["sessionId"]
        for session_id in (sid, kept):
            cid = ok(http.post(f"/sessions/{session_id}/chats", json={"name": "c"}), 201)["chatId"]
            ok(http.post(f"/sessions/{session_id}/chats/{cid}/messages", json={"content": "hello"}), 201)
        partition = keys.session_partition(user, sid)
        assert len(partition_items(dynamodb, table, partition)) == 4  # chat, head, question, answer
        # The DELETE's first step, without the rest (its request died): only the session item goes.
        session_key = keys.session_key(user, sid)
        dynamodb.delete_item(TableName=table, Key={k: {"S": v} for k, v in session_key.items()})

        state = stream_drained(url)

        assert partition_items(dynamodb, table, partition) == []  # purged from the stream
        assert len(partition_items(dynamodb, table, keys.session_partition(user, kept))) == 4
        purge = next(c for c in state["consumers"] if c["function"] == "PurgeDeletedFunction")
        assert purge["invocations"] >= 1 and purge["deadLettered"] == 0
        assert ok(http.get("/sessions"))["items"][0]["sessionId"] == kept
