"""The WebSocket API's handlers (moto): connections and subscriptions as items of the table, the
subscribe check on the caller's own chat key, ``$disconnect`` cleaning up, and the stream
consumer's ``message`` frames posted through the management API (moto's), gone connections
forgotten."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote

import boto3
import push_messages
import pytest
import ws_connect
import ws_disconnect
import ws_subscribe

from chat_sessions import keys, push
from chat_sessions.services.subscriptions import CONNECTION_TTL_SECONDS
from tests.support import LambdaContext, invoke, load_event, table_items

ENDPOINT = "https://abc123def4.execute-api.us-east-1.amazonaws.com/live"


def ws_event(module: str, connection: str, user: str = "alice", body: Any = None) -> dict[str, Any]:
    event = copy.deepcopy(load_event(module))
    event["requestContext"]["connectionId"] = connection
    event["requestContext"]["authorizer"].update({"userId": user, "principalId": user})
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def connect(connection: str, user: str = "alice") -> None:
    assert ws_connect.lambda_handler(ws_event("ws_connect", connection, user), LambdaContext()) == {"statusCode": 200}


def subscribe(connection: str, session: str, chat: str, user: str = "alice") -> dict[str, Any]:
    body = {"action": "subscribe", "sessionId": session, "chatId": chat}
    result = ws_subscribe.lambda_handler(ws_event("ws_subscribe", connection, user, body), LambdaContext())
    assert result["statusCode"] == 200
    frame: dict[str, Any] = json.loads(result["body"])
    return frame


def disconnect(connection: str, user: str = "alice") -> None:
    result = ws_disconnect.lambda_handler(ws_event("ws_disconnect", connection, user), LambdaContext())
    assert result == {"statusCode": 200}


def chat_of(user: str) -> tuple[str, str]:
    sid = invoke("create_session", user=user, body={"name": "s"}).body["sessionId"]
    cid = invoke("create_chat", user=user, session=sid, body={"name": "c"}).body["chatId"]
    return str(sid), str(cid)


def ws_items(table: str) -> list[dict[str, Any]]:
    return [i for i in table_items(table) if i["SK"].startswith((keys.CONNECTION_PREFIX, keys.SUBSCRIPTION_PREFIX))]


def test_connect_subscribe_disconnect_leave_nothing_behind(table: str) -> None:
    sid, cid = chat_of("alice")
    connect("conn-A=")
    assert subscribe("conn-A=", sid, cid) == {"type": "subscribed", "sessionId": sid, "chatId": cid}
    items = {i["SK"]: i for i in ws_items(table)}
    connection = items[keys.connection_key("alice", "conn-A=")["SK"]]
    subscription = items[keys.subscription_key("alice", sid, cid, "conn-A=")["SK"]]
    assert connection["subscriptions"] == {keys.subscription_ref(sid, cid)}
    # Both expire (the table's TTL attribute) after API Gateway's two-hour connection limit.
    for item in (connection, subscription):
        assert isinstance(item["expiresAt"], int | float) or str(item["expiresAt"]).isdigit()
        assert int(item["expiresAt"]) > 0
    assert int(subscription["expiresAt"]) - int(connection["expiresAt"]) < 60
    assert CONNECTION_TTL_SECONDS > 2 * 3600
    disconnect("conn-A=")
    assert ws_items(table) == []


def test_another_users_chat_is_not_found_and_nothing_is_stored(table: str) -> None:
    sid, cid = chat_of("bob")
    connect("conn-B=")
    frame = subscribe("conn-B=", sid, cid, user="alice")
    assert frame["type"] == "error" and frame["code"] == "not_found"
    assert [i["SK"] for i in ws_items(table)] == [keys.connection_key("alice", "conn-B=")["SK"]]
    # Bob himself may.
    connect("conn-C=", user="bob")
    assert subscribe("conn-C=", sid, cid, user="bob")["type"] == "subscribed"


def test_a_subscription_never_outlives_its_disconnect(table: str) -> None:
    """The connection item must still exist (a condition): a subscribe that reaches DynamoDB
    after ``$disconnect`` stores nothing."""
    sid, cid = chat_of("alice")
    connect("conn-D=")
    disconnect("conn-D=")
    frame = subscribe("conn-D=", sid, cid)
    assert frame["type"] == "error" and frame["code"] == "connection_closed"
    assert ws_items(table) == []


@pytest.mark.parametrize(
    "body",
    ["not json", {"action": "subscribe"}, {"action": "subscribe", "sessionId": "s", "chatId": "c", "userId": "bob"}],
    ids=["not-json", "missing-ids", "extra-field"],
)
def test_bad_frames_answer_validation_error(table: str, body: Any) -> None:
    connect("conn-E=")
    result = ws_subscribe.lambda_handler(ws_event("ws_subscribe", "conn-E=", body=body), LambdaContext())
    assert json.loads(result["body"])["code"] == "validation_error"


def test_ids_that_are_not_ids_are_not_found(table: str) -> None:
    connect("conn-F=")
    frame = subscribe("conn-F=", "../x", "USER#bob")
    assert frame["code"] == "not_found"


# --- the stream consumer's message frames --------------------------------------------------


@pytest.fixture
def pushing(table: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """WEBSOCKET_ENDPOINT set; moto's management API records what is posted per connection."""
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

    monkeypatch.setenv("WEBSOCKET_ENDPOINT", ENDPOINT)
    push._client.cache_clear()
    push._subscribers_cache.clear()
    yield apigatewaymanagementapi_backends["123456789012"]["us-east-1"]
    push._client.cache_clear()
    push._subscribers_cache.clear()


