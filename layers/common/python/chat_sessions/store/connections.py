"""WebSocket connections and their subscriptions to chats (``chat_sessions.push``).

A connection item (``USER#u | WSCONN#<connectionId>``) holds the set of chats it subscribed to;
each subscription is also an item of its own in the session's partition
(``USER#u#SESSION#s | SUB#<chatId>#<connectionId>``), so a push finds a chat's subscribers with
one query, and ``$disconnect`` deletes them by key, without a query. Both carry ``expiresAt``
(the table's TTL attribute): a connection API Gateway dropped without a ``$disconnect`` (it may)
is removed by DynamoDB after API Gateway's two-hour connection limit has passed.
"""

from __future__ import annotations

from typing import Any

from chat_sessions import keys
from chat_sessions.store.outcomes import ConditionFailed
from chat_sessions.store.table import Item, Table


class ChatNotFound(Exception):
    """The chat is not the caller's (or does not exist)."""


class ConnectionGone(Exception):
    """The connection item is gone ($disconnect ran, or TTL removed it)."""


class ConnectionStore:
    def __init__(self, table: Table) -> None:
        self.table = table

    def connect(self, user_id: str, connection_id: str, connected_at: str, expires_at: int) -> None:
        """One PutItem. Connection ids are unique per API, so no condition guards it."""
        self.table.call(
            "put_item",
            TableName=self.table.table_name,
            Item={
                **keys.connection_key(user_id, connection_id),
                "type": "connection",
                "connectionId": connection_id,
                "connectedAt": connected_at,
                "expiresAt": expires_at,
            },
        )

    def subscribe(self, user_id: str, connection_id: str, session_id: str, chat_id: str, expires_at: int) -> None:
        """One transaction: the chat must exist in the caller's own partition (a condition on the
        key built from the caller's user id, so nobody subscribes to another user's chat), the
        connection must still exist (a subscription never outlives its ``$disconnect``), and the
        subscription item is written. Raises :class:`ChatNotFound` or :class:`ConnectionGone`."""
        connection = keys.connection_key(user_id, connection_id)
        subscription = keys.subscription_key(user_id, session_id, chat_id, connection_id)
        ops: list[Item] = [
            {
                "ConditionCheck": {
                    "Key": dict(keys.chat_key(user_id, session_id, chat_id)),
                    "ConditionExpression": "attribute_exists(PK)",
                }
            },
            {
                "Update": {
                    "Key": dict(connection),
                    "UpdateExpression": "ADD subscriptions :ref",
                    "ConditionExpression": "attribute_exists(PK)",
                    "ExpressionAttributeValues": {":ref": {keys.subscription_ref(session_id, chat_id)}},
                }
            },
            {
                "Put": {
                    "Item": {
                        **subscription,
                        "type": "subscription",
                        "connectionId": connection_id,
                        "expiresAt": expires_at,
                    }
                }
            },
        ]
        try:
            self.table.transact(ops)
        except ConditionFailed as exc:
            if exc.failed(0):
                raise ChatNotFound from exc
            raise ConnectionGone from exc

    def disconnect(self, user_id: str, connection_id: str) -> int:
        """Delete the connection and every subscription it lists: one DeleteItem (which returns
        the list) and one BatchWriteItem per 25 subscriptions. Returns the subscriptions deleted."""
        resp = self.table.call(
            "delete_item",
            TableName=self.table.table_name,
            Key=dict(keys.connection_key(user_id, connection_id)),
            ReturnValues="ALL_OLD",
        )
        refs = sorted(resp.get("Attributes", {}).get("subscriptions", set()))
        subscriptions = [dict(keys.subscription_key_of_ref(user_id, ref, connection_id)) for ref in refs]
        self.table.delete_keys(subscriptions)
        return len(subscriptions)

    def subscribers(self, partition: str, chat_id: str) -> list[Item]:
        """The subscriptions to a chat (keys and connection id), one query."""
        pk, prefix = keys.subscription_prefix_in(partition, chat_id)
        return self.table.query(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues={":pk": pk, ":prefix": prefix},
            ProjectionExpression="PK, SK, connectionId",
        )

    def forget(self, subscription: Item) -> None:
        """Delete a subscription whose connection is gone (by the keys a query returned)."""
        key: dict[str, Any] = {keys.PK: subscription[keys.PK], keys.SK: subscription[keys.SK]}
        self.table.call("delete_item", TableName=self.table.table_name, Key=key)
