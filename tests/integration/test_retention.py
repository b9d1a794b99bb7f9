"""Retention end to end over HTTP (local stack): RETENTION_DAYS of a few seconds, the local TTL
emulation (local_stack/ttl.py) deleting the expired session item, the stream delivering the
removal (marked as DynamoDB's own) to PurgeDeletedFunction, which purges the session's partition
and takes the session off the user's counters once. Read in the table itself: the stack runs on
the tests' moto server (``DYNAMODB_ENDPOINT``), which this test also reads."""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

import boto3

from chat_sessions import keys, retention
from tests.integration.conftest import client, local_stack, new_user, ok
from tests.support import stream_drained

RETENTION_DAYS = "0.0001"  # 8.64 s: time enough for the writes below, short enough to wait for
WAIT_S = 180.0  # the bound on a busy machine (the wait is polled, never slept through)


def partition(dynamodb: Any, table: str, pk: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "PK = :pk",
        "ExpressionAttributeValues": {":pk": {"S": pk}},
        "ConsistentRead": True,
    }
    while True:
        page = dynamodb.query(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_a_session_without_writes_for_its_retention_is_removed_with_everything_in_it(dynamodb_endpoint: str) -> None:
    table = f"chat-sessions-retention-{uuid.uuid4().hex[:8]}"
    dynamodb = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    user = new_user("retain")
    env = {"DYNAMODB_ENDPOINT": dynamodb_endpoint, "TABLE_NAME": table, "RETENTION_DAYS": RETENTION_DAYS}
    with local_stack(**env) as url, client(url, user) as http:
        # Cold workers first (their start is not what is tested): every function used below runs once.
        warm = ok(http.post("/sessions", json={"name": "warm-up"}), 201)["sessionId"]
        warm_chat = ok(http.post(f"/sessions/{warm}/chats", json={"name": "c"}), 201)["chatId"]
        ok(http.post(f"/sessions/{warm}/chats/{warm_chat}/messages", json={"content": "hi"}), 201)
        ok(http.post(f"/sessions/{warm}/archive"), 200)
        ok(http.delete(f"/sessions/{warm}"), 204)

        # Archived with ARCHIVED_RETENTION_DAYS unset (0): kept, whatever RETENTION_DAYS says.
        kept = ok(http.post("/sessions", json={"name": "kept"}), 201)["sessionId"]
        kept_chat = ok(http.post(f"/sessions/{kept}/chats", json={"name": "c"}), 201)["chatId"]
        ok(http.post(f"/sessions/{kept}/chats/{kept_chat}/messages", json={"content": "keep me"}), 201)
        assert ok(http.post(f"/sessions/{kept}/archive"))["expiresAt"] is None

        created = ok(http.post("/sessions", json={"name": "goes"}), 201)
        sid = created["sessionId"]
        chats = [ok(http.post(f"/sessions/{sid}/chats", json={"name": f"c{i}"}), 201)["chatId"] for i in range(2)]
        sent = ok(http.post(f"/sessions/{sid}/chats/{chats[1]}/messages", json={"content": "hello"}), 201)
        ok(http.post(f"/sessions/{sid}/chats/{chats[1]}/messages", json={"content": "again"}), 201)
        session = ok(http.get(f"/sessions/{sid}"))
        # Renewed by the last write (the reply): its time plus the retention, rounded up.
        last_write = retention.epoch_of(session["updatedAt"])
        assert retention.epoch_of(session["expiresAt"]) == math.ceil(last_write + float(RETENTION_DAYS) * 86400)
        assert sent["userMessage"]["seq"] == 1
        usage = ok(http.get("/me/usage"))
        assert (usage["sessions"], usage["chats"], usage["messages"]) == (
            {"active": 1, "paused": 0, "archived": 1},
            3,
            6,
        )

        deadline = time.monotonic() + WAIT_S
        while http.get(f"/sessions/{sid}").status_code != 404:
            assert time.monotonic() < deadline, "the expired session was not removed"
            time.sleep(0.2)
        removed_at = time.time()
        stream_drained(url)
        # Its domain event says DynamoDB's TTL removed it (the local TTL's userIdentity), once.
        published = ok(http.get("/local/events"))["events"]
        removals = [e for e in published if e["detail-type"] == "session.deleted" and e["detail"]["sessionId"] == sid]
        assert [e["detail"]["reason"] for e in removals] == ["expired"]

        # Nothing of the session is left; the user's partition holds the archived session, the
        # counters and the removal's receipt.
        assert partition(dynamodb, table, keys.session_partition(user, sid)) == []
        user_items = {item["SK"]["S"]: item for item in partition(dynamodb, table, keys.user_pk(user))}
        assert set(user_items) == {keys.QUOTA_SK, f"SESSION#{kept}", f"{keys.EXPIRED_PREFIX}{sid}"}
        assert len(partition(dynamodb, table, keys.session_partition(user, kept))) == 4  # chat, head, 2 messages
        assert removed_at >= retention.epoch_of(session["expiresAt"])  # never before its time
        usage = ok(http.get("/me/usage"))
        assert (usage["sessions"], usage["chats"], usage["messages"]) == (
            {"active": 0, "paused": 0, "archived": 1},
            1,
            2,
        )
        assert usage["usage"]["totalTokens"] > 0  # tokens used stay used
        assert [s["sessionId"] for s in ok(http.get("/sessions", params={"status": "archived"}))["items"]] == [kept]
        assert ok(http.get("/sessions"))["items"] == []
