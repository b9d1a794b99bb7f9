"""Sessions and the user's counters (:mod:`chat_sessions.usage`).

Invariants kept here: the active-session counter equals the user's sessions whose status holds
a place (:data:`~chat_sessions.session_status.HOLDS_QUOTA`) and never exceeds
``MAX_ACTIVE_SESSIONS``; the counter of each status equals the sessions in it. Every status
change and every create or delete moves them in the same transaction.
"""

from __future__ import annotations

from typing import Any

from chat_sessions import keys, retention, usage
from chat_sessions.errors import ERASURE_RETRY_AFTER_SECONDS, ErasureInProgress, NotFound, SessionLimitReached
from chat_sessions.items import (
    CreateMarkerItem,
    ExpiredReceiptItem,
    QuotaItem,
    SessionItem,
    SessionStatus,
    checked_changes,
)
from chat_sessions.session_status import HOLDS_QUOTA, READ_ONLY, Transition
from chat_sessions.store import markers
from chat_sessions.store.outcomes import ConditionFailed
from chat_sessions.store.table import Item, Table, plain

RECEIPT, EXPIRED_COUNTERS = 0, 1
"""Item indexes in the transaction that counts an expired session (``count_expired``)."""


def erasing() -> ErasureInProgress:
    return ErasureInProgress(
        "Your data is being erased; no session can be created until that has finished.",
        headers={"Retry-After": ERASURE_RETRY_AFTER_SECONDS},
    )


def limit_reached(max_active: int) -> SessionLimitReached:
    return SessionLimitReached(f"At most {max_active} sessions can be active at once; pause or delete one.")


