"""DELETE /me over HTTP against the local stack, its table read afterwards.

The stack runs on the tests' moto server (``DYNAMODB_ENDPOINT``, a table of its own:
``table_stack``), so the table can be read once the erasure is over; the stack's stream
emulation invokes the erasure's steps (``erase_user``), and ``stream_drained`` waits for them,
no sleeps.
"""

from __future__ import annotations

import time
from typing import Any

import boto3

from chat_sessions import keys
from tests.integration.conftest import client, error_code, new_user, ok
from tests.support import stream_drained


def owned(user: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    own = keys.user_pk(user)
    return [i for i in items if i["PK"]["S"] == own or i["PK"]["S"].startswith(own + "#")]


def scan(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    items, kwargs = [], {"TableName": table}
    while True:
        page = dynamodb.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_delete_me_erases_everything_of_the_caller_within_a_minute(
    dynamodb_endpoint: str, table_stack: tuple[str, str]
) -> None:
    url, table = table_stack
    dynamodb = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    user, other = new_user("erased"), new_user("kept")
    with client(url, user) as http, client(url, other) as http2:
        for n in range(3):
            sid = ok(http.post("/sessions", json={"name": f"s{n}"}, headers={"Idempotency-Key": f"k{n}"}), 201)[
                "sessionId"
            ]
            chat = ok(http.post(f"/sessions/{sid}/chats", json={"name": "c"}), 201)["chatId"]
            ok(http.post(f"/sessions/{sid}/chats/{chat}/messages", json={"content": "hello"}), 201)
            ok(http.post(f"/sessions/{sid}/chats/{chat}/fork", json={"uptoSeq": 2}), 201)
        ok(http.post(f"/sessions/{sid}/archive"), 200)
        ok(http2.post("/sessions", json={"name": "other's"}), 201)
        stream_drained(url)
        before = scan(dynamodb, table)
        assert len(owned(user, before)) > 20
        kept = sorted((i for i in before if i not in owned(user, before)), key=str)

        started = time.monotonic()
        assert ok(http.delete("/me"), 202) == {"status": "erasing"}
        assert ok(http.delete("/me"), 202) == {"status": "erasing"}  # a repeat: the same answer
        stream_drained(url)
        took = time.monotonic() - started
        assert took < 60, f"the erasure took {took:.1f} s"

        assert owned(user, scan(dynamodb, table)) == []
        after = scan(dynamodb, table)
        assert sorted((i for i in after if i not in owned(user, after)), key=str) == kept
        assert ok(http.get("/sessions"))["items"] == []
        usage = ok(http.get("/me/usage"))
        assert usage["sessions"] == {"active": 0, "paused": 0, "archived": 0}
        assert (usage["chats"], usage["messages"], usage["usage"]["totalTokens"]) == (0, 0, 0)
        assert len(ok(http2.get("/sessions"))["items"]) == 1
        # the user starts again from nothing
        ok(http.post("/sessions", json={"name": "again"}), 201)


def test_a_create_during_the_erasure_is_refused_with_retry_after(table_stack: tuple[str, str]) -> None:
    """The marker is set by DELETE /me itself, before any step runs: a create right after it is
    refused (the steps may or may not have finished by then: both answers are checked)."""
    url, _ = table_stack
    user = new_user("erased")
    with client(url, user) as http:
        ok(http.post("/sessions", json={"name": "s"}), 201)
        ok(http.delete("/me"), 202)
        during = http.post("/sessions", json={"name": "during"})
        if during.status_code == 409:
            assert error_code(during, 409) == "erasure_in_progress"
            assert int(during.headers["Retry-After"]) > 0
        else:  # the erasure ended first: the create came after it, and stays
            ok(during, 201)
        stream_drained(url)
        assert len(ok(http.get("/sessions"))["items"]) == (0 if during.status_code == 409 else 1)
