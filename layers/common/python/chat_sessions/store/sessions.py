"""Sessions and the user's active-session counter.

Invariant kept here: the counter equals the user's sessions whose status holds a place
(:data:`~chat_sessions.session_status.HOLDS_QUOTA`) and never exceeds ``MAX_ACTIVE_SESSIONS``.
Every status change and every create or delete moves it in the same transaction.
"""

from __future__ import annotations

from typing import Any

from chat_sessions import keys
from chat_sessions.errors import NotFound, SessionLimitReached
from chat_sessions.items import CreateMarkerItem, QuotaItem, SessionItem, SessionStatus, checked_changes
from chat_sessions.session_status import HOLDS_QUOTA, READ_ONLY, Transition
from chat_sessions.store import markers
from chat_sessions.store.outcomes import ConditionFailed
from chat_sessions.store.table import Item, Table, plain


def limit_reached(max_active: int) -> SessionLimitReached:
    return SessionLimitReached(f"At most {max_active} sessions can be active at once; pause or delete one.")


def quota_increment(user_id: str, max_active: int) -> Item:
    """Take a place: refused (condition) once the counter is at ``max_active``."""
    return {
        "Update": {
            "Key": dict(keys.quota_key(user_id)),
            "UpdateExpression": "SET activeSessions = if_not_exists(activeSessions, :zero) + :one",
            "ConditionExpression": "attribute_not_exists(activeSessions) OR activeSessions < :max",
            "ExpressionAttributeValues": {":zero": 0, ":one": 1, ":max": max_active},
        }
    }


def quota_decrement(user_id: str) -> Item:
    """Free a place: never below zero."""
    return {
        "Update": {
            "Key": dict(keys.quota_key(user_id)),
            "UpdateExpression": "SET activeSessions = activeSessions - :one",
            "ConditionExpression": "activeSessions >= :one",
            "ExpressionAttributeValues": {":one": 1},
        }
    }


