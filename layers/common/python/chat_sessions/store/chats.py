"""Chats, and the session's pointer to its active chat.

Invariant kept here: exactly one chat of a session is active, or none, and the session's
``activeChatId`` names it. Every change of the active chat writes the chats' flags and the
session's pointer in one transaction, conditioned on the pointer and flags as they were read.
"""

from __future__ import annotations

from typing import Any

from chat_sessions import keys
from chat_sessions.errors import NotFound
from chat_sessions.items import ChatBaseItem, ChatHeadItem, ChatItem, CreateMarkerItem, SessionItem, checked_changes
from chat_sessions.session_status import READ_ONLY
from chat_sessions.store import markers
from chat_sessions.store.outcomes import ConditionFailed
from chat_sessions.store.sessions import counters_move, renewed
from chat_sessions.store.table import Item, Table

HEAD_FIELDS = ("model", "systemPrompt")
"""The chat's attributes its head repeats (what a send needs)."""


def head_of(chat: ChatItem) -> ChatHeadItem:
    return ChatHeadItem(
        chat_id=chat.chat_id, session_id=chat.session_id, model=chat.model, system_prompt=chat.system_prompt
    )


def session_switch(
    user_id: str,
    session_id: str,
    previous: str | None,
    new: str | None,
    now: str,
    chat_delta: int = 0,
    message_delta: int = 0,
) -> Item:
    """The session half of every active-chat change, conditioned on the active chat read
    (``previous``; None: the session exists and has no active chat) and on the session not
    being archived."""
    values: Item = {":now": now, ":dc": chat_delta, ":dm": message_delta}
    update = "SET updatedAt = :now, chatCount = chatCount + :dc, messageCount = messageCount + :dm"
    if new is None:
        update += " REMOVE activeChatId"
    else:
        update = update.replace("SET ", "SET activeChatId = :new, ", 1)
        values[":new"] = new
    # Never in an archived session (read-only): the refusal is told apart by reading it again.
    values[":archived"] = READ_ONLY
    if previous is None:
        condition = "attribute_exists(PK) AND attribute_not_exists(activeChatId) AND #status <> :archived"
    else:
        condition = "activeChatId = :prev AND #status <> :archived"
        values[":prev"] = previous
    return {
        "Update": renewed(
            {
                "Key": dict(keys.session_key(user_id, session_id)),
                "UpdateExpression": update,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": values,
            },
            now,
        )
    }


def chat_flag(user_id: str, session_id: str, chat_id: str, active: bool, now: str) -> Item:
    """A chat's ``active`` flag flipped, conditioned on it holding the opposite value."""
    return {
        "Update": {
            "Key": dict(keys.chat_key(user_id, session_id, chat_id)),
            "UpdateExpression": "SET active = :new, updatedAt = :now",
            "ConditionExpression": "active = :old",
            "ExpressionAttributeValues": {":new": active, ":old": not active, ":now": now},
        }
    }


UPDATE_CHAT, UPDATE_SESSION, UPDATE_HEAD = 0, 1, 2
"""Item indexes in a chat update's transaction."""


def session_writable(user_id: str, session_id: str, now: str) -> Item:
    """The session's ``expiresAt`` renewed (a write in the session is a write to it, for
    retention), only if the session exists and is not archived (read-only). An ``Update`` in
    place of the ``ConditionCheck`` it was: the same condition, the same write units."""
    return {
        "Update": renewed(
            {
                "Key": dict(keys.session_key(user_id, session_id)),
                "ConditionExpression": "attribute_exists(PK) AND #status <> :archived",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":archived": READ_ONLY},
            },
            now,
        )
    }


def kept_marks(user_id: str, session_id: str, chat_id: str, kept: int) -> list[Item]:
    """What a deleted chat leaves with the messages forks share (up to ``kept``): its head and
    its base (seq 0) say it is gone, so a send, a regenerate or a listing of it, oldest or
    newest first, answers 404 from the item it reads first, and the purge knows what to keep."""
    base = ChatBaseItem(chat_id=chat_id, session_id=session_id, kept_up_to=kept)
    return [
        {
            "Update": {
                "Key": dict(keys.head_key(user_id, session_id, chat_id)),
                "UpdateExpression": "SET keptUpTo = :kept",
                "ExpressionAttributeValues": {":kept": kept},
            }
        },
        {"Put": {"Item": {**keys.base_key(user_id, session_id, chat_id), **base.to_item()}}},
    ]


