"""Read and write units by DynamoDB's documented sizing rules, for servers that do not report them.

moto answers ``ReturnConsumedCapacity`` with constants (0.5 for GetItem and UpdateItem, 1 for
PutItem and Query, 2 per item for TransactGetItems, nothing for TransactWriteItems), whatever
the item sizes. The benchmark records those as reported, and this module computes what
DynamoDB would charge for the same requests, from the items actually on the server:

- an item's size is the UTF-8 length of its attribute names plus its values (numbers about one
  byte per two significant digits plus one, lists and maps 3 bytes plus one per element);
- a read costs one unit per 4 KB (rounded up, at least one; half for an eventually consistent
  read), a query one per 4 KB of all items it reads before any projection;
- a write costs one unit per 1 KB of the larger of the item before and after;
- TransactGetItems and TransactWriteItems cost twice that per item.

It hooks ``before-call`` (item sizes before a write, and what a read reads) and ``after-call``
(item sizes after a write) on the measured client and looks items up through a second client
that nobody meters. It changes nothing; it only slows the run, so it gets its own pass.
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

READ_UNIT = 4096
WRITE_UNIT = 1024
ITEM_LIMIT = 400 * 1024
"""DynamoDB's largest item, by :func:`item_size`."""


def value_size(value: dict[str, Any]) -> int:
    """Size of one attribute value in DynamoDB's wire format (``{"S": ...}``, ``{"M": ...}``...)."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        digits = str(Decimal(str(inner)).normalize()).lstrip("-").replace(".", "")
        digits = digits.split("E")[0].strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(base64.b64decode(inner)) if isinstance(inner, str) else len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in inner.items())
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    if kind == "NS":
        return sum(value_size({"N": n}) for n in inner)
    if kind == "BS":
        return sum(value_size({"B": b}) for b in inner)
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: dict[str, Any] | None) -> int:
    """Size of an item in wire format; 0 for a missing item."""
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / READ_UNIT))
    return float(units) if consistent else units / 2


def write_units(size: int) -> float:
    return float(max(1, math.ceil(size / WRITE_UNIT)))


@dataclass
class Estimate:
    read_units: float = 0.0
    write_units: float = 0.0


@dataclass(frozen=True)
class _Target:
    table: str
    key: dict[str, Any]
    multiplier: int
    size_before: int


_NAME_RE = re.compile(r"#[A-Za-z0-9_]+")


class CapacityEstimator:
    """Adds up documented read/write units for every call the attached client makes."""

    def __init__(self, oracle: Any) -> None:
        self._oracle = oracle  # a low-level client, not metered
        self._key_names: dict[str, list[str]] = {}
        self._pending: dict[int, list[_Target]] = {}
        self.total = Estimate()
        self._id = f"capacity-{id(self)}"
        self._clients: list[Any] = []

    def attach(self, client: Any) -> CapacityEstimator:
        client.meta.events.register("before-call.dynamodb", self._before, unique_id=f"{self._id}-before")
        client.meta.events.register("after-call.dynamodb", self._after, unique_id=f"{self._id}-after")
        self._clients.append(client)
        return self

    def detach(self) -> None:
        for client in self._clients:
            client.meta.events.unregister("before-call.dynamodb", self._before, unique_id=f"{self._id}-before")
            client.meta.events.unregister("after-call.dynamodb", self._after, unique_id=f"{self._id}-after")
        self._clients.clear()

    def take(self) -> Estimate:
        total, self.total = self.total, Estimate()
        return total

    # ------------------------------------------------------------------ lookups
    def _keys_of(self, table: str) -> list[str]:
        if table not in self._key_names:
            schema = self._oracle.describe_table(TableName=table)["Table"]["KeySchema"]
            self._key_names[table] = [k["AttributeName"] for k in schema]
        return self._key_names[table]

    def _size_of(self, table: str, key: dict[str, Any]) -> int:
        found = self._oracle.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        return item_size(found)

    def _query_size(self, body: dict[str, Any]) -> int:
        """Total size of the items a Query reads, projection aside (what DynamoDB charges for)."""
        kwargs: dict[str, Any] = {
            k: body[k]
            for k in (
                "TableName",
                "IndexName",
                "KeyConditionExpression",
                "ExpressionAttributeValues",
                "ScanIndexForward",
                "ExclusiveStartKey",
                "Limit",
            )
            if k in body
        }
        used = set(_NAME_RE.findall(body.get("KeyConditionExpression", "")))
        names = {k: v for k, v in body.get("ExpressionAttributeNames", {}).items() if k in used}
        if names:
            kwargs["ExpressionAttributeNames"] = names
        items = self._oracle.query(**kwargs).get("Items", [])
        return sum(item_size(i) for i in items)

    # ------------------------------------------------------------------ writes
    def _write_targets(self, operation: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any], int]]:
        """(table, key, multiplier) of every item a write touches."""
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            table = body["TableName"]
            key = body.get("Key") or {k: body["Item"][k] for k in self._keys_of(table)}
            return [(table, key, 1)]
        if operation == "TransactWriteItems":
            targets = []
            for entry in body["TransactItems"]:
                ((_, op),) = entry.items()
                table = op["TableName"]
                key = op.get("Key") or {k: op["Item"][k] for k in self._keys_of(table)}
                targets.append((table, key, 2))
            return targets
        if operation == "BatchWriteItem":
            targets = []
            for table, requests in body["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        item = request["PutRequest"]["Item"]
                        targets.append((table, {k: item[k] for k in self._keys_of(table)}, 1))
                    else:
                        targets.append((table, request["DeleteRequest"]["Key"], 1))
            return targets
        return []

    # ------------------------------------------------------------------ hooks
    def _before(self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        operation = str(model.name)
        raw = params.get("body") or b"{}"
        body: dict[str, Any] = json.loads(raw)
        consistent = bool(body.get("ConsistentRead", False))
        if operation == "GetItem":
            self.total.read_units += read_units(self._size_of(body["TableName"], body["Key"]), consistent)
        elif operation == "Query":
            self.total.read_units += read_units(self._query_size(body), consistent)
        elif operation == "TransactGetItems":
            for entry in body["TransactItems"]:
                get = entry["Get"]
                self.total.read_units += 2 * read_units(self._size_of(get["TableName"], get["Key"]), True)
        targets = self._write_targets(operation, body)
        if targets:
            self._pending[id(context)] = [
                _Target(table, key, multiplier, self._size_of(table, key)) for table, key, multiplier in targets
            ]

    def _after(self, context: dict[str, Any], **_: Any) -> None:
        for target in self._pending.pop(id(context), []):
            after = self._size_of(target.table, target.key)
            self.total.write_units += target.multiplier * write_units(max(target.size_before, after))
