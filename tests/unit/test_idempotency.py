"""Idempotency-Key on POSTs: one execution, one model call, the first response replayed."""

from __future__ import annotations

from typing import Any

from tests.support import invoke, table_items
from tests.upstream import Upstream


def setup_chat() -> tuple[str, str]:
    sid = str(invoke("create_session", body={"name": "s"}).body["sessionId"])
    chat = str(invoke("create_chat", session=sid, body={"name": "c"}).body["chatId"])
    return sid, chat


def stored_messages(table: str) -> list[dict[str, Any]]:
    return [i for i in table_items(table) if i.get("type") == "message"]


def test_repeated_send_calls_the_model_once(table: str, model: Upstream) -> None:
    sid, chat = setup_chat()
    key = {"Idempotency-Key": "send-1"}
    first = invoke("send_message", session=sid, chat=chat, body={"content": "hi"}, headers=key)
    second = invoke("send_message", session=sid, chat=chat, body={"content": "hi"}, headers=key)
    assert first.status == second.status == 201
    assert first.body == second.body
    assert model.calls == 1
    assert len(stored_messages(table)) == 2


def test_same_key_other_body_is_422(table: str, model: Upstream) -> None:
    sid, chat = setup_chat()
    key = {"Idempotency-Key": "send-2"}
    assert invoke("send_message", session=sid, chat=chat, body={"content": "hi"}, headers=key).status == 201
    reused = invoke("send_message", session=sid, chat=chat, body={"content": "other"}, headers=key)
    assert reused.status == 422 and reused.body["error"]["code"] == "idempotency_key_reused"
    assert model.calls == 1
    assert len(stored_messages(table)) == 2


def test_keys_are_scoped_per_user(table: str) -> None:
    key = {"Idempotency-Key": "create-1"}
    alice = invoke("create_session", user="alice", body={"name": "s"}, headers=key)
    bob = invoke("create_session", user="bob", body={"name": "s"}, headers=key)
    assert alice.status == bob.status == 201
    assert alice.body["sessionId"] != bob.body["sessionId"]
    replay = invoke("create_session", user="alice", body={"name": "s"}, headers=key)
    assert replay.body == alice.body
    assert len([i for i in table_items(table) if i.get("type") == "session"]) == 2


def test_failed_request_can_be_retried_with_the_same_key(table: str, model: Upstream) -> None:
    """A send whose model call failed left its user message stored (``unanswered``); the retry
    with the same key answers that message: no second user message, nothing left unanswered,
    and the model is asked about the message once, not twice."""
    from tests.upstream import Reply

    sid, chat = setup_chat()
    key = {"Idempotency-Key": "retry-after-502"}
    model.script = [Reply(status=500)]
    failed = invoke("send_message", session=sid, chat=chat, body={"content": "hi"}, headers=key)
    assert failed.status == 502
    (left,) = stored_messages(table)
    assert (left["seq"], left["status"]) == (1, "unanswered")
    retried = invoke("send_message", session=sid, chat=chat, body={"content": "hi"}, headers=key)
    assert retried.status == 201
    assert model.calls == 2
    assert retried.body["userMessage"]["messageId"] == left["messageId"]
    assert (retried.body["userMessage"]["seq"], retried.body["assistantMessage"]["seq"]) == (1, 2)
    stored = sorted(stored_messages(table), key=lambda m: int(m["seq"]))
    assert [(m["seq"], m["role"], m["status"]) for m in stored] == [
        (1, "user", "complete"),
        (2, "assistant", "complete"),
    ]
    assert [m["content"] for m in model.received[1]["messages"] if m["role"] == "user"] == ["hi"]


def test_idempotency_records_live_in_the_users_partition_with_a_ttl(table: str) -> None:
    invoke("create_session", user="alice", body={"name": "s"}, headers={"Idempotency-Key": "k"})
    items = [i for i in table_items(table) if str(i["PK"]).endswith("#IDEMPOTENCY")]
    records = [i for i in items if not str(i["SK"]).startswith("KEY#")]
    markers = [i for i in items if str(i["SK"]).startswith("KEY#")]
    assert len(records) == len(markers) == 1
    assert records[0]["PK"] == markers[0]["PK"] == "USER#alice#IDEMPOTENCY"
    assert int(records[0]["expiresAt"]) > 0 and int(markers[0]["expiresAt"]) > 0
    assert records[0]["status"] == "COMPLETED"


def test_other_posts_replay_too(table: str) -> None:
    sid, chat = setup_chat()
    other = str(invoke("create_chat", session=sid, body={"name": "d"}).body["chatId"])
    key = {"Idempotency-Key": "activate-1"}
    first = invoke("activate_chat", session=sid, chat=chat, headers=key)
    invoke("activate_chat", session=sid, chat=other)
    replay = invoke("activate_chat", session=sid, chat=chat, headers=key)
    assert replay.body == first.body
    # The replay did not switch the active chat back.
    assert invoke("get_session", session=sid).body["activeChatId"] == other


def test_a_keyed_chat_create_repeated_after_the_archive_answers_the_chat_it_made(table: str) -> None:
    """Found by the fault tier (tests/faults/test_lifecycle_faults.py): a chat create whose
    answer was lost (its Powertools record gone with it, here deleted) and whose session was
    archived before the client's repeat answered ``409 session_archived``, with the chat stored.
    The repeat answers the chat the key made; a fresh create is refused as before."""
    import boto3

    sid = str(invoke("create_session", body={"name": "s"}).body["sessionId"])
    key = {"Idempotency-Key": "chat-before-archive"}
    made = invoke("create_chat", session=sid, body={"name": "c"}, headers=key)
    assert made.status == 201
    records = [
        i for i in table_items(table) if str(i["PK"]).endswith("#IDEMPOTENCY") and not str(i["SK"]).startswith("KEY#")
    ]
    dynamodb = boto3.resource("dynamodb").Table(table)
    for record in records:
        dynamodb.delete_item(Key={"PK": record["PK"], "SK": record["SK"]})
    assert invoke("archive_session", session=sid).status == 200
    repeat = invoke("create_chat", session=sid, body={"name": "c"}, headers=key)
    assert repeat.status == 201, repeat
    assert repeat.body["chatId"] == made.body["chatId"]
    fresh = invoke("create_chat", session=sid, body={"name": "d"}, headers={"Idempotency-Key": "after-archive"})
    assert (fresh.status, fresh.body["error"]["code"]) == (409, "session_archived")
    assert [i["name"] for i in table_items(table) if i.get("type") == "chat"] == ["c"]