class SessionStore:
    def __init__(self, table: Table) -> None:
        self.table = table

    def create(
        self, user_id: str, session: SessionItem, max_active: int, marker: tuple[str, CreateMarkerItem] | None = None
    ) -> None:
        """The session and the counter's increment in one transaction, the increment
        conditioned on the counter staying within ``max_active``; with ``marker``, the key's
        marker too (``MarkerExists`` when the key already created a session)."""
        ops = [
            {
                "Put": {
                    "Item": {
                        **keys.session_key(user_id, session.session_id),
                        keys.STATUS_SK: keys.status_sk(session.status, session.session_id),
                        **session.to_item(),
                    },
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            quota_increment(user_id, max_active),
        ]
        try:
            markers.create(self.table, user_id, ops, marker)  # the marker before the quota: that create holds a place
        except ConditionFailed as exc:
            if exc.failed(1):
                raise limit_reached(max_active) from exc
            raise

    def get(self, user_id: str, session_id: str) -> SessionItem:
        item = self.table.get(keys.session_key(user_id, session_id))
        if item is None:
            raise NotFound("Session not found.")
        return SessionItem.from_item(item)

    def active_count(self, user_id: str) -> int:
        item = self.table.get(keys.quota_key(user_id))
        return QuotaItem.from_item(item).active_sessions if item else 0

    def page(
        self, user_id: str, statuses: tuple[SessionStatus, ...], limit: int, after_sk: str | None
    ) -> tuple[list[SessionItem], str | None]:
        """The newest ``limit`` sessions with one of ``statuses`` older than the session
        ``after_sk`` names, and the sort key to continue after (None: the listing ended).

        One strongly consistent query of the ``ByStatus`` index per status (its items are the
        whole sessions), each for ``limit + 1`` items, merged newest first: a page is never
        short unless the listing has ended, whatever the other statuses hold."""
        found: list[Item] = []
        for status in statuses:
            found += self._newest(user_id, status, limit + 1, after_sk)
        found.sort(key=lambda item: str(item[keys.SK]), reverse=True)
        page = [SessionItem.from_item(i) for i in found[:limit]]
        return page, (str(found[limit - 1][keys.SK]) if len(found) > limit else None)

    def _newest(self, user_id: str, status: SessionStatus, wanted: int, after_sk: str | None) -> list[Item]:
        """Up to ``wanted`` sessions in ``status``, newest first, older than ``after_sk``: the
        range ends at that session's place in the index (it may be in another status now, or
        gone: the bound is a key, not an item), itself left out. DynamoDB's 1 MB cap on a
        response is followed to the end, so fewer than ``wanted`` means there are no more."""
        lowest = keys.status_sk(status)
        values: Item = {":pk": keys.user_pk(user_id), ":low": lowest}
        if after_sk is None:
            condition = "PK = :pk AND begins_with(statusSk, :low)"
        else:
            condition = "PK = :pk AND statusSk BETWEEN :low AND :high"
            values[":high"] = keys.status_sk(status, after_sk[len(keys.SESSION_PREFIX) :])
        items: list[Item] = []
        start: Item | None = None
        while len(items) < wanted:
            kwargs: Item = {
                "TableName": self.table.table_name,
                "IndexName": keys.STATUS_INDEX,
                "KeyConditionExpression": condition,
                "ExpressionAttributeValues": values,
                "ScanIndexForward": False,
                "ConsistentRead": True,
                "Limit": wanted + 1 - len(items),  # one more: the bound itself may be among them
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            resp = self.table.call("query", **kwargs)
            items += [plain(i) for i in resp.get("Items", []) if i[keys.SK] != after_sk]
            start = resp.get("LastEvaluatedKey")
            if not start:
                break
        return items[:wanted]

    def update(self, user_id: str, session_id: str, sets: dict[str, Any], now: str) -> SessionItem:
        """One request, conditioned on the session existing and not being archived; a refusal
        is raised as ``ConditionFailed`` for the caller to read why."""
        checked_changes(SessionItem, sets, [])
        key = keys.session_key(user_id, session_id)
        patch = self.table.patch_op(key, sets, [], now)["Update"]
        updated = self.table.update(
            key,
            UpdateExpression=patch["UpdateExpression"],
            ConditionExpression="attribute_exists(PK) AND #status <> :archived",
            ExpressionAttributeNames={**patch.get("ExpressionAttributeNames", {}), "#status": "status"},
            ExpressionAttributeValues={**patch.get("ExpressionAttributeValues", {}), ":archived": READ_ONLY},
            ReturnValues="ALL_NEW",
        )["Attributes"]
        return SessionItem.from_item(plain(updated))

    def set_status(self, user_id: str, session_id: str, change: Transition, now: str, max_active: int) -> None:
        """The status flip conditioned on the status it replaces (so two pauses cannot both
        free a place), with the counter's move in the same transaction (a resume refused at
        the limit). The session's ``statusSk`` moves with it: the ``ByStatus`` index is kept by
        DynamoDB with the item, never out of step with ``status``."""
        ops: list[Item] = [
            {
                "Update": {
                    "Key": dict(keys.session_key(user_id, session_id)),
                    "UpdateExpression": "SET #status = :new, statusSk = :sk, updatedAt = :now",
                    "ConditionExpression": "#status = :old",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {
                        ":new": change.new,
                        ":sk": keys.status_sk(change.new, session_id),
                        ":old": change.old,
                        ":now": now,
                    },
                }
            }
        ]
        if change.quota > 0:
            ops.append(quota_increment(user_id, max_active))
        elif change.quota < 0:
            ops.append(quota_decrement(user_id))
        try:
            self.table.transact(ops)
        except ConditionFailed as exc:
            if change.quota > 0 and exc.failed(1) and not exc.failed(0):
                raise limit_reached(max_active) from exc
            raise

    def delete(self, user_id: str, session_id: str, status: str) -> int:
        """The session item goes first, with its place under the limit if it held one, in one
        transaction conditioned on the status read (so the place is freed exactly once); then
        every chat and message of its partition is purged. Chat writes and sends are
        conditioned on the session item, so nothing new lands after the first step."""
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
        if status in HOLDS_QUOTA:
            ops.append(quota_decrement(user_id))
        self.table.transact(ops)
        return self.purge(user_id, session_id)

    def purge(self, user_id: str, session_id: str) -> int:
        """Everything a deleted session owned (idempotent)."""
        return self.table.purge(keys.session_partition(user_id, session_id), "")
