"""The tests' own helpers: ``table_items`` reads moto's in-process table directly, and must give
exactly what a ``Scan`` through the API gives."""

from __future__ import annotations

from typing import Any

import boto3

from tests import support


def test_table_items_from_moto_equal_a_scan_through_the_api(table: str) -> None:
    client: Any = boto3.client("dynamodb")
    values = {
        "s": {"S": "x"},
        "n": {"N": "12.50"},
        "b": {"B": b"\x00\xff"},
        "bs": {"BS": [b"a", b"\x01"]},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "2"]},
        "t": {"BOOL": True},
        "z": {"NULL": True},
        "m": {"M": {"inner": {"L": [{"S": "y"}, {"N": "3"}, {"B": b"\x02"}, {"M": {}}]}}},
    }
    for i in range(30):
        client.put_item(TableName=table, Item={"PK": {"S": f"P#{i % 4}"}, "SK": {"S": f"S#{i:02d}"}, **values})
    scanned = support.scan(client, table)

    direct = support._moto_items(table, "us-east-1")
    assert direct is not None and len(direct) == 30
    assert direct == scanned
    assert support.table_items(table, raw=True) == scanned
    assert support._moto_items("no-such-table", "us-east-1") is None
