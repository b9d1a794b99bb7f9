"""moto's ``TransactWriteItems`` without copying the whole table: only the items it writes.

Before a transaction, moto keeps a backup of each table it touches to roll back to if the
transaction is cancelled, made with ``copy.deepcopy(table)``: every item, once per item of the
transaction. At 10,000 stored messages that is about 4 s of CPU for one send's transaction, and
it made the cost tests (``tests/test_cost.py``) most of a minute.

A transaction changes only the items its operations name (``Key``, or a ``Put``'s key
attributes); every other item is the same object before and after. So the backup can share
those and copy only the named ones: :func:`install` gives moto's ``Table`` a ``__deepcopy__``
that, while a transaction is being set up, copies the table's dicts of items but not the
unnamed items in them. The backup still holds every item,
and a cancelled transaction still restores every named item as it was; outside a transaction
(moto's table backups, restores) a table is copied in full, as before.

The backup's dicts are new dicts (a few ms at 10,000 items), so nothing the live table does
afterwards changes the backup. So is its list of stream records (the records are shared: moto
never changes one once added), which moto's copy also copied record by record.
"""

from __future__ import annotations

import contextvars
import copy
import functools
from collections.abc import Iterable
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table

Keys = set[tuple[Any, Any]]
_named: contextvars.ContextVar[dict[str, Keys] | None] = contextvars.ContextVar("moto_transaction_keys", default=None)


def install() -> None:
    """Patch moto's DynamoDB backend (idempotent; process-wide)."""
    if getattr(DynamoDBBackend.transact_write_items, "_lean_backup", False):
        return
    moto_transact = DynamoDBBackend.transact_write_items

    @functools.wraps(moto_transact)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        token = _named.set(_named_keys(self, transact_items))
        shards = {name: table.stream_shard for name, table in self.tables.items() if table.stream_shard is not None}
        try:
            return moto_transact(self, transact_items)
        finally:
            _named.reset(token)
            _keep_stream_shards(self, shards)

    transact_write_items._lean_backup = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    Table.__deepcopy__ = _table_deepcopy  # type: ignore[attr-defined]


def _keep_stream_shards(backend: Any, shards: dict[str, Any]) -> None:
    """A cancelled transaction puts the tables' backups in their place, and with them copies of
    their stream shards; but every shard iterator handed out holds the shard it was made from,
    so a reader of the stream (the local stack's poller) read the orphaned shard and never saw
    another record. Each table keeps its own shard instead, with the backup's records (those
    before the transaction)."""
    for name, shard in shards.items():
        table = backend.tables.get(name)
        if table is None or table.stream_shard is None or table.stream_shard is shard:
            continue
        shard.items[:] = table.stream_shard.items
        shard.table = table
        table.stream_shard = shard


def _named_keys(backend: Any, transact_items: Iterable[dict[str, Any]]) -> dict[str, Keys] | None:
    """Per table, the (hash, range) keys the transaction's operations name; ``None`` (copy in
    full) if any operation cannot be read here: moto itself then answers the validation error."""
    named: dict[str, Keys] = {}
    try:
        for entry in transact_items:
            (op_type, op), *_ = entry.items()
            table = backend.tables[op["TableName"]]
            key = op["Item"] if op_type == "Put" else op["Key"]
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
            named.setdefault(table.name, set()).add((hash_key, range_key))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return named


def _table_deepcopy(self: Any, memo: dict[int, Any]) -> Any:
    """A full copy, but for items a running transaction does not name: those are shared."""
    named = (_named.get() or {}).get(self.name)
    result = self.__class__.__new__(self.__class__)
    memo[id(self)] = result
    for name, value in self.__dict__.items():
        if name == "items" and named is not None:
            result.__dict__[name] = _items_copy(self, named, memo)
        elif name == "stream_shard" and named is not None and value is not None:
            shard = copy.copy(value)  # its records are never changed once added: a new list of them
            shard.table, shard.items = result, list(value.items)
            result.__dict__[name] = shard
        else:
            result.__dict__[name] = copy.deepcopy(value, memo)
    return result


def _items_copy(table: Any, named: Keys, memo: dict[int, Any]) -> Any:
    """``table.items`` (hash key -> item, or hash key -> range key -> item): new dicts holding
    the same items, but for copies of the named ones (key objects are never changed in place)."""
    items = table.items.copy()  # a defaultdict stays one
    if table.range_key_attr:
        for hash_key, stored in items.items():
            items[hash_key] = dict(stored)
        for hash_key, range_key in named:
            stored = items.get(hash_key)
            if stored is not None and range_key in stored:
                stored[range_key] = copy.deepcopy(stored[range_key], memo)
    else:
        for hash_key, _ in named:
            if hash_key in items:
                items[hash_key] = copy.deepcopy(items[hash_key], memo)
    return items
