"""Branches: forks that share their source's history instead of copying it.

A fork's history is its lineage (segments of other chats' ranges, oldest first, each one
``(chatId, toSeq)``) followed by its own messages, stored in its own range from the seq after
the lineage's last one. Nothing is copied per message: a fork writes a fixed number of items
whatever ``uptoSeq`` is (the chat, its head and base with the lineage, at most one message).

Invariants kept here:

- the shared messages outlive their chat: a fork pins the highest seq of the source's own
  messages it shares on the source's chat item (``pinnedSeq``, which only grows; the fork's
  update is conditioned on the source existing and on the pin it raises being lower). Deleting a
  chat is conditioned on the pin it read (``ChatStore.delete``) and keeps its messages up to it,
  with a mark at seq 0 and on the head that the chat is gone; the session's deletion removes
  everything;
- the one-active-chat invariant: a fork is a create, the same transaction as
  ``ChatStore.create`` (the new chat active, the previous one off, the session's pointer moved,
  conditioned on the pointer read).
"""

from __future__ import annotations

from dataclasses import dataclass

from chat_sessions import keys
from chat_sessions.items import ChatBaseItem, ChatHeadItem, ChatItem, CreateMarkerItem, MessageItem, Segment
from chat_sessions.store import markers
from chat_sessions.store.chats import chat_flag, session_switch
from chat_sessions.store.messages import newest_user_message
from chat_sessions.store.sessions import counters_move
from chat_sessions.store.table import PAGE_BYTES, Item, Table, wire_size

UNBOUNDED = 1 << 62
"""No byte limit for one segment's query: a page's limit is applied over all its segments."""


@dataclass(frozen=True)
class Span:
    """Messages ``low..high`` of a history, stored in ``chat_id``'s range."""

    chat_id: str
    low: int
    high: int


def spans(lineage: list[Segment] | None, chat_id: str) -> list[Span]:
    """A chat's whole history as spans, oldest first: its lineage, then its own messages."""
    out: list[Span] = []
    low = 1
    for segment in lineage or []:
        out.append(Span(segment.chat_id, low, segment.to_seq))
        low = segment.to_seq + 1
    out.append(Span(chat_id, low, keys.MAX_SEQ))
    return out


def span_of(lineage: list[Segment] | None, chat_id: str, seq: int) -> Span:
    """The span holding ``seq``."""
    return next(s for s in spans(lineage, chat_id) if s.low <= seq <= s.high)