def counters_update(
    user_id: str | None,
    moves: dict[str, int],
    period: str | None = None,
    period_moves: dict[str, int] | None = None,
    at: keys.Key | None = None,
) -> Item:
    """The body of an ``Update`` of the user's counters item (:mod:`chat_sessions.usage`):
    each counter in ``moves`` changes by its delta (a missing one counts from zero); with
    ``period``, the period's token attributes by ``period_moves`` and the previous period's
    removed. A transaction names an item once, so every move of one request is this one item.
    ``at``: the counters item's key when the caller has a stream record's keys, not a user id."""
    names: dict[str, str] = {}
    values: Item = {":zero": 0}
    sets: list[str] = []
    periodic: dict[str, int] = {}
    if period is not None:
        periodic = {usage.period_field(f, period): d for f, d in (period_moves or {}).items()}
    for field, delta in {**moves, **periodic}.items():
        n = len(names)
        names[f"#c{n}"] = field
        values[f":c{n}"] = delta
        sets.append(f"#c{n} = if_not_exists(#c{n}, :zero) + :c{n}")
    expression = "SET " + ", ".join(sets)
    if period is not None:
        gone = [usage.period_field(f, usage.previous_period(period)) for f in usage.TOKEN_FIELDS]
        names.update({f"#old{i}": name for i, name in enumerate(gone)})
        expression += " REMOVE " + ", ".join(f"#old{i}" for i in range(len(gone)))
    return {
        "Key": dict(at if at is not None else keys.quota_key(str(user_id))),
        "UpdateExpression": expression,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def counters_move(user_id: str, moves: dict[str, int]) -> Item:
    """The counters moved, unconditionally: the transaction's other items decide (the status,
    the counts, the items counted are conditioned on what was read), so the move is exact."""
    return {"Update": counters_update(user_id, moves)}


def quota_increment(user_id: str, max_active: int, also: dict[str, int] | None = None) -> Item:
    """Take a place: refused (condition) once the counter is at ``max_active``; ``also``: the
    other counters the same request moves."""
    update = counters_update(user_id, {usage.STATUS_COUNTERS["active"]: 1, **(also or {})})
    return {
        "Update": {
            **update,
            "ConditionExpression": "attribute_not_exists(activeSessions) OR activeSessions < :max",
            "ExpressionAttributeValues": {**update["ExpressionAttributeValues"], ":max": max_active},
        }
    }


def quota_increment_unless_erasing(user_id: str, max_active: int) -> Item:
    """A new session's place (``quota_increment``), refused too while ``DELETE /me`` erases the
    user (the counters item carries ``keys.ERASING_SINCE``): the erasure finds the user's items
    from their sessions, so none may appear behind it. Costs nothing: the item is written anyway."""
    update = counters_update(user_id, {usage.STATUS_COUNTERS["active"]: 1})
    condition = "(attribute_not_exists(activeSessions) OR activeSessions < :max) AND attribute_not_exists(#erasing)"
    return {
        "Update": {
            **update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {**update["ExpressionAttributeNames"], "#erasing": keys.ERASING_SINCE},
            "ExpressionAttributeValues": {**update["ExpressionAttributeValues"], ":max": max_active},
        }
    }


def quota_decrement(user_id: str, also: dict[str, int] | None = None) -> Item:
    """Free a place: never below zero; ``also``: the other counters the same request moves."""
    update = counters_update(user_id, {usage.STATUS_COUNTERS["active"]: -1, **(also or {})})
    return {
        "Update": {
            **update,
            "ConditionExpression": "activeSessions >= :one",
            "ExpressionAttributeValues": {**update["ExpressionAttributeValues"], ":one": 1},
        }
    }


def renewed(update: Item, now: str, archived: bool = False) -> Item:
    """The body of an ``Update`` of a session item (``update``, changed in place and returned)
    that also renews its ``expiresAt`` from ``now`` (:mod:`chat_sessions.retention`), or removes
    it when the retention of the status the update leaves is 0. Every write that touches a
    session item goes through here, so retention costs no request of its own."""
    expires = retention.expires_at(now, archived)
    expression = str(update.get("UpdateExpression", "")).strip()
    if expires is None:
        expression += ", expiresAt" if " REMOVE " in f" {expression} " else " REMOVE expiresAt"
    else:
        update["ExpressionAttributeValues"] = {**update.get("ExpressionAttributeValues", {}), ":expiresAt": expires}
        if expression.startswith("SET "):
            expression = expression.replace("SET ", "SET expiresAt = :expiresAt, ", 1)
        else:
            expression = f"SET expiresAt = :expiresAt {expression}"
    update["UpdateExpression"] = expression.strip()
    return update


def _numbers(item: Item) -> dict[str, int]:
    return {name: value for name, value in item.items() if isinstance(value, int) and not isinstance(value, bool)}


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
            quota_increment_unless_erasing(user_id, max_active),
        ]
        try:
            markers.create(self.table, user_id, ops, marker)  # the marker before the quota: that create holds a place
        except ConditionFailed as exc:
            if exc.failed(1):
                if self.erasing(user_id):
                    raise erasing() from exc
                raise limit_reached(max_active) from exc
            raise

    def erasing(self, user_id: str) -> bool:
        """Whether ``DELETE /me`` is erasing the user (read after a create was refused, to say why)."""
        return keys.ERASING_SINCE in (self.table.get(keys.quota_key(user_id)) or {})

    def get(self, user_id: str, session_id: str) -> SessionItem:
        item = self.table.get(keys.session_key(user_id, session_id))
        if item is None:
            raise NotFound("Session not found.")
        return SessionItem.from_item(item)

    def active_count(self, user_id: str) -> int:
        item = self.table.get(keys.quota_key(user_id))
        return QuotaItem.from_item(item).active_sessions if item else 0

    def get_with_counters(self, user_id: str, session_id: str) -> tuple[SessionItem, dict[str, int]]:
        """The session and the user's counters as of one instant (one TransactGetItems)."""
        session, counters = self.table.get_many(keys.session_key(user_id, session_id), keys.quota_key(user_id))
        if session is None:
            raise NotFound("Session not found.")
        return SessionItem.from_item(session), _numbers(counters or {})

    def counters(self, user_id: str) -> dict[str, int]:
        """The user's counters item as stored (one strongly consistent read), missing ones 0."""
        return _numbers(self.table.get(keys.quota_key(user_id)) or {})

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
        patch = renewed(self.table.patch_op(key, sets, [], now)["Update"], now)
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
                "Update": renewed(
                    {
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
                    },
                    now,
                    archived=change.new == READ_ONLY,
                )
            }
        ]
        old, new = usage.STATUS_COUNTERS[change.old], usage.STATUS_COUNTERS[change.new]
        if change.quota > 0:
            ops.append(quota_increment(user_id, max_active, also={old: -1}))
        elif change.quota < 0:
            ops.append(quota_decrement(user_id, also={new: 1}))
        else:
            ops.append(counters_move(user_id, {old: -1, new: 1}))
        try:
            self.table.transact(ops)
        except ConditionFailed as exc:
            if change.quota > 0 and exc.failed(1) and not exc.failed(0):
                raise limit_reached(max_active) from exc
            raise

    def delete(
        self, user_id: str, session_id: str, status: SessionStatus, chat_count: int = 0, message_count: int = 0
    ) -> int:
        """The session item goes first, with its place under the limit if it held one and the
        user's counters (its status, its chats and messages), in one transaction conditioned on
        the status and counts read (so the place is freed and the counts leave exactly once);
        then every chat and message of its partition is purged. Chat writes and sends are
        conditioned on the session item, so nothing new lands after the first step."""
        ops: list[Item] = [
            {
                "Delete": {
                    "Key": dict(keys.session_key(user_id, session_id)),
                    "ConditionExpression": "#status = :status AND chatCount = :chats AND messageCount = :messages",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {
                        ":status": status,
                        ":chats": chat_count,
                        ":messages": message_count,
                    },
                }
            }
        ]
        counts = {"chats": -chat_count, "messages": -message_count}
        if status in HOLDS_QUOTA:
            ops.append(quota_decrement(user_id, also=counts))
        else:
            ops.append(counters_move(user_id, {usage.STATUS_COUNTERS[status]: -1, **counts}))
        self.table.transact(ops)
        return self.purge(user_id, session_id)

    def count_expired(self, pk: str, sk: str, session: SessionItem, receipt_expires: int) -> bool:
        """Take a session that DynamoDB's TTL removed (its keys and its last image, from the
        stream) off the user's counters, exactly once however often the record is delivered:
        one transaction that creates the session's receipt (``keys.expired_session``, refused
        once it exists: a retried record counts nothing) and moves the counters (refused when
        the counters item is gone: a user erased meanwhile has nothing left to count down, and
        an unconditional move would recreate it below zero). The session's ``chatCount`` and
        ``messageCount`` are exactly what it added to the user's ``chats`` and ``messages``:
        every transaction that moves one moves the other. True when this call counted it."""
        found = keys.expired_session(pk, sk)
        if found is None:
            return False
        counters_key, receipt_key = found
        receipt = ExpiredReceiptItem(session_id=session.session_id, expires_at=receipt_expires)
        moves = {
            usage.STATUS_COUNTERS[session.status]: -1,
            "chats": -session.chat_count,
            "messages": -session.message_count,
        }
        counters = counters_update(None, moves, at=counters_key)
        ops: list[Item] = [
            {"Put": {"Item": {**receipt_key, **receipt.to_item()}, "ConditionExpression": "attribute_not_exists(PK)"}},
            {"Update": {**counters, "ConditionExpression": "attribute_exists(PK)"}},
        ]
        try:
            self.table.transact(ops)
        except ConditionFailed as exc:
            if exc.failed(RECEIPT) or exc.failed(EXPIRED_COUNTERS):
                return False  # counted before, or no counters left to move
            raise
        return True

    def purge(self, user_id: str, session_id: str) -> int:
        """Everything a deleted session owned (idempotent)."""
        return self.table.purge(keys.session_partition(user_id, session_id), "")
