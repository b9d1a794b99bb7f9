"""A chat's history as one sequence, whether or not it is a fork (no model involved).

A fork's history is the messages its lineage shares (stored in other chats' ranges) followed by
its own: seq 1..N with no gap. Listing it pages across those ranges in one ordered sequence;
the model's window for it is the newest messages of that same sequence.

Requests:

- a listing's first page is one query over the chat's own range (head, messages and base) for
  a chat that shares nothing; a fork's adds one query per chat of its lineage the page reaches.
  A cursor carries the page's position (a seq) and the lineage (signed with it), so a later page
  reads no chat item: one query per range it reaches;
- a send's thread is one query (the head and the newest own messages); in a fork whose own
  messages do not fill the window (``CONTEXT_MAX_MESSAGES`` messages, or the token budget), one
  more per chat of its lineage reached, newest first: at most ``MAX_FORK_DEPTH + 1`` queries,
  whatever the length of the history.
"""

from __future__ import annotations

from typing import Literal

from chat_sessions import cursors, keys
from chat_sessions.errors import NotFound
from chat_sessions.items import ChatBaseItem, ChatHeadItem, MessageItem, Segment
from chat_sessions.models import MessagePage
from chat_sessions.store import Item, Store
from chat_sessions.store.branches import Span, spans
from chat_sessions.store.messages import Thread
from chat_sessions.views import message_view


def after(parts: list[Span], seq: int, oldest_first: bool) -> list[Span]:
    """``parts`` cut to the messages after ``seq`` in the listing's order, in that order."""
    if oldest_first:
        return [Span(p.chat_id, max(p.low, seq + 1), p.high) for p in parts if p.high > seq]
    return [Span(p.chat_id, p.low, min(p.high, seq - 1)) for p in reversed(parts) if p.low < seq]


def _position(chat_id: str, seq: int, lineage: list[Segment] | None) -> str:
    """A cursor's position: the seq to continue after, and the lineage it pages through."""
    shared = ",".join(f"{s.chat_id}:{s.to_seq}" for s in lineage or [])
    return f"{keys.message_prefix(chat_id)}{seq}|{shared}"


def _parse(chat_id: str, position: str) -> tuple[int, list[Segment]]:
    """The inverse of :func:`_position` (the cursor's signature vouches for its content)."""
    seq, _, shared = position[len(keys.message_prefix(chat_id)) :].partition("|")
    lineage = []
    for part in filter(None, shared.split(",")):
        shared_chat, _, to_seq = part.partition(":")
        lineage.append(Segment(chat_id=shared_chat, to_seq=int(to_seq)))
    return int(seq), lineage


def list_messages(
    store: Store,
    user_id: str,
    session_id: str,
    chat_id: str,
    limit: int,
    cursor: str | None,
    order: Literal["asc", "desc"],
) -> MessagePage:
    scope = {"partition": keys.session_partition(user_id, session_id), "listing": f"messages:{chat_id}:{order}"}
    position = cursors.decode(cursor, prefix=keys.message_prefix(chat_id), **scope)
    oldest_first = order == "asc"
    if position is None:
        lineage, items, more = _first_page(store, user_id, session_id, chat_id, limit, oldest_first)
    else:
        try:
            seq, lineage = _parse(chat_id, position)
        except ValueError:  # a cursor signed for this listing before its position was a seq
            seq, lineage = (0 if oldest_first else keys.MAX_SEQ), []
        parts = after(spans(lineage, chat_id), seq, oldest_first)
        items, more = store.branches.page(user_id, session_id, parts, limit, oldest_first)
    last = _position(chat_id, items[-1].seq, lineage) if more and items else None
    views = [message_view(i if i.chat_id == chat_id else i.model_copy(update={"chat_id": chat_id})) for i in items]
    return MessagePage(items=views, next_cursor=cursors.encode(last, **scope))


def _first_page(
    store: Store, user_id: str, session_id: str, chat_id: str, limit: int, oldest_first: bool
) -> tuple[list[Segment] | None, list[MessageItem], bool]:
    """One query over the chat's own range tells what the chat is: its head (newest first) or
    its base (oldest first) says whether it is a fork and whether it was deleted."""
    items, cut = store.branches.probe(user_id, session_id, chat_id, limit, oldest_first)
    marks: list[Item] = [i for i in items if i.get("type") in ("head", "base")]
    own = [i for i in items if i.get("type") == "message"]
    if not items or (not oldest_first and items[0].get("type") != "head"):
        raise NotFound("Chat not found.")
    if any("keptUpTo" in mark for mark in marks):
        raise NotFound("Chat not found.")  # deleted; forks still share some of its messages
    first = items[0]
    lineage = (
        ChatHeadItem.from_item(first).lineage
        if first.get("type") == "head"
        else ChatBaseItem.from_item(first).lineage
        if first.get("type") == "base"
        else None
    )
    if not lineage:  # all of the history is in this range, and the query read it in order
        return None, [MessageItem.from_item(i) for i in own[:limit]], len(own) > limit or cut
    parts = spans(lineage, chat_id)
    if oldest_first:  # the shared messages come first: read them, then this range again
        messages, more = store.branches.page(user_id, session_id, parts, limit, oldest_first)
        return lineage, messages, more
    if len(own) > limit or cut:
        return lineage, [MessageItem.from_item(i) for i in own[:limit]], True
    messages, more = store.branches.page(
        user_id, session_id, after(parts[:-1], keys.MAX_SEQ, False), limit, False, found=own
    )
    return lineage, messages, more


def with_shared(store: Store, user_id: str, thread: Thread, max_messages: int, budget: int) -> Thread:
    """A fork's thread completed with its shared history's newest messages, when its own do
    not fill the window: one query per chat of the lineage reached, newest first."""
    head = thread.head
    if not head.lineage or len(thread.newest) >= max_messages:
        return thread
    used = sum(m.tokens for m in thread.newest)
    shared = list(reversed(spans(head.lineage, head.chat_id)[:-1]))
    older = store.branches.newest(user_id, head.session_id, shared, max_messages - len(thread.newest), budget - used)
    return Thread(head, [*thread.newest, *older])
