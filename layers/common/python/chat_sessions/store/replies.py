"""Replies generated on their own (``Prefer: respond-async``): the chat's lease, the growing
content, the end of a generation, cancel.

The lease: one reply in flight per chat, kept by a condition on the chat's head item
(``generatingSeq``, ``leaseUntil`` epoch seconds), never by a read. Whatever stores a user
message or starts a reply in the chat does so only while the head holds no lease that is still
running (the lease is free): a synchronous send or regenerate checks it (a ``ConditionCheck`` in its
transaction), an asynchronous one takes it (an ``Update`` of the head in the transaction that
stores the ``generating`` reply). The generation's end (complete, failed, cancelled) gives it
back in its own transaction. A generation that died (its function crashed or timed out) leaves
the lease, which runs out ``GENERATION_TIMEOUT_SECONDS + REPLY_LEASE_MARGIN_SECONDS`` after it
was taken: then the chat accepts messages again, and the next request that stores a message or
starts a reply in it (sync or async) stores the dead one ``failed`` in its own transaction.

Every write of the generating function is conditioned on the reply still being ``generating``
and on its own claim (``generator``): a cancelled reply, a reply taken over after its lease ran
out, or a second delivery of the same asynchronous invocation is never written over.
"""

from __future__ import annotations

from chat_sessions import keys
from chat_sessions.items import MessageItem
from chat_sessions.store.outcomes import ConditionFailed
from chat_sessions.store.table import Item, Table, plain

# The conditions below are written out as literals, each time, rather than built from shared
# constants: the mutation check (tests/mutation) reads every ConditionExpression from the source
# and removes each in turn, and a literal per site gives each use its own mutants.
# ``attribute_not_exists(leaseUntil) OR leaseUntil < :now`` is the lease being free (no reply in
# flight, or one whose lease ran out); ``#status = :generating`` the reply still generating.


def lease_free(user_id: str, session_id: str, chat_id: str, now: int) -> Item:
    """A ``ConditionCheck`` for a synchronous send or regenerate: no reply in flight."""
    return {
        "ConditionCheck": {
            "Key": dict(keys.head_key(user_id, session_id, chat_id)),
            "ConditionExpression": "attribute_not_exists(leaseUntil) OR leaseUntil < :now",
            "ExpressionAttributeValues": {":now": now},
        }
    }


def lease_cleared(user_id: str, session_id: str, chat_id: str, now: int) -> Item:
    """The head's ``Update`` of a synchronous send or regenerate that finds the chat's lease run
    out under a dead reply: the lease cleared, under the condition ``lease_free`` checks (the
    transaction stores the dead reply ``failed`` beside it, ``dead_reply_failed``)."""
    return {
        "Update": {
            "Key": dict(keys.head_key(user_id, session_id, chat_id)),
            "UpdateExpression": "REMOVE generatingSeq, leaseUntil",
            "ConditionExpression": "attribute_not_exists(leaseUntil) OR leaseUntil < :now",
            "ExpressionAttributeValues": {":now": now},
        }
    }


def lease_taken(user_id: str, reply: MessageItem, until: int, now: int) -> Item:
    """The head's ``Update`` that takes the lease for ``reply`` (the chat must exist, and hold
    no running lease)."""
    return {
        "Update": {
            "Key": dict(keys.head_key(user_id, reply.session_id, reply.chat_id)),
            "UpdateExpression": "SET generatingSeq = :seq, leaseUntil = :until",
            "ConditionExpression": "attribute_exists(PK) AND (attribute_not_exists(leaseUntil) OR leaseUntil < :now)",
            "ExpressionAttributeValues": {":seq": reply.seq, ":until": until, ":now": now},
        }
    }


def reply_put(user_id: str, reply: MessageItem) -> Item:
    """The ``generating`` reply at its seq, only if that seq is free."""
    return {
        "Put": {
            "Item": {**keys.message_key(user_id, reply.session_id, reply.chat_id, reply.seq), **reply.to_item()},
            "ConditionExpression": "attribute_not_exists(PK)",
        }
    }


def dead_reply_failed(user_id: str, session_id: str, chat_id: str, seq: int, now: int) -> Item:
    """A reply whose lease ran out (its generation died) stored ``failed``, by the request that
    takes the chat's lease after it: only if it is still ``generating`` with its lease past."""
    return {
        "Update": {
            "Key": dict(keys.message_key(user_id, session_id, chat_id, seq)),
            "UpdateExpression": "SET #status = :failed REMOVE leaseUntil",
            "ConditionExpression": "#status = :generating AND leaseUntil < :now",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":failed": "failed", ":generating": "generating", ":now": now},
        }
    }


def lease_released(user_id: str, session_id: str, chat_id: str, seq: int) -> Item:
    """The head's lease given back by the end of reply ``seq`` (only if it is still that
    reply's: a lease taken over after it ran out is the new reply's)."""
    return {
        "Update": {
            "Key": dict(keys.head_key(user_id, session_id, chat_id)),
            "UpdateExpression": "REMOVE generatingSeq, leaseUntil",
            "ConditionExpression": "generatingSeq = :seq",
            "ExpressionAttributeValues": {":seq": seq},
        }
    }


