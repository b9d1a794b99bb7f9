"""Messages: appends that keep ``seq`` gap-free, the chat's thread, listings.

Layout: a chat's head (model, system prompt) and its messages share one sort-key range of the
session's partition, the head first, then the messages newest first (``keys.message_sk`` counts
down). One bounded ``Query`` therefore returns the head and the newest messages: all a send
reads before it calls the model.

Invariants kept here:

- ``seq`` is 1..N with no gap and no repeat: every append puts the message at the seq after
  the newest one read (strongly consistent) with ``attribute_not_exists(PK)``; messages are
  never removed one by one, so the seq after the newest is free unless someone took it first.
- a user message lands only in the session's active chat while the session is active: a
  ``ConditionCheck`` on the session in the same transaction.
- a reply, the user message it answers turning ``complete``, and the counters (message count
  and usage of chat and session) commit together or not at all; the user message's status
  is conditioned on the one read, so a message is counted exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chat_sessions import keys, usage
from chat_sessions.errors import NotFound
from chat_sessions.items import ChatHeadItem, MessageItem, SendMarkerItem
from chat_sessions.session_status import READ_ONLY
from chat_sessions.store.markers import marker_put
from chat_sessions.store.outcomes import ConditionFailed
from chat_sessions.store.replies import reply_condition
from chat_sessions.store.sessions import counters_update, renewed
from chat_sessions.store.table import Item, Table, plain

USAGE_FIELDS = ("promptTokens", "completionTokens", "totalTokens")

USER_MESSAGE, SESSION_CHECK, MARKER = 0, 1, 2
"""Item indexes in a user message's transaction (for cancellation reasons); the budget's check,
when there is a budget, is the last item."""
REPLY, ANSWERED, CHAT, SESSION, COUNTERS, REPLY_MARKER = 0, 1, 2, 3, 4, 5
"""Item indexes in a reply's transaction."""


@dataclass(frozen=True)
class Thread:
    """A chat's head and its newest messages (newest first), as one query read them."""

    head: ChatHeadItem
    newest: list[MessageItem]

    @property
    def last_seq(self) -> int:
        """The newest seq; for a fork with nothing of its own, where its shared history ends."""
        return self.newest[0].seq if self.newest else self.head.shared_up_to


