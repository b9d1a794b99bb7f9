"""Domain events: what a change to the table means, decided from its stream record alone.

Why from the stream: every change to a session, chat or message is a write to the table, and the
table's stream (``NEW_AND_OLD_IMAGES``) carries each one, in order per item, with the item before
and after. Deriving the events there, and not in the request handlers, means no write can change
state without its event (a handler that crashes after its write still has its change published)
and no event is published for a write that did not happen. No read is made: the images say
everything, so publishing costs nothing on the table.

One stream record gives at most one event; records that no client would call a change (a send
moving the session's counters, a chat head, an idempotency record, a counter item) give none.

======================  =====================================================================
event                   stream record
======================  =====================================================================
session.created         INSERT of a session item
session.paused          MODIFY of a session, status active -> paused
session.resumed         MODIFY of a session, status paused -> active
session.archived        MODIFY of a session, status -> archived
session.unarchived      MODIFY of a session, status archived -> paused (or active)
session.updated         MODIFY of a session that changes its name or metadata (status unchanged)
session.deleted         REMOVE of a session item (``reason``: ``expired`` when DynamoDB's TTL
                        removed it, else ``deleted``)
chat.created            INSERT of a chat item (``active`` says whether it took over)
chat.activated          MODIFY of a chat, active false -> true
chat.deactivated        MODIFY of a chat, active true -> false
chat.updated            MODIFY of a chat that changes its name, model or system prompt
chat.deleted            REMOVE of a chat item (a chat deleted alone, or with its session)
message.created         INSERT of a user message; INSERT of an assistant message ``generating``
reply.completed         INSERT of an assistant message ``complete``, or MODIFY to ``complete``
reply.failed            the same with ``failed``
reply.cancelled         the same with ``cancelled``
user.erased             REMOVE of a user's counters item that carries the erasure marker
======================  =====================================================================

Every event's detail has ``userId``, the ids it concerns (``sessionId``, ``chatId``,
``messageId``, ``seq``), ``time`` (ISO 8601: the item's own ``updatedAt``/``createdAt`` when the
write set it, else the stream record's creation time), and ``changeId`` (the stream record's
``eventID``: the same for a redelivered record, so a consumer can drop duplicates). Never message
content, system prompts or names of anything: events travel to other systems, content does not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

from chat_sessions import keys

SOURCE = "chat-sessions"
"""The ``source`` of every event on the bus (what an EventBridge rule matches on)."""

EVENT_TYPES = (
    "session.created",
    "session.updated",
    "session.paused",
    "session.resumed",
    "session.archived",
    "session.unarchived",
    "session.deleted",
    "chat.created",
    "chat.updated",
    "chat.activated",
    "chat.deactivated",
    "chat.deleted",
    "message.created",
    "reply.completed",
    "reply.failed",
    "reply.cancelled",
    "user.erased",
)

ERASING_MARKER = "erasingSince"
"""The attribute ``DELETE /me`` sets on the user's counters item while it erases the user
(``keys.ERASING_SINCE``); the counters item's removal with it in the old image ends the erasure."""

_SESSION_FIELDS = ("name", "metadata")  # a change to these is session.updated
_CHAT_FIELDS = ("name", "model", "systemPrompt")  # a change to these is chat.updated
_REPLY_ENDS = {"complete": "reply.completed", "failed": "reply.failed", "cancelled": "reply.cancelled"}
_TTL_PRINCIPAL = "dynamodb.amazonaws.com"


@dataclass(frozen=True)
class DomainEvent:
    """One event: its type (EventBridge's ``detail-type``) and detail."""

    type: str
    detail: dict[str, Any]
    session_id: str | None  # events of one session are published in order (the ordering key)

    def entry(self, bus_name: str) -> dict[str, Any]:
        """The ``PutEvents`` entry for this event on ``bus_name``."""
        return {
            "Source": SOURCE,
            "DetailType": self.type,
            "Detail": json.dumps(self.detail, separators=(",", ":"), sort_keys=True),
            "EventBusName": bus_name,
        }


# --- images ---------------------------------------------------------------------------------