def frames(backend: Any, connection: str) -> list[dict[str, Any]]:
    wire = quote(connection, safe="")  # moto keeps the id as the URL carried it
    data = backend.connections[wire].data.decode() if wire in backend.connections else ""
    decoder, out, at = json.JSONDecoder(), [], 0
    while at < len(data):
        frame, at = decoder.raw_decode(data, at)
        out.append(frame)
    return out


def record(event_name: str, new: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
    event = copy.deepcopy(load_event("push_messages"))
    rec = event["Records"][0]
    rec["eventName"] = event_name
    rec["dynamodb"]["Keys"] = {"PK": new["PK"], "SK": new["SK"]}
    rec["dynamodb"]["NewImage"] = new
    if old is not None:
        rec["dynamodb"]["OldImage"] = old
    return event


def message_image(sid: str, cid: str, status: str, content: str, user: str = "alice") -> dict[str, Any]:
    image: dict[str, Any] = copy.deepcopy(load_event("push_messages")["Records"][0]["dynamodb"]["NewImage"])
    key = keys.message_key(user, sid, cid, 2)
    image.update(
        {
            "PK": {"S": key["PK"]},
            "SK": {"S": key["SK"]},
            "sessionId": {"S": sid},
            "chatId": {"S": cid},
            "status": {"S": status},
            "content": {"S": content},
        }
    )
    return image


def run(event: dict[str, Any]) -> None:
    assert push_messages.lambda_handler(event, LambdaContext()) == {"batchItemFailures": []}


def test_a_message_stored_or_changing_status_is_pushed_to_the_chats_subscribers(pushing: Any) -> None:
    sid, cid = chat_of("alice")
    other_sid, other_cid = chat_of("alice")
    connect("conn-G=")
    connect("conn-H=")
    subscribe("conn-G=", sid, cid)
    subscribe("conn-H=", other_sid, other_cid)
    stored = message_image(sid, cid, "unanswered", "What is the capital?")
    run(record("INSERT", stored))
    edited = message_image(sid, cid, "unanswered", "What is the capital of France?")
    run(record("MODIFY", edited, old=stored))  # the same status: a content flush, which deltas carry
    answered = message_image(sid, cid, "complete", "What is the capital of France?")
    run(record("MODIFY", answered, old=edited))
    got = frames(pushing, "conn-G=")
    assert [(f["type"], f["message"]["status"], f["message"]["content"]) for f in got] == [
        ("message", "unanswered", "What is the capital?"),
        ("message", "complete", "What is the capital of France?"),
    ]
    assert got[1]["message"]["sessionId"] == sid and got[1]["message"]["usage"]["totalTokens"] == 20
    assert frames(pushing, "conn-H=") == []  # subscribed to another chat


def test_heads_and_other_items_push_nothing(pushing: Any) -> None:
    """A chat head is not a message; an image the service cannot read is logged, not retried."""
    sid, cid = chat_of("alice")
    connect("conn-I=")
    subscribe("conn-I=", sid, cid)
    head = message_image(sid, cid, "complete", "x")
    head_key = keys.head_key("alice", sid, cid)
    head.update({"PK": {"S": head_key["PK"]}, "SK": {"S": head_key["SK"]}, "type": {"S": "head"}})
    run(record("INSERT", head))
    unreadable = message_image(sid, cid, "no-such-status", "x")
    run(record("INSERT", unreadable))
    assert frames(pushing, "conn-I=") == []


def test_a_gone_connection_loses_its_subscription(pushing: Any, monkeypatch: pytest.MonkeyPatch, table: str) -> None:
    from moto.core.exceptions import JsonRESTError

    class Gone(JsonRESTError):
        code = 410

    def post(data: bytes, connection_id: str) -> None:
        if unquote(connection_id) == "conn-gone=":
            raise Gone("GoneException", "the connection is gone")
        pushing.connections[connection_id].data += data

    monkeypatch.setattr(pushing, "post_to_connection", post)
    sid, cid = chat_of("alice")
    for connection in ("conn-gone=", "conn-J="):
        connect(connection)
        subscribe(connection, sid, cid)
    run(record("INSERT", message_image(sid, cid, "complete", "hello")))
    assert [f["message"]["content"] for f in frames(pushing, "conn-J=")] == ["hello"]
    subscriptions = [i["SK"] for i in ws_items(table) if i["SK"].startswith(keys.SUBSCRIPTION_PREFIX)]
    assert subscriptions == [keys.subscription_key("alice", sid, cid, "conn-J=")["SK"]]


def test_push_delta_posts_in_order_and_is_a_no_op_without_an_endpoint(
    pushing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid, cid = chat_of("alice")
    connect("conn-K=")
    subscribe("conn-K=", sid, cid)
    for offset, text in ((0, "Paris "), (6, "is "), (9, "lovely.")):
        push.push_delta("alice", sid, cid, "01JDQ41A2B3C4D5E6F70000002", offset, text)
    got = frames(pushing, "conn-K=")
    assert [(f["type"], f["offset"], f["text"]) for f in got] == [
        ("delta", 0, "Paris "),
        ("delta", 6, "is "),
        ("delta", 9, "lovely."),
    ]
    assert "".join(f["text"] for f in got) == "Paris is lovely."
    monkeypatch.delenv("WEBSOCKET_ENDPOINT")
    push.push_delta("alice", sid, cid, "01JDQ41A2B3C4D5E6F70000002", 16, " More.")
    assert len(frames(pushing, "conn-K=")) == 3


def test_push_delta_never_raises(pushing: Any) -> None:
    """A bad user id (no key can be built) or an unreachable API loses the frame, not the reply."""
    push.push_delta("", "not-an-id", "x", "m", 0, "text")
    boto3.client("dynamodb").delete_table(TableName="chat-sessions-test")
    push.push_delta("alice", "01JDQ3Z8N4V2K7M9XQ4W5T6Y7Z", "01JDQ40B2C3D4E5F6G7H8J9K0M", "m", 0, "text")


# --- what it costs ---------------------------------------------------------------------------

PUSH_EXPECTED: dict[str, list[str]] = {
    "ws_connect": ["PutItem"],
    "ws_subscribe": ["TransactWriteItems"],
    "push_messages, one message, 3 subscribers": ["Query"],
    "push_messages, a batch of 3 messages of one chat and 1 of another": ["Query", "Query"],
    "push_delta, first delta of a reply": ["Query"],
    "push_delta, the next within a second": [],
    "ws_disconnect, 2 subscriptions": ["DeleteItem", "BatchWriteItem"],
    "ws_disconnect, none": ["DeleteItem"],
}


def test_push_round_trips(pushing: Any) -> None:
    """The DynamoDB requests of each step (the README's "Push over WebSocket" table states them):
    none grows with the conversation; a message frame costs one query for any number of
    subscribers (and one post each), and the deltas of a reply one query per second."""
    from benchmarks.meter import DynamoMeter
    from chat_sessions import store

    meter = DynamoMeter().attach(store.dynamodb_client())
    seen: dict[str, list[str]] = {}

    def measure(label: str, action: Any) -> None:
        meter.reset()
        action()
        seen[label] = meter.take().operations

    sid, cid = chat_of("alice")
    other_sid, other_cid = chat_of("alice")
    measure("ws_connect", lambda: connect("cost-1="))
    measure("ws_subscribe", lambda: subscribe("cost-1=", sid, cid))
    for connection in ("cost-2=", "cost-3="):
        connect(connection)
        subscribe(connection, sid, cid)
    subscribe("cost-1=", other_sid, other_cid)
    measure(
        "push_messages, one message, 3 subscribers",
        lambda: run(record("INSERT", message_image(sid, cid, "complete", "hi"))),
    )
    batch = record("INSERT", message_image(sid, cid, "unanswered", "question"))
    batch["Records"] += [
        record("INSERT", message_image(sid, cid, "complete", "reply"))["Records"][0],
        record(
            "MODIFY",
            message_image(sid, cid, "complete", "question"),
            old=message_image(sid, cid, "unanswered", "question"),
        )["Records"][0],
        record("INSERT", message_image(other_sid, other_cid, "complete", "elsewhere"))["Records"][0],
    ]
    measure("push_messages, a batch of 3 messages of one chat and 1 of another", lambda: run(batch))
    seen_by_both_chats = ["hi", "question", "reply", "question", "elsewhere"]  # cost-1 subscribed to both
    assert [f["message"]["content"] for f in frames(pushing, "cost-1=")] == seen_by_both_chats
    measure("push_delta, first delta of a reply", lambda: push.push_delta("alice", sid, cid, "m", 0, "Hel"))
    measure("push_delta, the next within a second", lambda: push.push_delta("alice", sid, cid, "m", 3, "lo"))
    assert [f["type"] for f in frames(pushing, "cost-3=")] == ["message"] * 4 + ["delta", "delta"]
    measure("ws_disconnect, 2 subscriptions", lambda: disconnect("cost-1="))
    connect("cost-4=")
    measure("ws_disconnect, none", lambda: disconnect("cost-4="))
    assert seen == PUSH_EXPECTED


def test_the_readme_states_the_push_round_trips() -> None:
    from tests.support import ROOT

    section = (ROOT / "README.md").read_text().split("### Push over WebSocket", 1)[1].split("\n#", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].isdigit():
            rows[cells[0].replace("`", "")] = [op.strip() for op in cells[2].split(",") if op.strip() != "none"]
            assert int(cells[1]) == len(rows[cells[0].replace("`", "")]), line
    assert rows == PUSH_EXPECTED