class MessageStore:
    def __init__(self, table: Table) -> None:
        self.table = table

    def thread(self, user_id: str, session_id: str, chat_id: str, max_messages: int, consistent: bool = True) -> Thread:
        """The head and the newest ``max_messages`` messages: one bounded query, whatever the
        length of the chat. ``NotFound`` when the chat has no head (no such chat, or, read
        eventually consistent, one created a moment ago)."""
        items = self.table.query(
            consistent,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :head)",
            ExpressionAttributeValues={
                ":pk": keys.session_partition(user_id, session_id),
                ":head": keys.head_sk(chat_id),
            },
            ScanIndexForward=True,
            Limit=max_messages + 1,
        )
        if not items or items[0][keys.SK] != keys.head_sk(chat_id) or "keptUpTo" in items[0]:
            raise NotFound("Chat not found.")  # none, or deleted with messages forks share
        newest = [MessageItem.from_item(i) for i in items[1:] if i.get("type") == "message"]  # not a fork's base
        return Thread(ChatHeadItem.from_item(items[0]), newest)

    def last_seq(self, user_id: str, session_id: str, chat_id: str, floor: int = 0) -> int:
        """The newest message's seq (``floor`` for none: a fork's shared history ends there),
        after an append lost its seq to another."""
        items = self.table.query(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues={
                ":pk": keys.session_partition(user_id, session_id),
                ":prefix": keys.message_prefix(chat_id),
            },
            ProjectionExpression="seq",
            Limit=1,
        )
        return int(items[0]["seq"]) if items and "seq" in items[0] else floor

    def append_user(
        self,
        user_id: str,
        message: MessageItem,
        marker: tuple[str, SendMarkerItem] | None = None,
        budget: int = 0,
        extra: Sequence[Item] = (),
    ) -> None:
        """The message at its seq, only if that seq is free, and only while the session is
        active with this chat as its active chat, in one transaction. With ``marker`` (an
        ``Idempotency-Key``'s hash and record) the marker is written too, refused if that key
        already stored a message. With a ``budget`` (``MONTHLY_TOKEN_BUDGET``), only while the
        user's tokens in the message's period are below it: a ``ConditionCheck`` on the
        counters item, refused as ``token_budget_exhausted`` when nothing else refused it."""
        session_id, chat_id = message.session_id, message.chat_id
        ops: list[Item] = [
            {
                "Put": {
                    "Item": {**keys.message_key(user_id, session_id, chat_id, message.seq), **message.to_item()},
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            {
                # An Update, not a ConditionCheck, only to renew expiresAt: the same condition,
                # the same write units (README, "Retention").
                "Update": renewed(
                    {
                        "Key": dict(keys.session_key(user_id, session_id)),
                        "ConditionExpression": "#status = :active AND activeChatId = :chat",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {":active": "active", ":chat": chat_id},
                    },
                    message.created_at,
                )
            },
        ]
        if marker is not None:
            ops.append(marker_put(user_id, *marker))
        ops.extend(extra)  # the chat's lease (store.replies), after the marker, before the budget
        if budget > 0:
            ops.append(
                {
                    "ConditionCheck": {
                        "Key": dict(keys.quota_key(user_id)),
                        "ConditionExpression": "attribute_not_exists(#spent) OR #spent < :budget",
                        "ExpressionAttributeNames": {
                            "#spent": usage.period_field("totalTokens", usage.period_of(message.created_at))
                        },
                        "ExpressionAttributeValues": {":budget": budget},
                    }
                }
            )
        try:
            self.table.transact(ops)
        except ConditionFailed as exc:
            if budget > 0 and exc.failed(len(ops) - 1) and not (exc.failed(USER_MESSAGE) or exc.failed(SESSION_CHECK)):
                raise usage.budget_exhausted(budget) from exc
            raise

    def append_reply(
        self,
        user_id: str,
        reply: MessageItem,
        answered: MessageItem,
        marker: tuple[str, SendMarkerItem] | None = None,
        extra: Sequence[Item] = (),
        generated_by: str | None = None,
    ) -> None:
        """The reply at its seq (only if free), the answered user message turning ``complete``
        (conditioned on the status read, and remembering its first reply), and the counters of
        chat and session, and of the user (with the tokens of the reply's period): +1 for the
        reply, +1 more for a user message answered for the first time. The chat and the session
        must still exist, the session not archived (a reply whose session was archived while
        the model answered is refused: nothing lands in an archived session)."""
        session_id, chat_id = reply.session_id, reply.chat_id
        counted = 2 if answered.status == "unanswered" else 1
        usage_values = {
            ":promptTokens": reply.prompt_tokens or 0,
            ":completionTokens": reply.completion_tokens or 0,
            ":totalTokens": reply.total_tokens or 0,
        }
        counters = "messageCount = messageCount + :n, " + ", ".join(f"{f} = {f} + :{f}" for f in USAGE_FIELDS)
        now = reply.created_at
        ops: list[Item] = [
            {
                "Put": {
                    "Item": {**keys.message_key(user_id, session_id, chat_id, reply.seq), **reply.to_item()},
                    **reply_condition(generated_by),
                }
            },
            {
                "Update": {
                    # A fork's question may be a shared one, stored in another chat's range: answered
                    # there already (the fork copies an unanswered one), so this changes nothing.
                    "Key": dict(keys.message_key(user_id, session_id, answered.chat_id, answered.seq)),
                    "UpdateExpression": "SET #status = :complete, replySeq = if_not_exists(replySeq, :seq)",
                    "ConditionExpression": "#status = :was",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {
                        ":complete": "complete",
                        ":seq": reply.seq,
                        ":was": answered.status,
                    },
                }
            },
            {
                "Update": {
                    "Key": dict(keys.chat_key(user_id, session_id, chat_id)),
                    "UpdateExpression": f"SET updatedAt = :now, {counters}",
                    "ConditionExpression": "attribute_exists(PK)",
                    "ExpressionAttributeValues": {":now": now, ":n": counted, **usage_values},
                }
            },
            {
                "Update": renewed(
                    {
                        "Key": dict(keys.session_key(user_id, session_id)),
                        "UpdateExpression": f"SET updatedAt = :now, {counters}",
                        "ConditionExpression": "attribute_exists(PK) AND #status <> :archived",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {
                            ":now": now,
                            ":n": counted,
                            ":archived": READ_ONLY,
                            **usage_values,
                        },
                    },
                    now,
                )
            },
        ]
        tokens = {field: int(usage_values[":" + field]) for field in USAGE_FIELDS}
        ops.append({"Update": counters_update(user_id, {"messages": counted, **tokens}, usage.period_of(now), tokens)})
        if marker is not None:
            ops.append(marker_put(user_id, *marker))
        ops.extend(extra)
        self.table.transact(ops)

    def get(self, user_id: str, session_id: str, chat_id: str, seq: int) -> MessageItem | None:
        item = self.table.get(keys.message_key(user_id, session_id, chat_id, seq))
        return MessageItem.from_item(item) if item else None

    def get_pair(
        self, user_id: str, session_id: str, chat_id: str, first: int, second: int
    ) -> tuple[MessageItem | None, MessageItem | None]:
        """Two messages of a chat in one request (an exchange read back)."""
        a, b = self.table.get_batch(
            keys.message_key(user_id, session_id, chat_id, first),
            keys.message_key(user_id, session_id, chat_id, second),
        )
        return (MessageItem.from_item(a) if a else None, MessageItem.from_item(b) if b else None)

    def landed(self, message: MessageItem, user_id: str) -> bool:
        """Whether ``message`` is stored at its seq: after a refused append, tells "an earlier
        attempt of mine committed and its answer was lost" from "someone else took the seq"."""
        stored = self.get(user_id, message.session_id, message.chat_id, message.seq)
        return stored is not None and stored.message_id == message.message_id

    def get_marker(self, user_id: str, key_hash: str) -> SendMarkerItem | None:
        item = self.table.get(keys.marker_key(user_id, key_hash))
        return SendMarkerItem.from_item(item) if item else None

    def last_user_message(self, user_id: str, session_id: str, chat_id: str, before_seq: int) -> MessageItem | None:
        """The newest user message older than ``before_seq``: for a regenerate whose thread
        read held replies only (a chat regenerated more times than the thread reads)."""
        low, high = keys.seq_range(chat_id, 0, max(before_seq - 1, 0))
        return newest_user_message(self.table, keys.session_partition(user_id, session_id), low, high)


def newest_user_message(table: Table, partition: str, low_sk: str, high_sk: str) -> MessageItem | None:
    """The newest user message with a sort key in ``low_sk..high_sk`` (messages sort newest
    first), read a page of 100 at a time past the replies in between."""
    start: Item | None = None
    while True:
        kwargs: Item = {
            "KeyConditionExpression": "PK = :pk AND SK BETWEEN :low AND :high",
            "ExpressionAttributeValues": {":pk": partition, ":low": low_sk, ":high": high_sk},
            "Limit": 100,
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        resp = table.call("query", TableName=table.table_name, ConsistentRead=True, **kwargs)
        for item in resp.get("Items", []):
            if item.get("role") == "user":
                return MessageItem.from_item(plain(item))
        start = resp.get("LastEvaluatedKey")
        if not start:
            return None