def _plain(value: dict[str, Any]) -> Any:
    """A stream attribute value (``{"S": "x"}``...) as plain JSON; binary and sets are not stored
    by this service, so they are kept as text/lists."""
    ((kind, inner),) = value.items()
    if kind == "M":
        return {k: _plain(v) for k, v in inner.items()}
    if kind == "L":
        return [_plain(v) for v in inner]
    if kind == "N":
        number = float(inner)
        return int(number) if number.is_integer() else number
    if kind == "NULL":
        return None
    if kind in ("SS", "NS", "BS"):
        return list(inner)
    return inner  # S, BOOL, B


def image(record: dict[str, Any], which: str) -> dict[str, Any] | None:
    """``NewImage`` or ``OldImage`` of a Lambda stream record, as plain values (None if absent)."""
    raw = (record.get("dynamodb") or {}).get(which)
    return None if raw is None else {name: _plain(value) for name, value in raw.items()}


def _iso(epoch: Any) -> str:
    """Epoch seconds as the items write times (milliseconds, ``Z``), so the two compare as text."""
    try:
        moment = datetime.fromtimestamp(float(epoch), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- the mapping ----------------------------------------------------------------------------


def event_for(record: dict[str, Any]) -> DomainEvent | None:
    """The domain event a stream record (Lambda's shape) stands for, or None (see the module)."""
    name = record.get("eventName")
    new, old = image(record, "NewImage"), image(record, "OldImage")
    current = new if new is not None else old
    if current is None:
        return None
    item_keys = {k: _plain(v) for k, v in ((record.get("dynamodb") or {}).get("Keys") or {}).items()}
    pk = str(item_keys.get(keys.PK, current.get(keys.PK, "")))
    sk = str(item_keys.get(keys.SK, current.get(keys.SK, "")))
    user_id = keys.user_of_key(pk)
    if user_id is None:
        return None
    kind = current.get("type")
    found: tuple[str, dict[str, Any]] | None = None
    if kind == "session":
        found = _session(name, old, new)
    elif kind == "chat":
        found = _chat(name, old, new)
    elif kind == "message":
        found = _message(name, old, new)
    elif sk == keys.QUOTA_SK and name == "REMOVE" and old is not None and old.get(ERASING_MARKER) is not None:
        found = ("user.erased", {})
    if found is None:
        return None
    event_type, detail = found
    if event_type == "session.deleted" and _by_ttl(record):
        detail["reason"] = "expired"
    created = (record.get("dynamodb") or {}).get("ApproximateCreationDateTime")
    # The record's own time is to the second (DynamoDB Local's to the minute): an event is never
    # shown earlier than a time its images record (a removal after the last write, a reply's end
    # after its creation).
    recorded = [str(i[f]) for i in (old or {}, new or {}) for f in ("updatedAt", "createdAt") if i.get(f)]
    when = _own_time(event_type, new) or max([_iso(created), *recorded])
    detail = {"userId": user_id, **detail, "time": when, "changeId": str(record.get("eventID", ""))}
    return DomainEvent(event_type, detail, detail.get("sessionId"))


def _own_time(event_type: str, new: dict[str, Any] | None) -> str | None:
    """The time the item itself records for this change, when it records one."""
    if new is None:
        return None
    if event_type.startswith(("session.", "chat.")) and isinstance(new.get("updatedAt"), str):
        return str(new["updatedAt"])
    if event_type == "message.created" and isinstance(new.get("createdAt"), str):
        return str(new["createdAt"])
    return None


def _by_ttl(record: dict[str, Any]) -> bool:
    identity = record.get("userIdentity") or {}
    return bool(identity.get("type") == "Service" and identity.get("principalId") == _TTL_PRINCIPAL)


def _session(name: Any, old: dict[str, Any] | None, new: dict[str, Any] | None) -> tuple[str, dict[str, Any]] | None:
    current = new or old or {}
    detail: dict[str, Any] = {"sessionId": current.get("sessionId")}
    if name == "INSERT" and new is not None:
        return "session.created", {**detail, "status": new.get("status")}
    if name == "REMOVE":
        return "session.deleted", {**detail, "reason": "deleted"}
    if name != "MODIFY" or old is None or new is None:
        return None
    before, after = old.get("status"), new.get("status")
    if before != after:
        detail |= {"status": after, "previousStatus": before}
        if after == "archived":
            return "session.archived", detail
        if before == "archived":
            return "session.unarchived", detail
        if after == "paused":
            return "session.paused", detail
        if after == "active":
            return "session.resumed", detail
        return None
    changed = [field for field in _SESSION_FIELDS if old.get(field) != new.get(field)]
    return ("session.updated", {**detail, "changed": changed}) if changed else None


def _chat(name: Any, old: dict[str, Any] | None, new: dict[str, Any] | None) -> tuple[str, dict[str, Any]] | None:
    current = new or old or {}
    detail: dict[str, Any] = {"sessionId": current.get("sessionId"), "chatId": current.get("chatId")}
    if name == "INSERT" and new is not None:
        forked = new.get("forkedFrom")
        extra = {"forkedFrom": {"chatId": forked.get("chatId"), "seq": forked.get("seq")}} if forked else {}
        return "chat.created", {**detail, "active": bool(new.get("active")), **extra}
    if name == "REMOVE":
        return "chat.deleted", detail
    if name != "MODIFY" or old is None or new is None:
        return None
    if bool(old.get("active")) != bool(new.get("active")):
        return ("chat.activated" if new.get("active") else "chat.deactivated"), detail
    changed = [field for field in _CHAT_FIELDS if old.get(field) != new.get(field)]
    return ("chat.updated", {**detail, "changed": changed}) if changed else None


def _message(name: Any, old: dict[str, Any] | None, new: dict[str, Any] | None) -> tuple[str, dict[str, Any]] | None:
    if new is None or name not in ("INSERT", "MODIFY"):
        return None  # a message is removed only with its chat or session (chat/session.deleted)
    detail: dict[str, Any] = {
        "sessionId": new.get("sessionId"),
        "chatId": new.get("chatId"),
        "messageId": new.get("messageId"),
        "seq": new.get("seq"),
        "role": new.get("role"),
    }
    status = new.get("status")
    if new.get("role") == "assistant":
        before = None if old is None else old.get("status")
        if status in _REPLY_ENDS and status != before:
            detail["replyToSeq"] = new.get("replyToSeq")
            detail["status"] = status
            if status == "complete":
                detail["usage"] = {
                    "promptTokens": new.get("promptTokens") or 0,
                    "completionTokens": new.get("completionTokens") or 0,
                    "totalTokens": new.get("totalTokens") or 0,
                }
            return _REPLY_ENDS[status], detail
        if name == "INSERT" and status == "generating":
            return "message.created", {**detail, "status": status}
        return None
    if name == "INSERT":
        return "message.created", {**detail, "status": status}
    return None


def events_for(records: list[dict[str, Any]]) -> list[tuple[dict[str, Any], DomainEvent | None]]:
    """Each record with its event (or None), in the records' order."""
    return [(record, event_for(record)) for record in records]


# --- publishing -----------------------------------------------------------------------------

MAX_ENTRIES = 10  # EventBridge PutEvents takes at most 10 entries per call


@lru_cache(maxsize=1)
def events_client() -> Any:
    """One EventBridge client per container. Locally the stack points it at its own bus with
    ``AWS_ENDPOINT_URL_EVENTBRIDGE`` (botocore's per-service endpoint variable), so the code
    path is the deployed one."""
    return boto3.client(
        "events",
        config=Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=5),
    )


def publish(records: list[dict[str, Any]], bus_name: str, client: Any) -> tuple[int, int | None]:
    """Put the events of ``records`` on the bus, in the records' order, at most 10 per call.
    Returns how many events were accepted and the index of the first record whose event was not
    (it and every record after it must be retried, which keeps each session's events in order),
    or None when all were. Records without an event count as published."""
    pending = [(index, event) for index, (_, event) in enumerate(events_for(records)) if event is not None]
    accepted = 0
    for start in range(0, len(pending), MAX_ENTRIES):
        chunk = pending[start : start + MAX_ENTRIES]
        try:
            answer = client.put_events(Entries=[event.entry(bus_name) for _, event in chunk])
        except Exception:  # throttled, unreachable: retry from this chunk (the caller logs it)
            return accepted, chunk[0][0]
        results = answer.get("Entries") or []
        for position, (index, _) in enumerate(chunk):
            result = results[position] if position < len(results) else {}
            if result.get("ErrorCode") or not result.get("EventId"):
                return accepted, index
            accepted += 1
    return accepted, None
