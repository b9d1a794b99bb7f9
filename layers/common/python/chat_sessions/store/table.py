"""The table's low-level requests: every DynamoDB call of the service goes through here.

Each call is classified by :mod:`.outcomes` in one place, so an aggregate's store sees only
:class:`~.outcomes.ConditionFailed`, :class:`~.outcomes.Collision` or a service error, never a
raw ``ClientError`` code. Transactions carry a ``ClientRequestToken``: the SDK's own retries of a
transaction whose answer was lost replay the same token, and DynamoDB does not apply it twice.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chat_sessions import keys
from chat_sessions.store.outcomes import ConditionFailed, classify

Item = dict[str, Any]
BATCH = 25


def plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; the service only stores integers."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


PAGE_BYTES = 4 * 1024 * 1024
"""What a page's items may take in a Lambda response (6 MB in all), as :func:`wire_size` counts."""


def wire_size(item: Item) -> int:
    """An item's size in a Lambda response: JSON (non-ASCII escaped) inside the JSON string the
    runtime writes, which escapes every backslash and quote once more. An upper bound of what
    its view in a page takes."""
    return len(json.dumps(json.dumps(item, default=str)))


def new_token() -> str:
    """A ``ClientRequestToken`` (at most 36 characters) for one logical transaction."""
    return str(uuid.uuid4())


