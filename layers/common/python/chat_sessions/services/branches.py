"""Forks and edits: a new chat whose history is the source's first ``uptoSeq`` messages,
shared (not copied), followed by its own.

A fork reads the session and the source chat (one TransactGetItems) and the source's message at
the fork point (one GetItem, which proves ``uptoSeq`` is within the history: seqs have no gaps),
then writes one transaction: the same requests whatever ``uptoSeq`` is. The message at the fork
point is copied only when it is an unanswered question: the fork may answer it (a regenerate),
and that must change the fork alone, never its source.

An edit of the user message at seq ``n`` is a fork at ``n - 1`` and a send there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from chat_sessions import keys, usage
from chat_sessions.clock import utc_now
from chat_sessions.config import get_settings
from chat_sessions.errors import ForkTooDeep, IdempotencyKeyReused, NotFound, ValidationFailed
from chat_sessions.ids import new_id, seq_in
from chat_sessions.items import ChatItem, ForkOrigin, MessageItem, Segment, SessionItem
from chat_sessions.models import Chat, EditResult, ForkChatRequest, Usage
from chat_sessions.services.request_keys import RequestKey, created_marker, first_created
from chat_sessions.services.retry import optimistic
from chat_sessions.services.sessions import writable
from chat_sessions.store import Store
from chat_sessions.store.branches import span_of
from chat_sessions.store.markers import MarkerExists
from chat_sessions.views import chat_view

if TYPE_CHECKING:
    from chat_sessions.llm import ChatModel

MAX_FORK_DEPTH = 8
"""How many other chats a fork's history may span (its lineage's segments). A fork of a fork
shares its source's lineage up to the fork point and the source's own messages after it, so
each generation adds at most one; a fork past this answers ``409 fork_too_deep``. It bounds
what a send reads for the model (one query per chat) and the size of a listing's cursor."""

FORK_SUFFIX = " (fork)"


@dataclass(frozen=True)
class Plan:
    """What a fork at ``upto`` of ``source`` writes besides its chat."""

    lineage: list[Segment]
    pin: tuple[str, int] | None
    copied: MessageItem | None


def _out_of_range(upto: int) -> ValidationFailed:
    return ValidationFailed(
        f"uptoSeq {upto} is outside the chat's history (0..its last seq).",
        details=[{"loc": ["body", "uptoSeq"], "type": "out_of_range"}],
    )


def plan(store: Store, user_id: str, source: ChatItem, upto: int, fork_id: str) -> Plan:
    """The lineage of a fork of ``source`` at ``upto``, the pin it needs and the message it
    copies. One read: the source's message at ``upto`` (none: ``upto`` is past its last seq)."""
    if upto == 0:
        return Plan([], None, None)
    if upto > keys.MAX_SEQ:
        raise _out_of_range(upto)
    at = store.branches.message(user_id, source.session_id, span_of(source.lineage, source.chat_id, upto), upto)
    if at is None:
        raise _out_of_range(upto)
    copied = at.model_copy(update={"chat_id": fork_id}) if at.role == "user" and at.status == "unanswered" else None
    shared = upto - 1 if copied is not None else upto
    lineage: list[Segment] = []
    previous = 0
    for segment in source.lineage or []:
        if shared <= previous:
            break
        lineage.append(Segment(chat_id=segment.chat_id, to_seq=min(segment.to_seq, shared)))
        previous = segment.to_seq
    pin = None
    if shared > source.shared_up_to:  # the source's own messages are shared: they must outlive it
        lineage.append(Segment(chat_id=source.chat_id, to_seq=shared))
        if (source.pinned_seq or 0) < shared:
            pin = (source.chat_id, shared)
    if len(lineage) > MAX_FORK_DEPTH:
        raise ForkTooDeep(
            f"This fork's history would span {len(lineage) + 1} chats; at most {MAX_FORK_DEPTH + 1} are allowed. "
            "Fork at an earlier message, or start a new chat."
        )
    return Plan(lineage, pin, copied)


def _fork_name(source: ChatItem, name: str | None) -> str:
    if name is not None:
        return name
    return source.name[: 200 - len(FORK_SUFFIX)] + FORK_SUFFIX


