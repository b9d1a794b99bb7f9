"""Erasing a user (``DELETE /me``): the marker and the steps that delete everything they own.

The marker is the user's counters item (``keys.quota_key``) carrying ``keys.ERASING_SINCE``.
Every write of the erasure is conditioned on the marker still being there, so an erasure step
that runs late (its stream record retried after the erasure finished and the user came back)
changes nothing; the step that moves on to the next session also names the session it leaves
(``keys.ERASING_SESSION``), so two steps can never both move the pointer and orphan a partition.

Invariants kept here:

- a session item is deleted only in the transaction that makes it the marker's
  ``erasingSession``: its partition (chats, messages, subscriptions) is found again by every
  later step until it is empty, although nothing points at it any more;
- sends, chat writes and forks are conditioned on their session item, so once it is gone
  nothing new lands in the partition being purged; a session create is refused while the
  marker exists (``sessions.quota_increment_unless_erasing``);
- the marker goes last, and only while it is a marker.
"""

from __future__ import annotations

from chat_sessions import keys
from chat_sessions.items import ErasureMarkerItem
from chat_sessions.store.outcomes import ConditionFailed
from chat_sessions.store.table import Item, Table


class ErasureStore:
    def __init__(self, table: Table) -> None:
        self.table = table

    def start(self, user_id: str, now: str) -> None:
        """Mark the user as being erased (one UpdateItem, creating the counters item if there is
        none). A repeat keeps the first ``erasingSince`` and bumps ``erasureRuns``: its stream
        record invokes the erasure again, which restarts one whose chain of steps was lost."""
        self.table.update(
            keys.quota_key(user_id),
            UpdateExpression="SET #since = if_not_exists(#since, :now) ADD #runs :one",
            ExpressionAttributeNames={"#since": keys.ERASING_SINCE, "#runs": keys.ERASURE_RUNS},
            ExpressionAttributeValues={":now": now, ":one": 1},
        )

    def marker(self, user_id: str) -> ErasureMarkerItem | None:
        """The erasure in progress (strongly consistent), or None when there is none."""
        item = self.table.get(keys.quota_key(user_id))
        if item is None or keys.ERASING_SINCE not in item:
            return None
        return ErasureMarkerItem.from_item(item)

    def next_session(self, user_id: str) -> str | None:
        """Any session of the user (the first by sort key), whatever its status: one query of the
        user's partition (its sort keys, at most one session's)."""
        found = self.table.query(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :session)",
            ExpressionAttributeValues={":pk": keys.user_pk(user_id), ":session": keys.SESSION_PREFIX},
            ProjectionExpression="SK",
            Limit=1,
        )
        return str(found[0][keys.SK])[len(keys.SESSION_PREFIX) :] if found else None

    def take_session(self, user_id: str, session_id: str, previous: str | None) -> None:
        """Delete the session item and make it the marker's ``erasingSession`` in one
        transaction, conditioned on the marker still pointing at ``previous`` (the session the
        step finished purging): a step working from a stale marker is refused
        (``ConditionFailed``), and changes nothing."""
        # Only a marker has an ``erasingSession``: naming the previous one implies the marker.
        if previous is None:
            condition = "attribute_exists(#since) AND attribute_not_exists(#session)"
            names = {"#since": keys.ERASING_SINCE, "#session": keys.ERASING_SESSION}
            values: Item = {":next": session_id}
        else:
            condition = "#session = :previous"
            names = {"#session": keys.ERASING_SESSION}
            values = {":next": session_id, ":previous": previous}
        self.table.transact(
            [
                {"Delete": {"Key": dict(keys.session_key(user_id, session_id))}},
                {
                    "Update": {
                        "Key": dict(keys.quota_key(user_id)),
                        "UpdateExpression": "SET #session = :next",
                        "ConditionExpression": condition,
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": values,
                    }
                },
            ]
        )

    def purge_some(self, partition: str, limit: int, keep: frozenset[str] = frozenset()) -> tuple[int, bool]:
        """At most ``limit`` items of ``partition`` deleted; whether it is empty (``keep`` aside)."""
        return self.table.purge_some(partition, limit, keep)

    def touch(self, user_id: str) -> bool:
        """Bump ``erasureRuns``, only while the erasure runs: its stream record invokes the next
        step. False when the erasure has finished (an update would recreate the item)."""
        try:
            self.table.update(
                keys.quota_key(user_id),
                UpdateExpression="ADD #runs :one",
                ConditionExpression="attribute_exists(#since)",
                ExpressionAttributeNames={"#since": keys.ERASING_SINCE, "#runs": keys.ERASURE_RUNS},
                ExpressionAttributeValues={":one": 1},
            )
        except ConditionFailed:
            return False
        return True

    def finish(self, user_id: str) -> bool:
        """Delete the marker (the counters item and all it counted), only while it is one: a
        step that runs after the erasure finished and the user created a session again must not
        take their counters. False when it was not a marker any more."""
        try:
            self.table.call(
                "delete_item",
                TableName=self.table.table_name,
                Key=dict(keys.quota_key(user_id)),
                ConditionExpression="attribute_exists(#since)",
                ExpressionAttributeNames={"#since": keys.ERASING_SINCE},
            )
        except ConditionFailed:
            return False
        return True