def pin_op(user_id: str, session_id: str, chat_id: str, seq: int, switched_off_at: str | None = None) -> Item:
    """The source's pin raised to ``seq``: only while the source exists, and only upwards (a
    fork that read a lower pin than another fork has raised since is refused, and its retry
    finds the pin high enough). ``NOT pinnedSeq >= :seq`` holds for a chat never pinned (a
    comparison with a missing attribute is false), with no parenthesised ``OR`` for the
    mutation check to wrap in redundant parentheses, which DynamoDB refuses. When the source is
    the active chat the fork replaces, its flag goes off in the same update (a transaction
    names an item once), conditioned as :func:`~chat_sessions.store.chats.chat_flag` is."""
    values: Item = {":seq": seq}
    if switched_off_at is None:
        update = "SET pinnedSeq = :seq"
        condition = "attribute_exists(PK) AND NOT pinnedSeq >= :seq"
    else:
        update = "SET pinnedSeq = :seq, active = :off, updatedAt = :now"
        condition = "active = :on AND NOT pinnedSeq >= :seq"
        values.update({":off": False, ":on": True, ":now": switched_off_at})
    return {
        "Update": {
            "Key": dict(keys.chat_key(user_id, session_id, chat_id)),
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
    }


FORK_CHAT, FORK_SESSION = 0, 1
"""Item indexes in a fork's transaction (the pin, when there is one, comes last but the marker)."""


class BranchStore:
    def __init__(self, table: Table) -> None:
        self.table = table

    def fork(
        self,
        user_id: str,
        session_id: str,
        chat: ChatItem,
        previous: str | None,
        pin: tuple[str, int] | None,
        copied: MessageItem | None,
        marker: tuple[str, CreateMarkerItem] | None = None,
    ) -> None:
        """The fork as one transaction: the new chat (active) with its head and, when it shares
        anything, its base; the previous active chat off and the session's pointer moved,
        conditioned on the pointer read (exactly as a create); ``copied``, the source's message
        at the fork point when it is an unanswered question (the fork answers it in its own
        range, never in the source's); ``pin``, the source's pin raised to what it shares."""
        ops: list[Item] = [
            {
                "Put": {
                    "Item": {**keys.chat_key(user_id, session_id, chat.chat_id), **chat.to_item()},
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            session_switch(user_id, session_id, previous, chat.chat_id, chat.created_at, chat_delta=1),
        ]
        pinned_previous = pin is not None and pin[0] == previous
        if previous is not None and not pinned_previous:
            ops.append(chat_flag(user_id, session_id, previous, False, chat.created_at))
        head = ChatHeadItem(
            chat_id=chat.chat_id,
            session_id=session_id,
            model=chat.model,
            system_prompt=chat.system_prompt,
            lineage=chat.lineage,
        )
        ops.append({"Put": {"Item": {**keys.head_key(user_id, session_id, chat.chat_id), **head.to_item()}}})
        if chat.lineage:
            base = ChatBaseItem(chat_id=chat.chat_id, session_id=session_id, lineage=chat.lineage)
            ops.append({"Put": {"Item": {**keys.base_key(user_id, session_id, chat.chat_id), **base.to_item()}}})
        if copied is not None:
            key = keys.message_key(user_id, session_id, chat.chat_id, copied.seq)
            ops.append({"Put": {"Item": {**key, **copied.to_item()}}})
        if pin is not None:
            ops.append(pin_op(user_id, session_id, *pin, chat.created_at if pinned_previous else None))
        ops.append(counters_move(user_id, {"chats": 1}))  # the user's count, with the session's
        markers.create(self.table, user_id, ops, marker)

    def message(self, user_id: str, session_id: str, span: Span, seq: int) -> MessageItem | None:
        """The message at ``seq`` of a history (in the span that holds it), strongly consistent."""
        item = self.table.get(keys.message_key(user_id, session_id, span.chat_id, seq))
        return MessageItem.from_item(item) if item and item.get("type") == "message" else None

    def probe(
        self, user_id: str, session_id: str, chat_id: str, limit: int, oldest_first: bool
    ) -> tuple[list[Item], bool]:
        """A listing's first query, over the chat's whole range (its head, its messages and its
        base at seq 0): newest first it meets the head first, oldest first the base (a fork's
        lineage, or a deleted chat's mark) or the first message. ``limit + 3`` items: besides
        head and base, one message more than the page, to know whether more follow (True also
        when the response's byte limit ended the items early)."""
        items, last = self.table.page(
            keys.session_partition(user_id, session_id), keys.head_sk(chat_id), limit + 3, None, not oldest_first
        )
        return items, last is not None

    def page(
        self,
        user_id: str,
        session_id: str,
        parts: list[Span],
        limit: int,
        oldest_first: bool,
        found: list[Item] | None = None,
    ) -> tuple[list[MessageItem], bool]:
        """Up to ``limit`` messages of ``parts`` (already cut to the page's side of its cursor,
        in the page's order) after ``found`` (messages the page already holds), and whether more
        follow. One query per span the page reaches
        (more only where DynamoDB's 1 MB cap cuts one), so a page of a fork costs at most a
        query per chat of its lineage. The page ends before its items pass the response's byte
        limit, as ``Table.page`` does."""
        found = list(found or [])
        for part in parts:
            if len(found) > limit:
                break
            if part.low > part.high:
                continue
            items, _ = self.table.page(
                keys.session_partition(user_id, session_id),
                "",
                limit + 1 - len(found),
                None,
                forward=not oldest_first,
                max_bytes=UNBOUNDED,
                between=keys.seq_range(part.chat_id, part.low, part.high),
            )
            found.extend(i for i in items if i.get("type") == "message")
        used = 0
        for n, item in enumerate(found[:limit]):
            used += wire_size(item)
            if used > PAGE_BYTES and n > 0:
                return [MessageItem.from_item(i) for i in found[:n]], True
        return [MessageItem.from_item(i) for i in found[:limit]], len(found) > limit

    def newest(self, user_id: str, session_id: str, parts: list[Span], count: int, budget: int) -> list[MessageItem]:
        """The newest messages of ``parts`` (newest span first), at most ``count`` of them, and
        no more spans read once the messages read hold ``budget`` tokens (the model would not
        be shown older ones): a fork's context window in at most one query per span."""
        out: list[MessageItem] = []
        tokens = 0
        for part in parts:
            if len(out) >= count or tokens >= budget:
                break
            low, high = keys.seq_range(part.chat_id, part.low, part.high)
            items = self.table.query(
                False,
                KeyConditionExpression="PK = :pk AND SK BETWEEN :low AND :high",
                ExpressionAttributeValues={
                    ":pk": keys.session_partition(user_id, session_id),
                    ":low": low,
                    ":high": high,
                },
                ScanIndexForward=True,
                Limit=count - len(out),
            )
            for item in items:
                message = MessageItem.from_item(item)
                out.append(message)
                tokens += message.tokens
        return out

    def last_user_message(self, user_id: str, session_id: str, parts: list[Span]) -> MessageItem | None:
        """The newest user message of ``parts`` (newest span first): a regenerate in a fork
        whose own range holds no question."""
        for part in parts:
            low, high = keys.seq_range(part.chat_id, part.low, part.high)
            found = newest_user_message(self.table, keys.session_partition(user_id, session_id), low, high)
            if found is not None:
                return found
        return None