def _fork(
    store: Store,
    user_id: str,
    session_id: str,
    chat_id: str,
    upto: int,
    name: str | None,
    key: RequestKey | None,
    first_read: tuple[SessionItem, ChatItem] | None = None,
) -> tuple[Chat, bool]:
    """The fork, and whether it is one an earlier attempt under ``key`` created."""
    fork_id = new_id()
    marker = created_marker(key, session_id, fork_id)
    reads = [first_read] if first_read else []

    def attempt() -> Chat:
        session, source = reads.pop() if reads else store.chats.get_with_session(user_id, session_id, chat_id)
        writable(session)  # an archived session is read-only (its switch's condition refuses it too)
        fork = plan(store, user_id, source, upto, fork_id)
        now = utc_now()
        item = ChatItem(
            chat_id=fork_id,
            session_id=session_id,
            name=_fork_name(source, name),
            model=source.model,
            system_prompt=source.system_prompt,
            active=True,
            message_count=0,
            created_at=now,
            updated_at=now,
            forked_from=ForkOrigin(chat_id=chat_id, seq=upto),
            lineage=fork.lineage or None,
        )
        store.branches.fork(user_id, session_id, item, session.active_chat_id, fork.pin, fork.copied, marker)
        return chat_view(item)

    try:
        return optimistic(attempt), False
    except MarkerExists:
        assert key is not None
        first = first_created(store, user_id, key)
        if first.chat_id is None or first.session_id != session_id:
            raise IdempotencyKeyReused("This Idempotency-Key was already used with a different request.") from None
        return chat_view(store.chats.get(user_id, session_id, first.chat_id)), True


def fork_chat(
    store: Store, user_id: str, session_id: str, chat_id: str, request: ForkChatRequest, key: RequestKey | None = None
) -> Chat:
    """A fork of the chat at ``uptoSeq``, now the session's active chat. Under an
    ``Idempotency-Key`` whose earlier attempt DynamoDB committed (its answer lost), the fork
    that attempt made."""
    return _fork(store, user_id, session_id, chat_id, request.upto_seq, request.name, key)[0]


def edit_message(
    store: Store,
    model: ChatModel,
    user_id: str,
    session_id: str,
    chat_id: str,
    message_id: str,
    content: str,
    key: RequestKey | None = None,
    respond_async: bool = False,
) -> EditResult:
    """A fork at the message before the user message ``message_id`` (seq ``n``), with
    ``content`` sent there as message ``n``. The source chat is unchanged. A paused session is
    refused before anything is written. ``respond_async`` (``Prefer: respond-async``): the
    send in the fork stores its reply ``generating`` and hands it to the generating function
    (a keyed repeat of an edit whose send did not land answers synchronously)."""
    from chat_sessions.services import conversation  # calls the model: imported by the edit only

    seq = seq_in(message_id)
    if seq is None or not 1 <= seq <= keys.MAX_SEQ:
        raise NotFound("Message not found.")

    def read() -> tuple[SessionItem, ChatItem, MessageItem | None]:
        # The session and chat in one TransactGetItems, which DynamoDB may cancel as a collision
        # with a concurrent write: read again, as every other attempt does.
        session, chat = store.chats.get_with_session(user_id, session_id, chat_id)
        return session, chat, store.branches.message(user_id, session_id, span_of(chat.lineage, chat_id, seq), seq)

    session, chat, message = optimistic(read)
    if message is None or message.message_id != message_id:
        raise NotFound("Message not found.")
    if message.role != "user":
        raise ValidationFailed(
            "Only a user message can be edited.", details=[{"loc": ["path", "messageId"], "type": "not_a_user_message"}]
        )
    refusal = conversation.refusal_to_write(session)
    if refusal is not None:
        raise refusal
    budget = get_settings().monthly_token_budget
    if budget:  # refused before the fork, so a refused edit stores nothing (one more read)
        spent = store.sessions.counters(user_id).get(usage.period_field("totalTokens", usage.period_of(utc_now())), 0)
        if spent >= budget:
            raise usage.budget_exhausted(budget)
    fork, repeated = _fork(store, user_id, session_id, chat_id, seq - 1, None, key, (session, chat))
    if repeated:
        exchange = conversation.finish_edit(store, model, user_id, session_id, fork.chat_id, seq, content)
    else:
        exchange = conversation.send_message(
            store, model, user_id, session_id, fork.chat_id, content, respond_async=respond_async
        )
    reply = exchange.assistant_message
    if reply.status == "generating":  # nothing answered yet: the fork counts nothing more
        return EditResult(chat=fork, user_message=exchange.user_message, assistant_message=reply)
    chat_now = fork.model_copy(
        update={
            "message_count": fork.message_count + 2,
            "usage": reply.usage or Usage(),
            "updated_at": reply.created_at,
        }
    )
    return EditResult(chat=chat_now, user_message=exchange.user_message, assistant_message=reply)
