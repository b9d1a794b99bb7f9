"""The local TTL emulation (local_stack/ttl.py) on moto: what it deletes, what it leaves, the
condition that lets a renewal win, and the identity its deletions' stream records get."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest

from local_stack import ttl

NOW = 2_000_000_000


def put(table: str, sk: str, expires: Any | None) -> None:
    item: dict[str, Any] = {"PK": {"S": "USER#t"}, "SK": {"S": sk}, "type": {"S": "x"}}
    if expires is not None:
        item["expiresAt"] = expires
    boto3.client("dynamodb").put_item(TableName=table, Item=item)


def left(table: str) -> list[str]:
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    return sorted(i["SK"]["S"] for i in items)


def remove_record(sk: str) -> dict[str, Any]:
    return {"eventName": "REMOVE", "dynamodb": {"Keys": {"PK": {"S": "USER#t"}, "SK": {"S": sk}}}}


def test_a_pass_deletes_what_expired_and_nothing_else(table: str) -> None:
    put(table, "SESSION#past", {"N": str(NOW - 10)})
    put(table, "SESSION#now", {"N": str(NOW)})
    put(table, "SESSION#future", {"N": str(NOW + 10)})
    put(table, "SESSION#kept", None)
    put(table, "SESSION#text", {"S": str(NOW - 10)})  # not a number: DynamoDB ignores it
    put(table, "SESSION#ancient", {"N": str(NOW - ttl.IGNORED_AFTER_S - 1)})  # over five years: ignored
    assert ttl.expired_now(boto3.client("dynamodb"), table, now=NOW) == 2
    assert left(table) == ["SESSION#ancient", "SESSION#future", "SESSION#kept", "SESSION#text"]


def test_a_renewal_after_the_scan_wins(table: str) -> None:
    """The delete is conditioned on the item still being expired, as DynamoDB's TTL deletes are."""
    client = boto3.client("dynamodb")
    put(table, "SESSION#renewed", {"N": str(NOW - 10)})
    scanned = client.scan(TableName=table)["Items"][0]
    put(table, "SESSION#renewed", {"N": str(NOW + 3600)})  # a write renewed it meanwhile
    values = {":now": {"N": str(NOW)}, ":oldest": {"N": str(NOW - ttl.IGNORED_AFTER_S)}, ":number": {"S": "N"}}
    assert ttl._delete(client, table, scanned, values) == 0
    assert left(table) == ["SESSION#renewed"]
    assert ttl.identity_of(remove_record("SESSION#renewed")) is None  # nothing of it remembered


def test_the_stream_record_of_a_ttl_deletion_carries_dynamodb_s_identity_once(table: str) -> None:
    put(table, "SESSION#gone", {"N": str(NOW - 1)})
    assert ttl.expired_now(boto3.client("dynamodb"), table, now=NOW) == 1
    assert ttl.identity_of({**remove_record("SESSION#gone"), "eventName": "MODIFY"}) is None
    assert ttl.identity_of(remove_record("SESSION#other")) is None  # a user's delete
    assert ttl.identity_of(remove_record("SESSION#gone")) == {
        "type": "Service",
        "principalId": "dynamodb.amazonaws.com",
    }
    assert ttl.identity_of(remove_record("SESSION#gone")) is None  # used once


def test_the_thread_deletes_within_its_interval(table: str) -> None:
    put(table, "SESSION#soon", {"N": str(int(time.time()))})
    expirer = ttl.Expirer(boto3.client("dynamodb"), table, interval_s=0.05).start()
    try:
        deadline = time.monotonic() + 30  # a bound for a busy machine, not a sleep: polled
        while left(table) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert left(table) == []
        assert expirer.deleted == 1
    finally:
        expirer.stop()


@pytest.mark.parametrize(("value", "expected"), [(None, 1.0), ("", 1.0), ("0", 0.0), ("2.5", 2.5)])
def test_the_interval_setting(value: str | None, expected: float) -> None:
    assert ttl.interval_from(value) == expected


def test_without_retention_the_default_interval_is_a_minute() -> None:
    assert ttl.interval_from("", retention=False) == 60.0
    assert ttl.interval_from("3", retention=False) == 3.0


@pytest.mark.parametrize("value", ["-1", "nan", "soon", "7200"])
def test_a_bad_interval_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        ttl.interval_from(value)