class ReplyStore:
    """The writes of a generation and of cancel; the reads of a message by id."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def start(self, user_id: str, reply: MessageItem, until: int, now: int, dead_seq: int | None) -> None:
        """A regenerate's ``generating`` reply, with the lease, while the session is active with
        this chat as its active chat; ``dead_seq``: a dead reply the lease is taken over from.
        Items: 0 the reply, 1 the session, 2 the head, 3 the dead reply."""
        ops: list[Item] = [
            reply_put(user_id, reply),
            {
                "ConditionCheck": {
                    "Key": dict(keys.session_key(user_id, reply.session_id)),
                    "ConditionExpression": "#status = :active AND activeChatId = :chat",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {":active": "active", ":chat": reply.chat_id},
                }
            },
            lease_taken(user_id, reply, until, now),
        ]
        if dead_seq is not None:
            ops.append(dead_reply_failed(user_id, reply.session_id, reply.chat_id, dead_seq, now))
        self.table.transact(ops)

    def claim(self, user_id: str, session_id: str, chat_id: str, seq: int, generator: str) -> MessageItem | None:
        """The generation's claim on its reply: only a ``generating`` reply nobody claimed yet.
        Returns the reply as stored; None when it is not (a second delivery of the invocation,
        a reply cancelled before it started, or gone)."""
        try:
            resp = self.table.update(
                keys.message_key(user_id, session_id, chat_id, seq),
                UpdateExpression="SET generator = :me",
                ConditionExpression="#status = :generating AND attribute_not_exists(generator)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":me": generator, ":generating": "generating"},
                ReturnValues="ALL_NEW",
            )
        except ConditionFailed:
            return None
        return MessageItem.from_item(plain(resp["Attributes"]))

    def grow(self, user_id: str, reply: MessageItem, content: str, tokens: int) -> bool:
        """Store the content generated so far; False when the reply is no longer this
        generation's to write (cancelled, or taken over): the generation then stops."""
        try:
            self.table.update(
                keys.message_key(user_id, reply.session_id, reply.chat_id, reply.seq),
                UpdateExpression="SET content = :content, tokens = :tokens",
                ConditionExpression="#status = :generating AND generator = :me",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":content": content,
                    ":tokens": tokens,
                    ":generating": "generating",
                    ":me": reply.generator,
                },
            )
        except ConditionFailed:
            return False
        return True

    def fail(self, user_id: str, reply: MessageItem, content: str, tokens: int) -> bool:
        """The reply ``failed`` with what was generated, the lease given back; the user message
        stays ``unanswered``. False when the reply was no longer this generation's."""
        try:
            self.table.transact(
                [
                    {
                        "Update": {
                            "Key": dict(keys.message_key(user_id, reply.session_id, reply.chat_id, reply.seq)),
                            "UpdateExpression": "SET #status = :failed, content = :content, tokens = :tokens "
                            "REMOVE leaseUntil",
                            "ConditionExpression": "#status = :generating AND generator = :me",
                            "ExpressionAttributeNames": {"#status": "status"},
                            "ExpressionAttributeValues": {
                                ":failed": "failed",
                                ":content": content,
                                ":tokens": tokens,
                                ":generating": "generating",
                                ":me": reply.generator,
                            },
                        }
                    },
                    lease_released(user_id, reply.session_id, reply.chat_id, reply.seq),
                ]
            )
        except ConditionFailed as exc:
            if exc.failed(0):
                return False
            raise
        return True

    def cancel(self, user_id: str, session_id: str, chat_id: str, seq: int, message_id: str, now: int) -> None:
        """The reply ``cancelled`` with the content stored so far, the lease given back: only a
        ``generating`` reply whose lease runs (a dead one shows ``failed``). ``ConditionFailed``
        otherwise (item 0: not that, item 1: the head's lease is not its own)."""
        self.table.transact(
            [
                {
                    "Update": {
                        "Key": dict(keys.message_key(user_id, session_id, chat_id, seq)),
                        "UpdateExpression": "SET #status = :cancelled REMOVE leaseUntil",
                        "ConditionExpression": "#status = :generating AND messageId = :id AND leaseUntil >= :now",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {
                            ":cancelled": "cancelled",
                            ":generating": "generating",
                            ":id": message_id,
                            ":now": now,
                        },
                    }
                },
                lease_released(user_id, session_id, chat_id, seq),
            ]
        )

    def get(self, user_id: str, session_id: str, chat_id: str, seq: int) -> MessageItem | None:
        """The message at ``seq`` (None: none there, or a fork's base at seq 0)."""
        item = self.table.get(keys.message_key(user_id, session_id, chat_id, seq))
        return MessageItem.from_item(item) if item and item.get("type") == "message" else None


def reply_condition(generated_by: str | None) -> Item:
    """The condition of a reply's ``Put``: a new reply takes a free seq; a generated reply's
    completion replaces its ``generating`` item, only while it is still that generation's."""
    if generated_by is None:
        return {"ConditionExpression": "attribute_not_exists(PK)"}
    return {
        "ConditionExpression": "#status = :generating AND generator = :me",
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": {":generating": "generating", ":me": generated_by},
    }
