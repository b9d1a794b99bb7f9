"""Retention (RETENTION_DAYS, ARCHIVED_RETENTION_DAYS): ``expiresAt`` kept current by the writes
that touch the session item, and sessions removed by TTL taken off the user's counters by the
stream consumer exactly once. Real handlers and store, on moto."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from typing import Any

import boto3
import purge_deleted
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from chat_sessions import keys, retention
from chat_sessions.config import get_settings
from chat_sessions.ids import new_id
from chat_sessions.items import MessageItem
from chat_sessions.services.cleanup import RECEIPT_SECONDS, TTL_PRINCIPAL
from chat_sessions.store import get_store
from tests.support import LambdaContext, invoke, load_event, reset_caches, table_items
from tests.upstream import Reply, Upstream

DAY = 86400
TTL_IDENTITY = {"type": "Service", "principalId": TTL_PRINCIPAL}


@pytest.fixture
def retain(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RETENTION_DAYS", "2")
    monkeypatch.setenv("ARCHIVED_RETENTION_DAYS", "10.5")
    reset_caches()
    yield
    reset_caches()


def stored_session(sid: str, user: str = "alice") -> dict[str, Any]:
    item = get_store().table.get(keys.session_key(user, sid))
    assert item is not None
    return item


def due(timestamp: str, days: float) -> int:
    return math.ceil(retention.epoch_of(timestamp) + days * DAY)


def new_session(user: str = "alice") -> dict[str, Any]:
    created = invoke("create_session", user=user, body={"name": "s"})
    assert created.status == 201, created
    body: dict[str, Any] = created.body
    return body


def new_chat(sid: str, user: str = "alice") -> str:
    created = invoke("create_chat", user=user, session=sid, body={"name": "c", "model": "test-model"})
    assert created.status == 201, created
    return str(created.body["chatId"])


def me(user: str = "alice") -> dict[str, Any]:
    body: dict[str, Any] = invoke("get_usage", user=user).body
    return body


def test_every_write_to_a_session_renews_its_expiry(table: str, model: Upstream, retain: None) -> None:
    created = new_session()
    sid = created["sessionId"]
    expires = due(created["createdAt"], 2)
    assert created["expiresAt"] == retention.iso(expires)
    assert stored_session(sid)["expiresAt"] == expires
    assert invoke("get_session", session=sid).body["expiresAt"] == retention.iso(expires)

    writes: list[tuple[str, dict[str, Any]]] = [
        ("update_session", {"body": {"name": "renamed"}}),
        ("create_chat", {"body": {"name": "c"}}),
        ("pause_session", {}),
        ("resume_session", {}),
    ]
    for operation, args in writes:
        before = stored_session(sid)["expiresAt"]
        assert invoke(operation, session=sid, **args).status in (200, 201)
        after = stored_session(sid)
        assert after["expiresAt"] == due(after["updatedAt"], 2) and after["expiresAt"] >= before, operation
    chat = stored_session(sid)["activeChatId"]

    # A chat's PATCH touches the session with its condition: the expiry moves with it.
    renamed = invoke("update_chat", session=sid, chat=chat, body={"name": "other"})
    assert stored_session(sid)["expiresAt"] == due(renamed.body["updatedAt"], 2)

    # A send: the user message's transaction and the reply's both renew it.
    sent = invoke("send_message", session=sid, chat=chat, body={"content": "hi"})
    assert sent.status == 201
    assert stored_session(sid)["expiresAt"] == due(sent.body["assistantMessage"]["createdAt"], 2)

    archived = invoke("archive_session", session=sid).body
    assert archived["expiresAt"] == retention.iso(due(archived["updatedAt"], 10.5))
    assert stored_session(sid)["expiresAt"] == due(archived["updatedAt"], 10.5)
    unarchived = invoke("unarchive_session", session=sid).body
    assert stored_session(sid)["expiresAt"] == due(unarchived["updatedAt"], 2)
    assert invoke("get_session", session=sid).body == unarchived


def test_the_user_message_alone_renews_the_expiry(table: str, retain: None) -> None:
    """The send's first transaction (the user message) renews the session with the condition it
    always had: one item, the same requests."""
    sid = new_session()["sessionId"]
    chat = new_chat(sid)
    store = get_store()
    later = "2031-01-02T03:04:05.678Z"
    message = MessageItem(
        message_id=new_id(),
        chat_id=chat,
        session_id=sid,
        seq=1,
        role="user",
        content="hi",
        status="unanswered",
        tokens=1,
        created_at=later,
    )
    store.messages.append_user("alice", message)
    assert stored_session(sid)["expiresAt"] == due(later, 2)


def test_no_retention_stores_no_expiry_and_removes_one_left_from_before(
    table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_DAYS", "0.5")
    reset_caches()
    created = new_session()
    sid = created["sessionId"]
    assert stored_session(sid)["expiresAt"] == due(created["createdAt"], 0.5)  # decimals: half a day

    monkeypatch.setenv("RETENTION_DAYS", "0")
    reset_caches()
    assert invoke("update_session", session=sid, body={"name": "kept"}).body["expiresAt"] is None
    assert "expiresAt" not in stored_session(sid)
    assert new_session()["expiresAt"] is None
    # Archived with ARCHIVED_RETENTION_DAYS unset (0): kept too.
    assert invoke("archive_session", session=sid).body["expiresAt"] is None
    assert "expiresAt" not in stored_session(sid)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "ten"])
def test_a_bad_retention_fails_the_cold_start(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ARCHIVED_RETENTION_DAYS", value)
    reset_caches()
    try:
        with pytest.raises(ValueError):
            get_settings()
    finally:
        monkeypatch.delenv("ARCHIVED_RETENTION_DAYS")
        reset_caches()


def test_a_session_past_its_expiry_is_a_session_until_removed(table: str, model: Upstream, retain: None) -> None:
    """DynamoDB removes expired items late (up to two days): until then the session reads, lists
    and counts like any other, its ``expiresAt`` in the past; a write renews it, and DynamoDB's
    removal (conditioned on the attribute still being past) then skips it."""
    sid = new_session()["sessionId"]
    chat = new_chat(sid)
    store = get_store()
    store.table.update(
        keys.session_key("alice", sid),
        UpdateExpression="SET expiresAt = :past",
        ExpressionAttributeValues={":past": 1_000_000_000},
    )
    past = retention.iso(1_000_000_000)
    assert invoke("get_session", session=sid).body["expiresAt"] == past
    assert [s["expiresAt"] for s in invoke("list_sessions").body["items"]] == [past]
    assert me()["sessions"]["active"] == 1
    sent = invoke("send_message", session=sid, chat=chat, body={"content": "still here"})
    assert sent.status == 201
    assert invoke("get_session", session=sid).body["expiresAt"] == retention.iso(
        due(sent.body["assistantMessage"]["createdAt"], 2)
    )


# ---------------------------------------------------------------------------------------------
# The stream consumer: TTL removals of sessions leave the user's counters exactly once.


def removal_record(table: str, key: keys.Key, identity: dict[str, str] | None, image: bool = True) -> dict[str, Any]:
    """Delete the item as DynamoDB's TTL would and return the stream event it makes (keys, old
    image, and DynamoDB's own identity when ``identity`` says so)."""
    client = boto3.client("dynamodb")
    wire_key = {"PK": {"S": key["PK"]}, "SK": {"S": key["SK"]}}
    old = client.delete_item(TableName=table, Key=wire_key, ReturnValues="ALL_OLD").get("Attributes")
    event = copy.deepcopy(load_event("purge_deleted"))
    record = event["Records"][0]
    record["dynamodb"]["Keys"] = wire_key
    record["dynamodb"]["StreamViewType"] = "NEW_AND_OLD_IMAGES"
    if image and old is not None:
        record["dynamodb"]["OldImage"] = old
    if identity is not None:
        record["userIdentity"] = identity
    return event


