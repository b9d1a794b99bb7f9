"""DynamoDB's Time to Live, emulated: expired items are deleted within a few seconds.

Why: deployed, DynamoDB deletes an item some time (usually within days) after the epoch second in
its TTL attribute (the template's ``TimeToLiveSpecification``: ``expiresAt``, on sessions under
retention and on idempotency records); neither DynamoDB Local nor moto deletes anything. Without
this, retention (``RETENTION_DAYS``) could not be seen or tested locally.

What it does, as DynamoDB does:

- Every ``LOCAL_TTL_INTERVAL_S`` seconds (default 1 when ``RETENTION_DAYS`` or
  ``ARCHIVED_RETENTION_DAYS`` is set, else 60, since then only idempotency records and WebSocket
  connections expire, hours after they were written, and a scan every second of a large local
  table costs CPU the load benchmarks would measure; ``0`` turns the emulation off) it scans the
  table for items whose ``expiresAt`` is a number at or before now (and not more than five years
  past: DynamoDB ignores those), and deletes each with a condition that it is still past, so a
  write that renewed the item in between wins (DynamoDB's TTL deletes are conditional the same
  way). A deletion is an ordinary ``REMOVE`` in the table's stream.
- The stream record of a TTL deletion carries DynamoDB's identity, ``userIdentity: {"type":
  "Service", "principalId": "dynamodb.amazonaws.com"}``, which is how the stream consumers tell it
  from a user's delete. DynamoDB Local and moto do not write it, so the local stream
  (``local_stack.streams``) asks :func:`identity_of` for each ``REMOVE`` record it delivers.

The scan reads the table directly (not through the fault injector: TTL is DynamoDB's own
work). Scanning is for the emulation only; the service itself never scans.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

ATTRIBUTE = "expiresAt"
DEFAULT_INTERVAL_S = 1.0
IDLE_INTERVAL_S = 60.0
"""The default when no retention is set."""
IGNORED_AFTER_S = 5 * 365 * 86400
"""DynamoDB does not delete items whose TTL value is more than five years in the past."""
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
MAX_REMEMBERED = 100_000
WAIT_FOR_DELETE_S = 10.0
EXPIRED = "attribute_type(expiresAt, :number) AND expiresAt BETWEEN :oldest AND :now"
"""Expired as DynamoDB's TTL sees it: a number, at or before now, not over five years ago."""


@dataclass
class _Deletion:
    done: threading.Event = field(default_factory=threading.Event)
    deleted: bool = False


class _Registry:
    """The deletions this emulation made, by key, until the stream delivers their records. An
    entry is created before the delete is sent and resolved when it returns, so a record read
    from the stream in between waits for the outcome instead of guessing; each is used once (the
    first ``REMOVE`` of the key after the deletion is the deletion's own record)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], _Deletion] = OrderedDict()

    def begin(self, key: tuple[str, str]) -> _Deletion:
        with self._lock:
            entry = self._entries[key] = _Deletion()
            while len(self._entries) > MAX_REMEMBERED:
                self._entries.popitem(last=False)  # records nobody reads (no stream consumer)
            return entry

    def end(self, key: tuple[str, str], entry: _Deletion, deleted: bool) -> None:
        entry.deleted = deleted
        if not deleted:
            with self._lock:
                if self._entries.get(key) is entry:
                    del self._entries[key]
        entry.done.set()

    def claim(self, key: tuple[str, str], wait_s: float = WAIT_FOR_DELETE_S) -> bool:
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            return False
        entry.done.wait(wait_s)
        with self._lock:
            if self._entries.get(key) is entry and entry.deleted:
                del self._entries[key]
                return True
        return False


REGISTRY = _Registry()


def identity_of(record: dict[str, Any]) -> dict[str, str] | None:
    """The ``userIdentity`` a stream record (boto3's ``GetRecords`` shape or Lambda's) gets:
    DynamoDB's own for the ``REMOVE`` of an item this emulation deleted, None otherwise."""
    if record.get("eventName") != "REMOVE":
        return None
    keys = record.get("dynamodb", {}).get("Keys", {})
    pk, sk = keys.get("PK", {}).get("S"), keys.get("SK", {}).get("S")
    if pk is None or sk is None:
        return None
    return dict(TTL_IDENTITY) if REGISTRY.claim((pk, sk)) else None


def expired_now(client: Any, table_name: str, now: float | None = None) -> int:
    """One pass: delete every item expired at ``now`` (default: the clock), each conditioned on
    still being expired; returns how many were deleted."""
    now = time.time() if now is None else now
    values = {
        ":now": {"N": str(int(now))},
        ":oldest": {"N": str(int(now - IGNORED_AFTER_S))},
        ":number": {"S": "N"},
    }
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "FilterExpression": EXPIRED,
        "ProjectionExpression": "PK, SK, expiresAt",
        "ExpressionAttributeValues": values,
        "ConsistentRead": True,
    }
    deleted = 0
    while True:
        page = client.scan(**kwargs)
        for item in page.get("Items", []):
            deleted += _delete(client, table_name, item, values)
        if "LastEvaluatedKey" not in page:
            return deleted
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _delete(client: Any, table_name: str, item: dict[str, Any], values: dict[str, Any]) -> int:
    key = (item["PK"]["S"], item["SK"]["S"])
    entry = REGISTRY.begin(key)
    deleted = False
    try:
        client.delete_item(
            TableName=table_name,
            Key={"PK": item["PK"], "SK": item["SK"]},
            ConditionExpression=EXPIRED,
            ExpressionAttributeValues=values,
        )
        deleted = True
    except client.exceptions.ConditionalCheckFailedException:
        pass  # renewed (or removed) since the scan: not expired any more
    finally:
        REGISTRY.end(key, entry, deleted)
    return int(deleted)


class Expirer:
    """The emulation's thread: :func:`expired_now` every ``interval_s`` seconds until stopped."""

    def __init__(self, client: Any, table_name: str, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.client = client
        self.table_name = table_name
        self.interval_s = interval_s
        self.deleted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ttl", daemon=True)

    def start(self) -> Expirer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.deleted += expired_now(self.client, self.table_name)
            except Exception as exc:  # DynamoDB stopping, a table replaced: try again next pass
                print(f"ttl: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


def interval_from(value: str | None, retention: bool = True) -> float:
    """``LOCAL_TTL_INTERVAL_S``: seconds between passes (blank: the default, which depends on
    whether a ``retention`` is set; 0: off)."""
    text = (value or "").strip()
    interval = float(text) if text else DEFAULT_INTERVAL_S if retention else IDLE_INTERVAL_S
    if not interval >= 0 or interval > 3600:
        raise ValueError(f"LOCAL_TTL_INTERVAL_S must be 0..3600 seconds, not {value!r}")
    return interval


def start(endpoint: str, table_name: str, region: str, interval_s: float = DEFAULT_INTERVAL_S) -> Expirer:
    import boto3

    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name=region)
    return Expirer(client, table_name, interval_s).start()
