"""Messages: appends that keep ``seq`` gap-free, the context window, listings.

Invariants kept here: a chat's messages are numbered 1..N with no gap and no repeat (every
append is conditioned on the chat's ``lastSeq`` being the seq before it); a user message lands
only in the session's active chat while the session is active; a reply, the user message it
answers turning ``complete`` and the usage totals commit together or not at all.
"""

from __future__ import annotations

from chat_sessions import keys
from chat_sessions.items import MessageItem, SendMarkerItem
from chat_sessions.store.table import Item, Table

USAGE_FIELDS = ("promptTokens", "completionTokens", "totalTokens")


class MessageStore:
    def __init__(self, table: Table) -> None:
        self.table = table

    def append_user(
        self,
        user_id: str,
        message: MessageItem,
        previous_seq: int,
        marker: tuple[str, SendMarkerItem] | None = None,
    ) -> None:
        """The message takes seq ``previous_seq + 1`` only if the chat's ``lastSeq`` is still
        ``previous_seq`` and the chat is active, and the session is active with this chat as
        its active chat, all in one transaction. With ``marker`` (an ``Idempotency-Key``'s
        hash and record), the marker is written too, refused if that key already stored a
        message (item 3)."""
        session_id, chat_id, seq = message.session_id, message.chat_id, message.seq
        now = message.created_at
        ops: list[Item] = [
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
                        ":now": now,
                        ":one": 1,
                    },
                }
            },
            {
                "Put": {
                    "Item": {**keys.message_key(user_id, session_id, chat_id, seq), **message.to_item()},
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            {
                "Update": {
                    "Key": dict(keys.session_key(user_id, session_id)),
                    "UpdateExpression": "SET updatedAt = :now, messageCount = messageCount + :one",
                    "ConditionExpression": "#status = :active AND activeChatId = :chat",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {":now": now, ":one": 1, ":active": "active", ":chat": chat_id},
                }
            },
        ]
        if marker is not None:
            key_hash, record = marker
            ops.append(
                {
                    "Put": {
                        "Item": {**keys.send_marker_key(user_id, key_hash), **record.to_item()},
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                }
            )
        self.table.transact(ops)

    def append_reply(self, user_id: str, reply: MessageItem, previous_seq: int) -> None:
        """Same seq condition as a user message. The reply, the user message it answers
        becoming ``complete`` (and remembering its first reply), and the usage added to chat
        and session totals commit together, or not at all."""
        session_id, chat_id, seq = reply.session_id, reply.chat_id, reply.seq
        assert reply.reply_to_seq is not None
        usage_values = {
            ":promptTokens": reply.prompt_tokens or 0,
            ":completionTokens": reply.completion_tokens or 0,
            ":totalTokens": reply.total_tokens or 0,
        }
        usage_expr = ", ".join(f"{f} = {f} + :{f}" for f in USAGE_FIELDS)
        now = reply.created_at
        self.table.transact(
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
                        "Item": {**keys.message_key(user_id, session_id, chat_id, seq), **reply.to_item()},
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                },
                {
                    "Update": {
                        "Key": dict(keys.message_key(user_id, session_id, chat_id, reply.reply_to_seq)),
                        "UpdateExpression": "SET #status = :complete, replySeq = if_not_exists(replySeq, :seq)",
                        "ConditionExpression": "attribute_exists(PK)",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {":complete": "complete", ":seq": seq},
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
        item = self.table.get(keys.send_marker_key(user_id, key_hash))
        return SendMarkerItem.from_item(item) if item else None

    def window(
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
        return self.table.query(
            **projection,
            KeyConditionExpression="PK = :pk AND SK BETWEEN :first AND :last",
            ExpressionAttributeValues={
                ":pk": keys.session_partition(user_id, session_id),
                ":first": keys.message_sk(chat_id, 0),
                ":last": keys.message_sk(chat_id, up_to_seq),
            },
            ScanIndexForward=False,
            Limit=max_messages,
        )

    def page(
        self, user_id: str, session_id: str, chat_id: str, limit: int, after_sk: str | None, forward: bool
    ) -> tuple[list[MessageItem], str | None]:
        items, last = self.table.page(
            keys.session_partition(user_id, session_id), keys.message_prefix(chat_id), limit, after_sk, forward
        )
        return [MessageItem.from_item(i) for i in items], last