class ChatStore:
    def __init__(self, table: Table) -> None:
        self.table = table

    def get(self, user_id: str, session_id: str, chat_id: str) -> ChatItem:
        item = self.table.get(keys.chat_key(user_id, session_id, chat_id))
        if item is None:
            raise NotFound("Chat not found.")
        return ChatItem.from_item(item)

    def get_with_session(self, user_id: str, session_id: str, chat_id: str) -> tuple[SessionItem, ChatItem]:
        """Session and chat as of one instant (one TransactGetItems)."""
        session, chat = self.table.get_many(
            keys.session_key(user_id, session_id), keys.chat_key(user_id, session_id, chat_id)
        )
        if session is None:
            raise NotFound("Session not found.")
        if chat is None:
            raise NotFound("Chat not found.")
        return SessionItem.from_item(session), ChatItem.from_item(chat)

    def page(
        self, user_id: str, session_id: str, limit: int, after_sk: str | None
    ) -> tuple[list[ChatItem], str | None]:
        items, last = self.table.page(
            keys.session_partition(user_id, session_id), keys.CHAT_PREFIX, limit, after_sk, forward=True
        )
        return [ChatItem.from_item(i) for i in items], last

    def create(
        self,
        user_id: str,
        session_id: str,
        chat: ChatItem,
        previous: str | None,
        marker: tuple[str, CreateMarkerItem] | None = None,
    ) -> None:
        """The new chat (active), the previous active chat (now inactive) and the session's
        ``activeChatId`` in one transaction, conditioned on the active chat the caller read; a
        concurrent switch cancels it and the caller retries from a fresh read."""
        ops = [
            {
                "Put": {
                    "Item": {**keys.chat_key(user_id, session_id, chat.chat_id), **chat.to_item()},
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            session_switch(user_id, session_id, previous, chat.chat_id, chat.created_at, chat_delta=1),
        ]
        if previous is not None:
            ops.append(chat_flag(user_id, session_id, previous, False, chat.created_at))
        ops.append({"Put": {"Item": {**keys.head_key(user_id, session_id, chat.chat_id), **head_of(chat).to_item()}}})
        ops.append(counters_move(user_id, {"chats": 1}))  # the user's count, with the session's
        markers.create(self.table, user_id, ops, marker)

    def activate(self, user_id: str, session_id: str, chat_id: str, previous: str | None, now: str) -> None:
        """The target on, the previous active chat off and the session's pointer moved, all
        conditioned on what was read, in one transaction."""
        ops = [
            chat_flag(user_id, session_id, chat_id, True, now),
            session_switch(user_id, session_id, previous, chat_id, now),
        ]
        if previous is not None:
            ops.append(chat_flag(user_id, session_id, previous, False, now))
        self.table.transact(ops)

    def update(
        self, user_id: str, session_id: str, chat_id: str, sets: dict[str, Any], removes: list[str], now: str
    ) -> ChatItem:
        """The chat (and, for a change of what the head holds, model or system prompt, the head)
        in one transaction, conditioned on the chat existing and on its session not being
        archived, then the chat read back: two requests."""
        checked_changes(ChatItem, sets, removes)
        key = keys.chat_key(user_id, session_id, chat_id)
        head_sets = {k: v for k, v in sets.items() if k in HEAD_FIELDS}
        head_removes = [k for k in removes if k in HEAD_FIELDS]
        ops = [self.table.patch_op(key, sets, removes, now), session_writable(user_id, session_id, now)]
        if head_sets or head_removes:
            ops.append(self.table.patch_op(keys.head_key(user_id, session_id, chat_id), head_sets, head_removes, None))
        try:
            self.table.transact(ops)
        except ConditionFailed as exc:
            if exc.failed(UPDATE_CHAT) or exc.failed(UPDATE_HEAD):
                raise NotFound("Chat not found.") from exc
            raise  # the session's check (UPDATE_SESSION): the caller reads why
        return self.get(user_id, session_id, chat_id)

    def delete(self, user_id: str, session_id: str, chat: ChatItem, active_chat_id: str | None, now: str) -> int:
        """The chat leaves, and if it was the active one the session's pointer is cleared, in
        one transaction conditioned on what was read (the chat's message count too, so the
        session's count stays exact); then its messages are purged. Sends are conditioned on
        the chat being active, and appends on its ``lastSeq``, so none lands after that."""
        was_active = active_chat_id == chat.chat_id
        session_op = session_switch(
            user_id,
            session_id,
            active_chat_id,
            None if was_active else active_chat_id,
            now,
            chat_delta=-1,
            message_delta=-chat.message_count,
        )
        # Forks may share this chat's messages up to its pin: the delete is conditioned on the
        # pin read (a fork pinning more since refuses it), and keeps what the pin covers.
        pinned = chat.pinned_seq
        values: Item = {":n": chat.message_count}
        if pinned is None:
            condition = "messageCount = :n AND attribute_not_exists(pinnedSeq)"
        else:
            condition = "messageCount = :n AND pinnedSeq = :pin"
            values[":pin"] = pinned
        ops: list[Item] = [
            {
                "Delete": {
                    "Key": dict(keys.chat_key(user_id, session_id, chat.chat_id)),
                    "ConditionExpression": condition,
                    "ExpressionAttributeValues": values,
                }
            },
            session_op,
        ]
        if pinned is not None:
            ops.extend(kept_marks(user_id, session_id, chat.chat_id, pinned))
        ops.append(counters_move(user_id, {"chats": -1, "messages": -chat.message_count}))
        self.table.transact(ops)
        return self.purge(user_id, session_id, chat.chat_id, kept=pinned or 0)

    def purge(self, user_id: str, session_id: str, chat_id: str, kept: int | None = None) -> int:
        """The head and the messages of a deleted chat (idempotent), but for the messages forks
        share (up to ``kept``; None: as its head says)."""
        return self.purge_in(keys.session_partition(user_id, session_id), chat_id, kept)

    def purge_in(self, partition: str, chat_id: str, kept: int | None = None) -> int:
        """``purge`` by partition (the stream consumer knows the removed item's keys only). A
        chat deleted with messages kept keeps them, its head and its base (which say it is
        gone); only the messages after ``kept`` go."""
        if kept is None:
            head = self.table.get(keys.head_key_in(partition, chat_id))
            kept = int(head.get("keptUpTo") or 0) if head else 0
        if not kept:
            return self.table.purge(partition, keys.head_sk(chat_id))
        return self.table.purge(partition, "", between=keys.seq_range(chat_id, kept + 1, keys.MAX_SEQ))
