"""Domain events (chat_sessions/events.py, functions/publish_events.py): one event per change,
decided from the stream record's images, never with content; published in order.

Records are built the way the table's stream writes them (NEW_AND_OLD_IMAGES, typed attribute
values, as in events/publish_events.json, which was taken from the local stack's stream); the
exact sequence of a whole story against the local stack is tests/integration/test_domain_events.py.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer

from chat_sessions import events, keys
from local_stack import eventbridge
from tests.support import LambdaContext, load_event

USER = "alice#1%"  # escaped in keys: the event names the user as the token did
SID, CID, MID = "01JDQ3Z8N4V2K7M9XQ4W5T6Y7Z", "01JDQ3Z9A1B2C3D4E5F6G7H8J9", "01JDQ3ZA00000000000000002"
SECRET = "the user's own words"
_serializer = TypeSerializer()


def typed(item: dict[str, Any]) -> dict[str, Any]:
    plain = json.loads(json.dumps(item), parse_float=Decimal)
    return {name: _serializer.serialize(value) for name, value in plain.items()}


def session(**changes: Any) -> dict[str, Any]:
    return {
        **keys.session_key(USER, SID),
        "type": "session",
        "sessionId": SID,
        "name": "Story",
        "status": "active",
        "chatCount": 0,
        "messageCount": 0,
        "metadata": {},
        "createdAt": "2026-11-26T13:30:00.120Z",
        "updatedAt": "2026-11-26T13:30:00.120Z",
        **changes,
    }


def chat(**changes: Any) -> dict[str, Any]:
    return {
        **keys.chat_key(USER, SID, CID),
        "type": "chat",
        "chatId": CID,
        "sessionId": SID,
        "name": "Debug",
        "model": "gpt-4o-mini",
        "systemPrompt": SECRET,
        "active": True,
        "messageCount": 0,
        "createdAt": "2026-11-26T13:30:00.500Z",
        "updatedAt": "2026-11-26T13:30:00.500Z",
        **changes,
    }


def message(seq: int = 2, role: str = "assistant", **changes: Any) -> dict[str, Any]:
    return {
        **keys.message_key(USER, SID, CID, seq),
        "type": "message",
        "messageId": MID,
        "chatId": CID,
        "sessionId": SID,
        "seq": seq,
        "role": role,
        "content": SECRET,
        "status": "complete",
        "tokens": 3,
        "createdAt": "2026-11-26T13:30:01.100Z",
        **(
            {"replyToSeq": seq - 1, "promptTokens": 5, "completionTokens": 3, "totalTokens": 8}
            if role == "assistant"
            else {}
        ),
        **changes,
    }


def record(
    name: str, old: dict[str, Any] | None = None, new: dict[str, Any] | None = None, ttl: bool = False
) -> dict[str, Any]:
    current = new or old
    assert current is not None
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": 1795699800,
        "Keys": typed({"PK": current["PK"], "SK": current["SK"]}),
        "SequenceNumber": "1",
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if old is not None:
        body["OldImage"] = typed(old)
    if new is not None:
        body["NewImage"] = typed(new)
    out: dict[str, Any] = {"eventID": "e1", "eventName": name, "eventSource": "aws:dynamodb", "dynamodb": body}
    if ttl:
        out["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    return out


CASES = [
    ("session.created", record("INSERT", new=session())),
    ("session.paused", record("MODIFY", session(), session(status="paused"))),
    ("session.resumed", record("MODIFY", session(status="paused"), session())),
    ("session.archived", record("MODIFY", session(status="paused"), session(status="archived"))),
    ("session.unarchived", record("MODIFY", session(status="archived"), session(status="paused"))),
    ("session.updated", record("MODIFY", session(), session(name="Renamed"))),
    ("session.updated", record("MODIFY", session(), session(metadata={"k": "v"}))),
    ("session.deleted", record("REMOVE", old=session())),
    ("chat.created", record("INSERT", new=chat())),
    ("chat.activated", record("MODIFY", chat(active=False), chat())),
    ("chat.deactivated", record("MODIFY", chat(), chat(active=False))),
    ("chat.updated", record("MODIFY", chat(), chat(systemPrompt="another " + SECRET))),
    ("chat.deleted", record("REMOVE", old=chat())),
    ("message.created", record("INSERT", new=message(1, "user", status="unanswered"))),
    ("message.created", record("INSERT", new=message(status="generating"))),
    ("reply.completed", record("INSERT", new=message())),
    ("reply.completed", record("MODIFY", message(status="generating"), message())),
    ("reply.failed", record("MODIFY", message(status="generating"), message(status="failed"))),
    ("reply.failed", record("INSERT", new=message(status="failed"))),
    ("reply.cancelled", record("MODIFY", message(status="generating"), message(status="cancelled"))),
    ("user.erased", record("REMOVE", old={**keys.quota_key(USER), "activeSessions": 0, "erasingSince": "2026"})),
]


@pytest.mark.parametrize(("expected", "change"), CASES, ids=[f"{i}-{c[0]}" for i, c in enumerate(CASES)])
def test_each_change_is_its_one_event(expected: str, change: dict[str, Any]) -> None:
    event = events.event_for(change)
    assert event is not None and event.type == expected
    assert event.detail["userId"] == USER
    assert event.detail["changeId"] == "e1"
    if expected != "user.erased":
        assert event.detail["sessionId"] == SID and event.session_id == SID
    if expected.startswith(("chat.", "message.", "reply.")):
        assert event.detail["chatId"] == CID
    if expected.startswith(("message.", "reply.")):
        assert event.detail["messageId"] == MID
    text = json.dumps(event.detail)
    assert SECRET not in text and "Story" not in text and "Debug" not in text  # no content, no names
    assert expected in events.EVENT_TYPES


NO_EVENT = [
    # A send moves the session's and chat's counters: not a change anyone subscribes to.
    record("MODIFY", session(), session(messageCount=2, updatedAt="2026-11-26T13:31:00Z")),
    record("MODIFY", chat(), chat(messageCount=2, pinnedSeq=1)),
    # The user message answered; a generating reply growing.
    record("MODIFY", message(1, "user", status="unanswered"), message(1, "user")),
    record("MODIFY", message(status="generating"), message(status="generating", content=SECRET * 2)),
    # Messages go with their chat or session; heads, counters, markers are not domain items.
    record("REMOVE", old=message()),
    record("INSERT", new={**keys.head_key(USER, SID, CID), "type": "head", "chatId": CID, "sessionId": SID}),
    record("MODIFY", {**keys.quota_key(USER), "activeSessions": 0}, {**keys.quota_key(USER), "activeSessions": 1}),
    record("REMOVE", old={**keys.quota_key(USER), "activeSessions": 0}),  # removed without the erasure marker
    record("INSERT", new={"PK": "OTHER#x", "SK": "SESSION#y", "type": "session"}),  # not a key of this layout
]


@pytest.mark.parametrize("change", NO_EVENT, ids=[str(i) for i in range(len(NO_EVENT))])
def test_changes_nobody_subscribes_to_give_no_event(change: dict[str, Any]) -> None:
    assert events.event_for(change) is None


def test_a_session_removed_by_ttl_says_it_expired_and_times_come_from_the_items() -> None:
    earlier = {"createdAt": "2026-11-26T12:00:00.000Z", "updatedAt": "2026-11-26T13:00:00.000Z"}
    expired = events.event_for(record("REMOVE", old=session(**earlier), ttl=True))
    deleted = events.event_for(record("REMOVE", old=session(updatedAt="2027-01-01T00:00:00.000Z")))
    assert expired is not None and expired.detail["reason"] == "expired"
    assert expired.detail["time"] == "2026-11-26T13:30:00.000Z"  # the record's time (after the last write)
    assert deleted is not None and deleted.detail["reason"] == "deleted"
    assert deleted.detail["time"] == "2027-01-01T00:00:00.000Z"  # never before the last write
    renamed = events.event_for(record("MODIFY", session(), session(name="R", updatedAt="2026-11-26T14:00:00.000Z")))
    assert renamed is not None and renamed.detail["time"] == "2026-11-26T14:00:00.000Z"
    assert renamed.detail["changed"] == ["name"]


def test_a_reply_ends_no_earlier_than_it_began() -> None:
    # DynamoDB Local's record times are to the minute: the reply's creation time is the floor.
    ended = events.event_for(record("MODIFY", message(status="generating"), message()))
    assert ended is not None and ended.detail["time"] == "2026-11-26T13:30:01.100Z"
    late = record("MODIFY", message(status="generating"), message())
    late["dynamodb"]["ApproximateCreationDateTime"] = 1795699860  # a minute later
    finished = events.event_for(late)
    assert finished is not None and finished.detail["time"] == "2026-11-26T13:31:00.000Z"


def test_a_reply_carries_its_usage_and_what_it_answers() -> None:
    event = events.event_for(record("INSERT", new=message()))
    assert event is not None
    assert event.detail["usage"] == {"promptTokens": 5, "completionTokens": 3, "totalTokens": 8}
    assert event.detail["replyToSeq"] == 1 and event.detail["seq"] == 2 and event.detail["status"] == "complete"


# --- publishing ---------------------------------------------------------------------------------


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[eventbridge.LocalEventBus]:
    """The local stack's EventBridge bus, the publisher's boto3 client pointed at it."""
    server, url, local_bus = eventbridge.start_in_thread()
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", url)
    monkeypatch.setenv("EVENT_BUS_NAME", "chat-sessions-test-events")
    events.events_client.cache_clear()
    try:
        yield local_bus
    finally:
        events.events_client.cache_clear()
        server.shutdown()


def test_the_handler_puts_each_event_on_the_bus_in_stream_order(bus: eventbridge.LocalEventBus) -> None:
    import publish_events

    event = load_event("publish_events")
    assert publish_events.lambda_handler(event, LambdaContext()) == {"batchItemFailures": []}
    published = bus.events()["events"]
    assert [e["detail-type"] for e in published] == ["session.created", "chat.deactivated", "reply.completed"]
    assert {e["source"] for e in published} == {"chat-sessions"}
    assert {e["event-bus-name"] for e in published} == {"chat-sessions-test-events"}
    assert [e["detail"]["changeId"] for e in published] == [r["eventID"] for r in event["Records"]]
    assert "Lambda times out" not in json.dumps(published)  # the reply's content stays in the table


class RefusingBus:
    """An EventBridge client whose answers are EventBridge's documented partial failure
    (``FailedEntryCount`` with an ``ErrorCode`` per refused entry) from the ``fail_at``-th entry
    put, or an exception (throttled) when ``raise_at`` entries have been put."""

    def __init__(self, fail_at: int | None = None, raise_at: int | None = None) -> None:
        self.fail_at, self.raise_at = fail_at, raise_at
        self.calls: list[list[str]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # boto3 names it Entries
        done = sum(len(c) for c in self.calls)
        if self.raise_at is not None and done >= self.raise_at:
            raise RuntimeError("ThrottlingException")
        self.calls.append([e["DetailType"] for e in Entries])
        results: list[dict[str, Any]] = []
        for i, _ in enumerate(Entries):
            refused = self.fail_at is not None and done + i >= self.fail_at
            results.append({"ErrorCode": "InternalFailure", "ErrorMessage": "x"} if refused else {"EventId": str(i)})
        return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}


def batch(n: int) -> list[dict[str, Any]]:
    """n records: session changes, every third one giving no event (a counter moving)."""
    out = []
    for i in range(n):
        change = (
            record("MODIFY", session(), session(messageCount=i + 1))
            if i % 3 == 2
            else record("MODIFY", session(), session(name=f"n{i}"))
        )
        change["dynamodb"]["SequenceNumber"] = str(100 + i)
        out.append(change)
    return out


def test_events_go_ten_at_a_time_in_order() -> None:
    client = RefusingBus()
    assert events.publish(batch(30), "bus", client) == (20, None)
    assert [len(c) for c in client.calls] == [10, 10]


@pytest.mark.parametrize(("fail_at", "raise_at", "first_failed"), [(12, None, 18), (None, 10, 15), (0, None, 0)])
def test_a_refused_event_fails_its_record_and_every_later_one(
    fail_at: int | None, raise_at: int | None, first_failed: int
) -> None:
    # Events 0..19 stand for records 0,1,3,4,6,7,...: the 13th event (index 12) is record 18,
    # the 11th (the first of the second call) record 15.
    records = batch(30)
    assert events.publish(records, "bus", RefusingBus(fail_at, raise_at))[1] == first_failed


def test_the_handler_reports_the_first_unpublished_record_and_all_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import publish_events

    monkeypatch.setenv("EVENT_BUS_NAME", "bus")
    monkeypatch.setattr(events, "events_client", lambda: RefusingBus(fail_at=1))
    event = copy.deepcopy(load_event("publish_events"))
    answer = publish_events.lambda_handler(event, LambdaContext())
    sequences = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
    assert answer == {"batchItemFailures": [{"itemIdentifier": s} for s in sequences[1:]]}
