"""The stream consumers run in the local stack (local_stack/streams.py): a session whose item was
removed without its purge (a DELETE that died after its first step) is purged by
PurgeDeletedFunction, invoked from the table's stream, as deployed. Read in the table itself:
the stack runs on the tests' moto server (``DYNAMODB_ENDPOINT``, ``table_stack``), which this
test also reads."""

from __future__ import annotations

from typing import Any

import boto3

from chat_sessions import keys
from tests.integration.conftest import client, new_user, ok
from tests.support import stream_drained


def partition_items(dynamodb: Any, table: str, pk: str) -> list[dict[str, Any]]:
    page = dynamodb.query(
        TableName=table, KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": pk}}
    )
    return list(page["Items"])


def purger(state: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in state["consumers"] if c["function"] == "PurgeDeletedFunction")
    return found


def test_a_removed_session_is_purged_by_the_stream_consumer(
    dynamodb_endpoint: str, table_stack: tuple[str, str]
) -> None:
    url, table = table_stack
    dynamodb = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    user = new_user("purge")
    with client(url, user) as http:
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
        before = purger(stream_drained(url))  # the stack is shared: what its purger did so far
        # The DELETE's first step, without the rest (its request died): only the session item goes.
        session_key = keys.session_key(user, sid)
        dynamodb.delete_item(TableName=table, Key={k: {"S": v} for k, v in session_key.items()})

        purge = purger(stream_drained(url))

        assert partition_items(dynamodb, table, partition) == []  # purged from the stream
        assert len(partition_items(dynamodb, table, keys.session_partition(user, kept))) == 4
        assert purge["invocations"] > before["invocations"] and purge["deadLettered"] == before["deadLettered"] == 0
        assert ok(http.get("/sessions"))["items"][0]["sessionId"] == kept
