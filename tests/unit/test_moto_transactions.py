"""moto's transactions as ``local_stack.moto_transactions`` makes them: a cancelled transaction
still leaves the table exactly as it was, and the items it did not name were never copied (the
same objects before and after)."""

from __future__ import annotations

import copy
from typing import Any

import boto3
import pytest

from tests.support import moto_table_model, table_items

N = 50


def _backend_table(name: str) -> Any:
    table = moto_table_model(name)
    assert table is not None
    return table


def _stored_objects(name: str) -> dict[tuple[str, str], Any]:
    table = _backend_table(name)
    return {
        (hash_key.value, range_key.value): item
        for hash_key, stored in table.items.items()
        for range_key, item in stored.items()
    }


def _key(i: int) -> dict[str, Any]:
    return {"PK": {"S": "USER#t"}, "SK": {"S": f"ITEM#{i:03d}"}}


@pytest.fixture
def filled(table: str) -> str:
    client = boto3.client("dynamodb")
    for i in range(N):
        client.put_item(TableName=table, Item={**_key(i), "n": {"N": str(i)}, "tags": {"L": [{"S": "a"}]}})
    return table


def _transaction(table: str, *, cancel: bool) -> list[dict[str, Any]]:
    return [
        {"Put": {"TableName": table, "Item": {**_key(900), "n": {"N": "900"}}}},
        {
            "Update": {
                "TableName": table,
                "Key": _key(1),
                "UpdateExpression": "SET n = :n, tags = list_append(tags, :t)",
                "ExpressionAttributeValues": {":n": {"N": "-1"}, ":t": {"L": [{"S": "b"}]}},
            }
        },
        {"Delete": {"TableName": table, "Key": _key(2)}},
        {
            "ConditionCheck": {
                "TableName": table,
                "Key": _key(3),
                "ConditionExpression": "n = :n",
                "ExpressionAttributeValues": {":n": {"N": "-3" if cancel else "3"}},
            }
        },
    ]


def test_a_cancelled_transaction_restores_every_item_and_copies_none_it_does_not_name(filled: str) -> None:
    before = table_items(filled)
    objects = _stored_objects(filled)
    client: Any = boto3.client("dynamodb")
    with pytest.raises(client.exceptions.TransactionCanceledException):
        client.transact_write_items(TransactItems=_transaction(filled, cancel=True))

    assert table_items(filled) == before
    after = _stored_objects(filled)
    assert after.keys() == objects.keys()
    named = {("USER#t", f"ITEM#{i:03d}") for i in (1, 2, 3)}
    # The untouched 47 are the very objects stored before; moto's own backup would have replaced
    # every one with a copy. The named ones were restored from copies taken before the writes.
    assert [key for key in objects if key not in named and after[key] is not objects[key]] == []
    assert all(after[key] is not objects[key] for key in named - {("USER#t", "ITEM#003")})


def test_a_transaction_that_commits_writes_every_operation(filled: str) -> None:
    before = {item["SK"]: item for item in table_items(filled)}
    client: Any = boto3.client("dynamodb")
    client.transact_write_items(TransactItems=_transaction(filled, cancel=False))
    after = {item["SK"]: item for item in table_items(filled)}
    assert set(after) == set(before) - {"ITEM#002"} | {"ITEM#900"}
    assert after["ITEM#001"]["n"] == -1 and after["ITEM#001"]["tags"] == ["a", "b"]
    assert {sk: item for sk, item in after.items() if sk not in {"ITEM#001", "ITEM#900"}} == {
        sk: item for sk, item in before.items() if sk not in {"ITEM#001", "ITEM#002"}
    }


def test_a_transaction_refused_as_invalid_restores_the_table(filled: str) -> None:
    """Two operations on one item: moto rolls back after the first wrote (a validation error)."""
    before = table_items(filled)
    update = _transaction(filled, cancel=False)[1]
    client: Any = boto3.client("dynamodb")
    with pytest.raises(client.exceptions.ClientError):
        client.transact_write_items(TransactItems=[update, {"Delete": {"TableName": filled, "Key": _key(1)}}])
    assert table_items(filled) == before


def test_outside_a_transaction_a_table_is_copied_in_full(filled: str) -> None:
    table = _backend_table(filled)
    copied = copy.deepcopy(table)
    originals = [item for stored in table.items.values() for item in stored.values()]
    copies = [item for stored in copied.items.values() for item in stored.values()]
    assert len(copies) == N
    assert not {id(item) for item in originals} & {id(item) for item in copies}
    assert [item.to_json() for item in copies] == [item.to_json() for item in originals]


def test_a_cancelled_transaction_leaves_no_stream_record_and_a_committed_one_leaves_its_own(filled: str) -> None:
    client: Any = boto3.client("dynamodb")
    view = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    client.update_table(TableName=filled, StreamSpecification=view)
    client.put_item(TableName=filled, Item={**_key(800), "n": {"N": "800"}})
    records = list(_backend_table(filled).stream_shard.items)
    assert len(records) == 1
    with pytest.raises(client.exceptions.TransactionCanceledException):
        client.transact_write_items(TransactItems=_transaction(filled, cancel=True))
    assert _backend_table(filled).stream_shard.items == records
    client.transact_write_items(TransactItems=_transaction(filled, cancel=False))
    shard = _backend_table(filled).stream_shard
    assert shard.items[:1] == records and shard.table is _backend_table(filled)
    assert [r.record["eventName"] for r in shard.items[1:]] == ["INSERT", "MODIFY", "REMOVE"]


def test_a_stream_read_before_a_cancelled_transaction_goes_on_after_it(stream_table: Any) -> None:
    """On the moto server (``local_stack.dynamodb``, patched as the local stack's). A shard
    iterator holds its shard: after a cancelled transaction the table keeps the same one, so a
    reader that started before it (the local stack's stream poller) reads on, and reads no record
    of the cancelled writes. moto alone swaps in the backup's copy of the shard: the reader's old
    shard held the cancelled Put's record and never another (the local stack without Java
    stopped purging, erasing and pushing after its first refused transaction)."""
    client, arn, readers, name = stream_table
    shard = readers.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = readers.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
    client.put_item(TableName=name, Item=_key(1))
    page = readers.get_records(ShardIterator=iterator)
    assert [r["dynamodb"]["Keys"]["SK"]["S"] for r in page["Records"]] == ["ITEM#001"]
    with pytest.raises(client.exceptions.TransactionCanceledException):
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": name, "Item": _key(2)}},
                {
                    "ConditionCheck": {
                        "TableName": name,
                        "Key": _key(9),
                        "ConditionExpression": "attribute_exists(PK)",
                    }
                },
            ]
        )
    client.put_item(TableName=name, Item=_key(3))
    page = readers.get_records(ShardIterator=page["NextShardIterator"])
    assert [r["dynamodb"]["Keys"]["SK"]["S"] for r in page["Records"]] == ["ITEM#003"]