class Table:
    """One table, reached through a resource-level client (plain Python values in and out)."""

    def __init__(self, table_name: str, client: Any) -> None:
        self.table_name = table_name
        self.client = client

    def call(self, operation: str, **kwargs: Any) -> Any:
        """``client.<operation>(**kwargs)`` with the outcome classified."""
        try:
            return getattr(self.client, operation)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise classify(exc) from exc

    def transact(self, items: list[Item], token: str | None = None) -> None:
        """One TransactWriteItems. A fresh token per call unless one is given: the SDK replays
        it on its own retries; a retry of ours after a refusal is another request."""
        for item in items:
            for op in item.values():
                op["TableName"] = self.table_name
        self.call("transact_write_items", TransactItems=items, ClientRequestToken=token or new_token())

    def get(self, key: keys.Key) -> Item | None:
        resp = self.call("get_item", TableName=self.table_name, Key=dict(key), ConsistentRead=True)
        item = resp.get("Item")
        return plain(item) if item else None

    def get_many(self, *key_list: keys.Key) -> list[Item | None]:
        """Several items in one round trip, read as of one instant (TransactGetItems)."""
        resp = self.call(
            "transact_get_items",
            TransactItems=[{"Get": {"TableName": self.table_name, "Key": dict(k)}} for k in key_list],
        )
        return [plain(r["Item"]) if r.get("Item") else None for r in resp["Responses"]]

    def get_batch(self, *key_list: keys.Key) -> list[Item | None]:
        """Several items by key in one BatchGetItem (strongly consistent), in the order asked;
        keys DynamoDB leaves unprocessed are asked again."""
        wanted = [(k["PK"], k["SK"]) for k in key_list]
        found: dict[tuple[str, str], Item] = {}
        pending: list[Item] = [dict(k) for k in key_list]
        delay = 0.05
        while pending:
            resp = self.call(
                "batch_get_item", RequestItems={self.table_name: {"Keys": pending, "ConsistentRead": True}}
            )
            for item in resp.get("Responses", {}).get(self.table_name, []):
                found[(item[keys.PK], item[keys.SK])] = plain(item)
            pending = resp.get("UnprocessedKeys", {}).get(self.table_name, {}).get("Keys", [])
            if pending:
                time.sleep(delay)  # DynamoDB asks for backoff before asking again
                delay = min(delay * 2, 2.0)
        return [found.get(k) for k in wanted]

    def update(self, key: keys.Key, **kwargs: Any) -> Any:
        return self.call("update_item", TableName=self.table_name, Key=dict(key), **kwargs)

    def patch_op(self, key: keys.Key, sets: Item, removes: list[str], now: str | None) -> Item:
        """A transaction item that sets and removes top-level attributes of an existing item
        (never creating one), and sets ``updatedAt`` when ``now`` is given."""
        names = {f"#f{i}": field for i, field in enumerate([*sets, *removes])}
        by_name = {field: name for name, field in names.items()}
        values: Item = {f":v{i}": value for i, value in enumerate(sets.values())}
        assignments = [f"{by_name[field]} = :v{i}" for i, field in enumerate(sets)]
        if now is not None:
            values[":now"] = now
            assignments.insert(0, "updatedAt = :now")
        expr = ("SET " + ", ".join(assignments)) if assignments else ""
        if removes:
            expr += " REMOVE " + ", ".join(by_name[field] for field in removes)
        update: Item = {
            "Key": dict(key),
            "UpdateExpression": expr.strip(),
            "ConditionExpression": "attribute_exists(PK)",
        }
        if values:
            update["ExpressionAttributeValues"] = values
        if names:
            update["ExpressionAttributeNames"] = names
        return {"Update": update}

    def patch(self, key: keys.Key, sets: Item, removes: list[str], now: str) -> Item | None:
        """``patch_op`` as one request that returns the new item; None when there is no such
        item. One request per PATCH."""
        update = self.patch_op(key, sets, removes, now)["Update"]
        del update["Key"]
        try:
            updated: Item = plain(self.update(key, **update, ReturnValues="ALL_NEW")["Attributes"])
        except ConditionFailed:
            return None
        return updated

    def query(self, consistent: bool = True, **kwargs: Any) -> list[Item]:
        resp = self.call("query", TableName=self.table_name, ConsistentRead=consistent, **kwargs)
        return [plain(i) for i in resp.get("Items", [])]

    def page(
        self,
        pk: str,
        prefix: str,
        limit: int,
        after_sk: str | None,
        forward: bool,
        projection: str | None = None,
        names: Mapping[str, str] | None = None,
        max_bytes: int = PAGE_BYTES,
        between: tuple[str, str] | None = None,
    ) -> tuple[list[Item], str | None]:
        """``limit`` items after ``after_sk``, and the sort key to continue from (or None).

        Asks for one item more than the page so the last page is known to be the last, and
        keeps querying while DynamoDB stops at its 1 MB response cap, so a page is never
        short unless the listing has ended. A page also ends before its items pass
        ``max_bytes`` as the response will carry them (Lambda answers at most 6 MB): then it is
        shorter than ``limit`` and its cursor continues after its last item, so following
        cursors still returns every item exactly once. With ``between`` (two sort keys, smallest
        first) the page covers that range instead of ``prefix``.
        """
        items: list[Item] = []
        start = {keys.PK: pk, keys.SK: after_sk} if after_sk else None
        condition, values = _key_condition(pk, prefix, between)
        while len(items) <= limit:
            kwargs: Item = {
                "TableName": self.table_name,
                "KeyConditionExpression": condition,
                "ExpressionAttributeValues": values,
                "ScanIndexForward": forward,
                "Limit": limit + 1 - len(items),
                "ConsistentRead": True,
            }
            if projection:
                kwargs["ProjectionExpression"] = projection
            if names:
                kwargs["ExpressionAttributeNames"] = dict(names)
            if start:
                kwargs["ExclusiveStartKey"] = start
            resp = self.call("query", **kwargs)
            items.extend(plain(i) for i in resp.get("Items", []))
            start = resp.get("LastEvaluatedKey")
            if not start:
                break
        used = 0
        for n, item in enumerate(items[:limit]):
            used += wire_size(item)
            if used > max_bytes and n > 0:
                return items[:n], items[n - 1][keys.SK]
        if len(items) > limit:
            return items[:limit], items[limit - 1][keys.SK]
        return items, None

    def purge_some(self, pk: str, limit: int, keep: frozenset[str] = frozenset()) -> tuple[int, bool]:
        """Delete at most ``limit`` items of the partition ``pk`` (sort keys in ``keep`` left
        alone): one query of their keys, batched deletes. Returns how many were deleted and
        whether the partition held nothing more (``keep`` aside)."""
        resp = self.call(
            "query",
            TableName=self.table_name,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": pk},
            ProjectionExpression="PK, SK",
            ConsistentRead=True,
            Limit=limit + len(keep),
        )
        found = [{keys.PK: k[keys.PK], keys.SK: k[keys.SK]} for k in resp.get("Items", []) if k[keys.SK] not in keep]
        for i in range(0, len(found), BATCH):
            self._batch_delete(found[i : i + BATCH])
        # Empty only when a query found nothing: an item written between the query and the
        # deletes (conditioned on one of those deleted) is found by the next call.
        return len(found), not found and "LastEvaluatedKey" not in resp

    def purge(self, pk: str, prefix: str, between: tuple[str, str] | None = None) -> int:
        """Delete every item of ``pk`` under ``prefix`` (or, with ``between``, in that sort-key
        range): paginated queries, batched deletes, unprocessed items retried until none is
        left. Idempotent: a second pass deletes nothing."""
        deleted = 0
        start: Item | None = None
        condition, values = _key_condition(pk, prefix, between)
        while True:
            kwargs: Item = {
                "TableName": self.table_name,
                "KeyConditionExpression": condition,
                "ExpressionAttributeValues": values,
                "ProjectionExpression": "PK, SK",
                "ConsistentRead": True,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            resp = self.call("query", **kwargs)
            found = resp.get("Items", [])
            for i in range(0, len(found), BATCH):
                self._batch_delete([{keys.PK: k[keys.PK], keys.SK: k[keys.SK]} for k in found[i : i + BATCH]])
            deleted += len(found)
            start = resp.get("LastEvaluatedKey")
            if not start:
                return deleted

    def delete_keys(self, key_list: list[Item]) -> None:
        """Delete items by key, ``BATCH`` per BatchWriteItem, unprocessed ones resubmitted."""
        for i in range(0, len(key_list), BATCH):
            self._batch_delete(key_list[i : i + BATCH])

    def _batch_delete(self, key_list: list[Item]) -> None:
        requests = [{"DeleteRequest": {"Key": k}} for k in key_list]
        delay = 0.05
        while requests:
            resp = self.call("batch_write_item", RequestItems={self.table_name: requests})
            requests = resp.get("UnprocessedItems", {}).get(self.table_name, [])
            if requests:
                time.sleep(delay)  # DynamoDB asks for backoff before resubmitting unprocessed items
                delay = min(delay * 2, 2.0)


def _key_condition(pk: str, prefix: str, between: tuple[str, str] | None) -> tuple[str, Item]:
    """A query's key condition: the partition, narrowed to a sort-key range or prefix."""
    if between is not None:
        return "PK = :pk AND SK BETWEEN :low AND :high", {":pk": pk, ":low": between[0], ":high": between[1]}
    if prefix:
        return "PK = :pk AND begins_with(SK, :prefix)", {":pk": pk, ":prefix": prefix}
    return "PK = :pk", {":pk": pk}