def deliver(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = purge_deleted.lambda_handler(copy.deepcopy(event), LambdaContext())
    return result


def seeded(model: Upstream, status: str = "active", exchanges: int = 2) -> str:
    model.default = Reply(content="ok", prompt_tokens=3, completion_tokens=2)
    sid = str(new_session()["sessionId"])
    for _ in range(2):
        chat = new_chat(sid)
    for n in range(exchanges):
        assert invoke("send_message", session=sid, chat=chat, body={"content": f"m{n}"}).status == 201
    if status == "paused":
        invoke("pause_session", session=sid)
    elif status == "archived":
        invoke("archive_session", session=sid)
    return sid


@pytest.mark.parametrize("status", ["active", "paused", "archived"])
def test_a_session_removed_by_ttl_leaves_the_counters_once_however_often_its_record_comes(
    table: str, model: Upstream, status: str
) -> None:
    kept = seeded(model, "paused", exchanges=1)
    sid = seeded(model, status)
    before = me()
    event = removal_record(table, keys.session_key("alice", sid), TTL_IDENTITY)
    for _ in range(3):  # Lambda's retries of the record (and the stream's at-least-once delivery)
        assert deliver(event) == {"batchItemFailures": []}
        after = me()
        assert after["sessions"] == {**before["sessions"], status: before["sessions"][status] - 1}
        assert (after["chats"], after["messages"]) == (before["chats"] - 2, before["messages"] - 4)
        assert after["usage"] == before["usage"]  # tokens used stay used
    assert [i for i in table_items(table) if sid in str(i["PK"])] == []  # purged
    receipt = [i for i in table_items(table) if str(i["SK"]).startswith(keys.EXPIRED_PREFIX)]
    assert [(r["type"], r["sessionId"]) for r in receipt] == [("expired", sid)]
    # It outlives every redelivery (stream records live 24 hours), then expires itself.
    assert time.time() + DAY < receipt[0]["expiresAt"] <= time.time() + RECEIPT_SECONDS
    # The other session is untouched.
    assert invoke("get_session", session=kept).body["messageCount"] == 2


def test_a_deleted_session_is_not_counted_again_by_its_stream_record(table: str, model: Upstream) -> None:
    """A DELETE moved the counters in its own transaction; its record (no TTL identity) only purges."""
    sid = seeded(model)
    record = copy.deepcopy(load_event("purge_deleted"))
    session_key = keys.session_key("alice", sid)
    record["Records"][0]["dynamodb"]["Keys"] = {"PK": {"S": session_key["PK"]}, "SK": {"S": session_key["SK"]}}
    assert invoke("delete_session", session=sid).status == 204
    after_delete = me()
    assert deliver(record) == {"batchItemFailures": []}
    assert me() == after_delete
    assert after_delete["sessions"]["active"] == 0 and (after_delete["chats"], after_delete["messages"]) == (0, 0)


def test_ttl_removals_of_other_items_count_nothing(table: str, model: Upstream) -> None:
    sid = seeded(model)
    before = me()
    chat = stored_session(sid)["activeChatId"]
    # A chat removed by TTL (chats carry no expiresAt, but the consumer must not count one).
    event = removal_record(table, keys.chat_key("alice", sid, chat), TTL_IDENTITY)
    assert deliver(event) == {"batchItemFailures": []}
    assert me() == before


def test_a_ttl_removal_without_the_old_image_is_retried_not_guessed(table: str, model: Upstream) -> None:
    sid = seeded(model)
    before = me()
    event = removal_record(table, keys.session_key("alice", sid), TTL_IDENTITY, image=False)
    with pytest.raises(BatchProcessingError, match="no old image"):  # the batch's only record failed: retried
        deliver(event)
    assert me() == before
    assert len([i for i in table_items(table) if sid in str(i["PK"])]) > 0  # nothing purged either
