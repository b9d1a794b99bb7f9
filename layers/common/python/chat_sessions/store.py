"""DynamoDB access: the only module that talks to boto3.

Each method is one access pattern. Every invariant of the service is kept here by a DynamoDB
condition or transaction, named in the method's docstring; Python never decides a race by
reading and then writing unconditionally. Where a write is optimistic (it names the value it
expects to replace), a lost race is retried from a fresh read by the service layer, which
gets :class:`WriteConflict` from here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from decimal import Decimal
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from chat_sessions import keys
from chat_sessions.config import get_settings
from chat_sessions.errors import NotFound, SessionLimitReached

Item = dict[str, Any]
_BATCH = 25
USAGE_FIELDS = ("promptTokens", "completionTokens", "totalTokens")


class WriteConflict(Exception):
    """A conditional write or transaction lost to a concurrent change.

    ``reasons`` holds DynamoDB's cancellation code per transaction item (``"None"`` for items
    that were fine), so callers can tell which condition failed.
    """

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons

    def failed(self, index: int) -> bool:
        return index < len(self.reasons) and self.reasons[index] not in ("None", "")


def plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; the service only stores integers."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _zero_usage() -> Item:
    return {field: 0 for field in USAGE_FIELDS}


class DynamoStore:
    """One table, addressed only through :mod:`chat_sessions.keys`."""

    def __init__(self, table_name: str, client: Any) -> None:
        self.table_name = table_name
        self.client = client

    # ----------------------------------------------------------------- low level
    def _transact(self, items: list[Item]) -> None:
        for item in items:
            for op in item.values():
                op["TableName"] = self.table_name
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
                raise WriteConflict(reasons) from exc
            raise

    def _get(self, key: keys.Key) -> Item | None:
        resp = self.client.get_item(TableName=self.table_name, Key=dict(key), ConsistentRead=True)
        item = resp.get("Item")
        return plain(item) if item else None

    def _get_many(self, *key_list: keys.Key) -> list[Item | None]:
        """Several items in one round trip, read as of one instant (TransactGetItems)."""
        resp = self.client.transact_get_items(
            TransactItems=[{"Get": {"TableName": self.table_name, "Key": dict(k)}} for k in key_list]
        )
        return [plain(r["Item"]) if r.get("Item") else None for r in resp["Responses"]]

    def _page(
        self,
        pk: str,
        prefix: str,
        limit: int,
        after_sk: str | None,
        forward: bool,
        projection: str | None = None,
        names: Mapping[str, str] | None = None,
    ) -> tuple[list[Item], str | None]:
        """``limit`` items after ``after_sk``, and the sort key to continue from (or None).

        Asks for one item more than the page so the last page is known to be the last, and
        keeps querying while DynamoDB stops at its 1 MB response cap, so a page is never
        short unless the listing has ended.
        """
        items: list[Item] = []
        start = {keys.PK: pk, keys.SK: after_sk} if after_sk else None
        while len(items) <= limit:
            kwargs: Item = {
                "TableName": self.table_name,
                "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
                "ExpressionAttributeValues": {":pk": pk, ":prefix": prefix},
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
            resp = self.client.query(**kwargs)
            items.extend(plain(i) for i in resp.get("Items", []))
            start = resp.get("LastEvaluatedKey")
            if not start:
                break
        if len(items) > limit:
            return items[:limit], items[limit - 1][keys.SK]
        return items, None

    def purge(self, pk: str, prefix: str) -> int:
        """Delete every item of ``pk`` under ``prefix``: paginated queries, batched deletes,
        unprocessed items retried until none is left."""
        deleted = 0
        start: Item | None = None
        while True:
            kwargs: Item = {
                "TableName": self.table_name,
                "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)" if prefix else "PK = :pk",
                "ExpressionAttributeValues": {":pk": pk, ":prefix": prefix} if prefix else {":pk": pk},
                "ProjectionExpression": "PK, SK",
                "ConsistentRead": True,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            resp = self.client.query(**kwargs)
            found = resp.get("Items", [])
            for i in range(0, len(found), _BATCH):
                self._batch_delete([{keys.PK: k[keys.PK], keys.SK: k[keys.SK]} for k in found[i : i + _BATCH]])
            deleted += len(found)
            start = resp.get("LastEvaluatedKey")
            if not start:
                return deleted

    def _batch_delete(self, key_list: list[Item]) -> None:
        requests = [{"DeleteRequest": {"Key": k}} for k in key_list]
        delay = 0.05
        while requests:
            resp = self.client.batch_write_item(RequestItems={self.table_name: requests})
            requests = resp.get("UnprocessedItems", {}).get(self.table_name, [])
            if requests:
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    # ----------------------------------------------------------------- sessions
    def create_session(self, user_id: str, session: Item, max_active: int) -> None:
        """Invariant 4: the session and the user's active-session counter are written in one
        transaction whose condition keeps the counter below ``max_active``."""
        try:
            self._transact(
                [
                    {
                        "Put": {
                            "Item": {**keys.session_key(user_id, session["sessionId"]), "type": "session", **session},
                            "ConditionExpression": "attribute_not_exists(PK)",
                        }
                    },
                    self._quota_increment(user_id, max_active),
                ]
            )
        except WriteConflict as exc:
            if exc.failed(1):
                raise SessionLimitReached(
                    f"At most {max_active} sessions can be active at once; pause or delete one."
                ) from exc
            raise

    def _quota_increment(self, user_id: str, max_active: int) -> Item:
        return {
            "Update": {
                "Key": dict(keys.quota_key(user_id)),
                "UpdateExpression": "SET activeSessions = if_not_exists(activeSessions, :zero) + :one",
                "ConditionExpression": "attribute_not_exists(activeSessions) OR activeSessions < :max",
                "ExpressionAttributeValues": {":zero": 0, ":one": 1, ":max": max_active},
            }
        }

    def _quota_decrement(self, user_id: str) -> Item:
        return {
            "Update": {
                "Key": dict(keys.quota_key(user_id)),
                "UpdateExpression": "SET activeSessions = activeSessions - :one",
                "ConditionExpression": "activeSessions >= :one",
                "ExpressionAttributeValues": {":one": 1},
            }
        }

    def get_session(self, user_id: str, session_id: str) -> Item:
        item = self._get(keys.session_key(user_id, session_id))
        if item is None:
            raise NotFound("Session not found.")
        return item

    def count_active_sessions(self, user_id: str) -> int:
        item = self._get(keys.quota_key(user_id))
        return int(item.get("activeSessions", 0)) if item else 0

    def list_sessions(self, user_id: str, limit: int, after_sk: str | None) -> tuple[list[Item], str | None]:
        return self._page(keys.user_pk(user_id), keys.SESSION_PREFIX, limit, after_sk, forward=False)

    def update_session(self, user_id: str, session_id: str, changes: Item, now: str) -> Item:
        return self._patch(keys.session_key(user_id, session_id), changes, [], now, "Session not found.")

    def _patch(self, key: keys.Key, sets: Item, removes: list[str], now: str, missing: str) -> Item:
        """Set and remove top-level attributes of an existing item (never creating one) and
        return the new item, so a PATCH costs one request."""
        names = {f"#f{i}": field for i, field in enumerate([*sets, *removes])}
        by_name = {field: name for name, field in names.items()}
        values: Item = {":now": now, **{f":v{i}": value for i, value in enumerate(sets.values())}}
        expr = "SET updatedAt = :now" + "".join(f", {by_name[field]} = :v{i}" for i, field in enumerate(sets))
        if removes:
            expr += " REMOVE " + ", ".join(by_name[field] for field in removes)
        kwargs: Item = {
            "TableName": self.table_name,
            "Key": dict(key),
            "UpdateExpression": expr,
            "ConditionExpression": "attribute_exists(PK)",
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        try:
            updated: Item = plain(self.client.update_item(**kwargs)["Attributes"])
            return updated
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise NotFound(missing) from exc
            raise

    def set_session_status(self, user_id: str, session_id: str, status: str, now: str, max_active: int) -> None:
        """Pause or resume. Invariant 4: the status flip and the counter move together, the
        flip conditioned on the old status (so two pauses cannot both decrement) and a resume
        on the counter staying below the limit."""
        old = "active" if status == "paused" else "paused"
        quota = self._quota_decrement(user_id) if status == "paused" else self._quota_increment(user_id, max_active)
        try:
            self._transact(
                [
                    {
                        "Update": {
                            "Key": dict(keys.session_key(user_id, session_id)),
                            "UpdateExpression": "SET #status = :new, updatedAt = :now",
                            "ConditionExpression": "#status = :old",
                            "ExpressionAttributeNames": {"#status": "status"},
                            "ExpressionAttributeValues": {":new": status, ":old": old, ":now": now},
                        }
                    },
                    quota,
                ]
            )
        except WriteConflict as exc:
            if status == "active" and exc.failed(1) and not exc.failed(0):
                raise SessionLimitReached(
                    f"At most {max_active} sessions can be active at once; pause or delete one."
                ) from exc
            raise

    def delete_session(self, user_id: str, session_id: str, status: str) -> int:
        """Invariant 6: the session item goes first, with its quota slot if it held one, in one
        transaction (conditioned on the status read, so the slot is freed exactly once); then
        every chat and message of its partition is purged. Sends and chat writes are
        conditioned on the session item existing, so nothing new lands after the first step."""
        ops: list[Item] = [
            {
                "Delete": {
                    "Key": dict(keys.session_key(user_id, session_id)),
                    "ConditionExpression": "#status = :status",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {":status": status},
                }
            }
        ]
        if status == "active":
            ops.append(self._quota_decrement(user_id))
        self._transact(ops)
        return self.purge(keys.session_partition(user_id, session_id), "")

    # ----------------------------------------------------------------- chats
    def get_session_and_chat(self, user_id: str, session_id: str, chat_id: str) -> tuple[Item, Item]:
        session, chat = self._get_many(
            keys.session_key(user_id, session_id), keys.chat_key(user_id, session_id, chat_id)
        )
        if session is None:
            raise NotFound("Session not found.")
        if chat is None:
            raise NotFound("Chat not found.")
        return session, chat

    def get_chat(self, user_id: str, session_id: str, chat_id: str) -> Item:
        item = self._get(keys.chat_key(user_id, session_id, chat_id))
        if item is None:
            raise NotFound("Chat not found.")
        return item

    def list_chats(
        self, user_id: str, session_id: str, limit: int, after_sk: str | None
    ) -> tuple[list[Item], str | None]:
        return self._page(keys.session_partition(user_id, session_id), keys.CHAT_PREFIX, limit, after_sk, forward=True)

    def _session_switch(
        self,
        user_id: str,
        session_id: str,
        previous: str | None,
        new: str | None,
        now: str,
        chat_delta: int = 0,
        message_delta: int = 0,
    ) -> Item:
        """The session half of every active-chat change, conditioned on the active chat read."""
        values: Item = {":now": now, ":dc": chat_delta, ":dm": message_delta}
        update = "SET updatedAt = :now, chatCount = chatCount + :dc, messageCount = messageCount + :dm"
        if new is None:
            update += " REMOVE activeChatId"
        else:
            update = update.replace("SET ", "SET activeChatId = :new, ", 1)
            values[":new"] = new
        if previous is None:
            condition = "attribute_exists(PK) AND attribute_not_exists(activeChatId)"
        else:
            condition = "activeChatId = :prev"
            values[":prev"] = previous
        return {
            "Update": {
                "Key": dict(keys.session_key(user_id, session_id)),
                "UpdateExpression": update,
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
            }
        }

    def _chat_flag(self, user_id: str, session_id: str, chat_id: str, active: bool, now: str) -> Item:
        return {
            "Update": {
                "Key": dict(keys.chat_key(user_id, session_id, chat_id)),
                "UpdateExpression": "SET active = :new, updatedAt = :now",
                "ConditionExpression": "active = :old",
                "ExpressionAttributeValues": {":new": active, ":old": not active, ":now": now},
            }
        }

    def create_chat(self, user_id: str, session_id: str, chat: Item, previous: str | None) -> None:
        """Invariant 1: the new chat (active), the previous active chat (now inactive) and the
        session's ``activeChatId`` change in one transaction, conditioned on the active chat
        the caller read; a concurrent switch cancels it and the caller retries."""
        ops = [
            {
                "Put": {
                    "Item": {**keys.chat_key(user_id, session_id, chat["chatId"]), "type": "chat", **chat},
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            self._session_switch(user_id, session_id, previous, chat["chatId"], chat["createdAt"], chat_delta=1),
        ]
        if previous is not None:
            ops.append(self._chat_flag(user_id, session_id, previous, False, chat["createdAt"]))
        self._transact(ops)

    def activate_chat(self, user_id: str, session_id: str, chat_id: str, previous: str | None, now: str) -> None:
        """Invariant 1: flip the target on, the previous active chat off and the session's
        pointer, all conditioned on what was read, in one transaction."""
        ops = [
            self._chat_flag(user_id, session_id, chat_id, True, now),
            self._session_switch(user_id, session_id, previous, chat_id, now),
        ]
        if previous is not None:
            ops.append(self._chat_flag(user_id, session_id, previous, False, now))
        self._transact(ops)

    def update_chat(
        self, user_id: str, session_id: str, chat_id: str, sets: Item, removes: list[str], now: str
    ) -> Item:
        return self._patch(keys.chat_key(user_id, session_id, chat_id), sets, removes, now, "Chat not found.")

    def delete_chat(self, user_id: str, session_id: str, chat: Item, active_chat_id: str | None, now: str) -> int:
        """Invariant 1 and 6: the chat leaves, and if it was the active one the session's
        pointer is cleared, in one transaction conditioned on what was read (including the
        chat's message count, so the session's count stays exact); then its messages are
        purged. Sends are conditioned on the chat existing, so none lands after that."""
        chat_id = chat["chatId"]
        was_active = active_chat_id == chat_id
        session_op = self._session_switch(
            user_id,
            session_id,
            active_chat_id,
            None if was_active else active_chat_id,
            now,
            chat_delta=-1,
            message_delta=-int(chat["messageCount"]),
        )
        self._transact(
            [
                {
                    "Delete": {
                        "Key": dict(keys.chat_key(user_id, session_id, chat_id)),
                        "ConditionExpression": "messageCount = :n",
                        "ExpressionAttributeValues": {":n": chat["messageCount"]},
                    }
                },
                session_op,
            ]
        )
        return self.purge(keys.session_partition(user_id, session_id), keys.message_prefix(chat_id))

    # ----------------------------------------------------------------- messages
    def append_user_message(
        self, user_id: str, session_id: str, chat_id: str, message: Item, previous_seq: int
    ) -> None:
        """Invariants 2 and 3: the message takes seq ``previous_seq + 1`` only if the chat's
        ``lastSeq`` is still ``previous_seq`` (no gap, no repeat), the chat is still the
        session's active chat and the session is active, all in one transaction."""
        seq = message["seq"]
        self._transact(
            [
                {
                    "Update": {
                        "Key": dict(keys.chat_key(user_id, session_id, chat_id)),
                        "UpdateExpression": "SET lastSeq = :seq, lastUserSeq = :seq, updatedAt = :now,"
                        " messageCount = messageCount + :one",
                        "ConditionExpression": "lastSeq = :prev AND active = :true",
                        "ExpressionAttributeValues": {
                            ":seq": seq,
                            ":prev": previous_seq,
                            ":true": True,
                            ":now": message["createdAt"],
                            ":one": 1,
                        },
                    }
                },
                {
                    "Put": {
                        "Item": {**keys.message_key(user_id, session_id, chat_id, seq), "type": "message", **message},
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                },
                {
                    "Update": {
                        "Key": dict(keys.session_key(user_id, session_id)),
                        "UpdateExpression": "SET updatedAt = :now, messageCount = messageCount + :one",
                        "ConditionExpression": "#status = :active AND activeChatId = :chat",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {
                            ":now": message["createdAt"],
                            ":one": 1,
                            ":active": "active",
                            ":chat": chat_id,
                        },
                    }
                },
            ]
        )

    def append_assistant_message(
        self, user_id: str, session_id: str, chat_id: str, message: Item, previous_seq: int, reply_to_seq: int
    ) -> None:
        """Invariant 3 for replies: same seq condition as a user message. The reply, the user
        message becoming ``complete`` and the usage added to chat and session totals commit
        together, or not at all."""
        seq = message["seq"]
        usage_values = {f":{f}": message[f] for f in USAGE_FIELDS}
        usage_expr = ", ".join(f"{f} = {f} + :{f}" for f in USAGE_FIELDS)
        now = message["createdAt"]
        self._transact(
            [
                {
                    "Update": {
                        "Key": dict(keys.chat_key(user_id, session_id, chat_id)),
                        "UpdateExpression": "SET lastSeq = :seq, updatedAt = :now, messageCount = messageCount + :one, "
                        + usage_expr,
                        "ConditionExpression": "lastSeq = :prev",
                        "ExpressionAttributeValues": {
                            ":seq": seq,
                            ":prev": previous_seq,
                            ":now": now,
                            ":one": 1,
                            **usage_values,
                        },
                    }
                },
                {
                    "Put": {
                        "Item": {**keys.message_key(user_id, session_id, chat_id, seq), "type": "message", **message},
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                },
                {
                    "Update": {
                        "Key": dict(keys.message_key(user_id, session_id, chat_id, reply_to_seq)),
                        "UpdateExpression": "SET #status = :complete",
                        "ConditionExpression": "attribute_exists(PK)",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {":complete": "complete"},
                    }
                },
                {
                    "Update": {
                        "Key": dict(keys.session_key(user_id, session_id)),
                        "UpdateExpression": f"SET updatedAt = :now, messageCount = messageCount + :one, {usage_expr}",
                        "ConditionExpression": "attribute_exists(PK)",
                        "ExpressionAttributeValues": {":now": now, ":one": 1, **usage_values},
                    }
                },
            ]
        )

    def context_window(
        self, user_id: str, session_id: str, chat_id: str, up_to_seq: int, max_messages: int, whole_items: bool = False
    ) -> list[Item]:
        """The newest ``max_messages`` messages up to ``up_to_seq``, newest first: one bounded
        query, whatever the length of the chat. ``whole_items`` returns every attribute (a
        regenerate answers with the first one); read capacity is the same either way."""
        projection = (
            {}
            if whole_items
            else {"ProjectionExpression": "seq, #role, content, tokens", "ExpressionAttributeNames": {"#role": "role"}}
        )
        resp = self.client.query(
            **projection,
            TableName=self.table_name,
            KeyConditionExpression="PK = :pk AND SK BETWEEN :first AND :last",
            ExpressionAttributeValues={
                ":pk": keys.session_partition(user_id, session_id),
                ":first": keys.message_sk(chat_id, 0),
                ":last": keys.message_sk(chat_id, up_to_seq),
            },
            ScanIndexForward=False,
            Limit=max_messages,
            ConsistentRead=True,
        )
        return [plain(i) for i in resp.get("Items", [])]

    def list_messages(
        self, user_id: str, session_id: str, chat_id: str, limit: int, after_sk: str | None, forward: bool
    ) -> tuple[list[Item], str | None]:
        return self._page(
            keys.session_partition(user_id, session_id), keys.message_prefix(chat_id), limit, after_sk, forward
        )


def new_usage() -> Item:
    return _zero_usage()


@lru_cache(maxsize=1)
def dynamodb_client() -> Any:
    """One client per container, reused across invocations (connection reuse matters more
    than anything else for DynamoDB latency in Lambda)."""
    settings = get_settings()
    resource = boto3.resource(
        "dynamodb",
        endpoint_url=settings.dynamodb_endpoint,
        config=Config(
            retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5, tcp_keepalive=True
        ),
    )
    return resource.meta.client


@lru_cache(maxsize=1)
def get_store() -> DynamoStore:
    return DynamoStore(get_settings().table_name, dynamodb_client())


@lru_cache(maxsize=1)
def plain_dynamodb_client() -> Any:
    """A low-level client for Powertools Idempotency, which serializes attribute values itself
    (the resource client above would serialize them a second time)."""
    settings = get_settings()
    return boto3.client(
        "dynamodb",
        endpoint_url=settings.dynamodb_endpoint,
        config=Config(
            retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5, tcp_keepalive=True
        ),
    )
