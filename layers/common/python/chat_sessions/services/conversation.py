"""Sending a message and regenerating a reply: the operations that call the model.

Order of events, for the contract's failure semantics: the user's message is committed first
(status ``unanswered``); the model is called; only then is the reply committed, together with
the user message turning ``complete`` and the usage totals. A model failure therefore leaves
exactly the stored user message behind and changes nothing else.

Requests: a send reads the chat's thread (its head and newest messages) with one query, commits
the user message, calls the model and commits the reply: three DynamoDB requests, four when
the session's pointer names the chat. Whether the session is active and the chat its active
chat is a condition of the user message's transaction, read back only when it fails.

Retries never store a message twice. An append refused by its seq condition first asks whether
its own earlier attempt landed (its answer lost), and a send under an ``Idempotency-Key`` writes
a marker with its user message, so a repeat after a failure answers the message already stored
instead of storing another.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit

from chat_sessions import usage
from chat_sessions.clock import utc_now
from chat_sessions.config import get_settings
from chat_sessions.context_window import build_window, estimate_tokens
from chat_sessions.errors import (
    ChatNotActive,
    IdempotencyKeyReused,
    NoActiveChat,
    NotFound,
    NothingToRegenerate,
    ReplyInProgress,
    ServiceError,
    SessionArchived,
    SessionPaused,
)
from chat_sessions.ids import message_id as seq_id
from chat_sessions.ids import new_id
from chat_sessions.items import MessageItem, SendMarkerItem, SessionItem
from chat_sessions.llm import ChatModel, Completion
from chat_sessions.models import Exchange
from chat_sessions.observability import metrics
from chat_sessions.services import replies
from chat_sessions.services.history import after, with_shared
from chat_sessions.services.request_keys import RequestKey, expiry
from chat_sessions.services.retry import Stale, optimistic
from chat_sessions.services.sessions import writable
from chat_sessions.session_status import READ_ONLY
from chat_sessions.store import ConditionFailed, Store
from chat_sessions.store.branches import spans
from chat_sessions.store.messages import (
    ANSWERED,
    CHAT,
    MARKER,
    REPLY,
    REPLY_MARKER,
    SESSION,
    SESSION_CHECK,
    USER_MESSAGE,
    Thread,
)
from chat_sessions.store.replies import ReplyStore, dead_reply_failed, lease_taken, reply_put
from chat_sessions.views import message_view


class _Repeat(Exception):
    """The key already stored a user message: answer that one."""

    def __init__(self, marker: SendMarkerItem) -> None:
        super().__init__(marker.message_id)
        self.marker = marker


def _refusal(session: SessionItem, chat_id: str) -> ServiceError | None:
    """Why the session refuses messages to ``chat_id`` (None: it accepts them)."""
    if session.status == READ_ONLY:
        return SessionArchived("The session is archived; unarchive it to send messages.")
    if session.status != "active":
        return SessionPaused("The session is paused; resume it to send messages.")
    if session.active_chat_id != chat_id:
        return ChatNotActive("Only the session's active chat accepts messages; activate this chat first.")
    return None


def refusal_to_write(session: SessionItem) -> ServiceError | None:
    """Why the session refuses messages whichever chat they go to (its status): an edit asks
    before its fork, so a refused edit leaves no fork behind."""
    return _refusal(session.model_copy(update={"active_chat_id": "-"}), "-")


def _target(store: Store, user_id: str, session_id: str, chat_id: str | None) -> str:
    """The chat to send to: ``chat_id``, or the one the session's pointer names."""
    if chat_id is not None:
        return chat_id
    session = store.sessions.get(user_id, session_id)
    if session.active_chat_id is None:
        if session.status != "active":
            raise _refusal(session, "") or SessionPaused("The session is paused; resume it to send messages.")
        raise NoActiveChat("The session has no active chat; create or activate one first.")
    refusal = _refusal(session, session.active_chat_id)
    if refusal is not None:
        raise refusal
    return session.active_chat_id


def read_thread(
    store: Store, user_id: str, session_id: str, chat_id: str, following_pointer: bool, consistent: bool = True
) -> Thread:
    """The chat's thread. Read eventually consistent (``consistent`` False, half the read
    units) only where a stale read cannot do harm: a send's user message takes the seq after
    the newest message it read with ``attribute_not_exists``, so a read that missed newer
    messages makes the write refused and the retry reads consistently. A head not found by an
    eventually consistent read is looked for again consistently before answering 404."""
    settings = get_settings()
    max_messages = settings.context_max_messages
    try:
        try:
            thread = store.messages.thread(user_id, session_id, chat_id, max_messages, consistent)
        except NotFound:
            if consistent:
                raise
            thread = store.messages.thread(user_id, session_id, chat_id, max_messages, consistent=True)
        return with_shared(store, user_id, thread, max_messages, settings.context_token_budget)
    except NotFound as exc:
        if following_pointer:  # the pointer named a chat deleted since: read the pointer again
            raise Stale("the active chat was deleted between two reads") from exc
        raise


def _why_refused(store: Store, user_id: str, session_id: str, chat_id: str, following_pointer: bool) -> None:
    """After the session's condition refused a user message: the session's answer, or
    :class:`Stale` when it has none (it changed back, or the pointer moved on)."""
    session = store.sessions.get(user_id, session_id)
    refusal = _refusal(session, chat_id)
    if refusal is not None and not (following_pointer and isinstance(refusal, ChatNotActive)):
        raise refusal
    raise Stale("the session changed while the message was written")


def _complete(model: ChatModel, model_name: str, window: list[dict[str, str]]) -> Completion:
    try:
        completion = model.complete(model_name, window)
    except ServiceError as exc:
        metrics.add_metric(name="ModelFailures", unit=MetricUnit.Count, value=1)
        metrics.add_metadata(key="modelError", value=exc.code)
        raise
    metrics.add_metric(name="ModelTokens", unit=MetricUnit.Count, value=completion.total_tokens)
    return completion


def model_window(thread: Thread, answering: MessageItem) -> list[dict[str, str]]:
    """The model's messages for ``answering``: it and the history before it, within budget."""
    history = [m for m in thread.newest if m.seq < answering.seq]
    newest_first = [answering, *history]
    return build_window(
        thread.head.system_prompt,
        [m.model_dump(by_alias=True) for m in newest_first],
        get_settings().context_token_budget,
    )


def _reply(
    store: Store,
    model: ChatModel,
    user_id: str,
    thread: Thread,
    answering: MessageItem,
    last_seq: int,
    key: RequestKey | None = None,
    check_lease: bool = False,
) -> MessageItem:
    """Answer ``answering`` and append the reply after the chat's newest message; with ``key``
    (a keyed regenerate), the key's marker goes with the reply. ``check_lease`` (a regenerate):
    only while no reply is generating in the chat (a condition on its head, the transaction's
    last item)."""
    head = thread.head
    completion = _complete(model, head.model, model_window(thread, answering))
    message_id = new_id()
    previous = last_seq
    answered = answering
    lease_head = head  # as read; its dead reply forgotten once that reply ended or was taken over

    def attempt() -> MessageItem:
        nonlocal previous, answered, lease_head
        reply = MessageItem(
            message_id=seq_id(message_id, previous + 1),
            chat_id=head.chat_id,
            session_id=head.session_id,
            seq=previous + 1,
            role="assistant",
            content=completion.content,
            status="complete",
            model=completion.model,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            total_tokens=completion.total_tokens,
            tokens=estimate_tokens(completion.content),
            reply_to_seq=answered.seq,
            created_at=utc_now(),
        )
        marker = None if key is None else (key.key_hash, _marker(key, answered, reply_seq=reply.seq))
        lease = replies.lease_check(lease_head, user_id) if check_lease else []
        try:
            store.messages.append_reply(user_id, reply, answered, marker, extra=lease)
        except ConditionFailed as exc:
            lease_at = len(exc.reasons) - len(lease)  # the head's item, then a dead reply's
            if lease and exc.failed(lease_at):
                raise _in_progress() from None
            if len(lease) > 1 and exc.failed(lease_at + 1):
                # That reply ended since (its end gave the lease back) or another request took
                # over from it (and holds a running lease, or cleared it): the next attempt
                # checks only that no lease runs.
                lease_head = lease_head.model_copy(update={"generating_seq": None, "lease_until": None})
            if exc.failed(REPLY) and store.messages.landed(reply, user_id):
                return reply
            if key is not None and exc.failed(REPLY_MARKER):
                stored = store.messages.get_marker(user_id, key.key_hash)
                if stored is not None:
                    raise _Repeat(stored) from None
            if exc.failed(SESSION):  # gone (404), archived while the model answered (409), or
                writable(store.sessions.get(user_id, head.session_id))  # unarchived since: again
            if exc.failed(CHAT):
                raise NotFound("Chat not found.") from exc
            if exc.failed(ANSWERED):  # answered meanwhile (a concurrent regenerate): count it once
                current = store.messages.get(user_id, head.session_id, answered.chat_id, answered.seq)
                if current is None:
                    raise NotFound("Chat not found.") from exc
                answered = current
            previous = store.messages.last_seq(user_id, head.session_id, head.chat_id, head.shared_up_to)
            raise
        return reply

    return optimistic(attempt)


def _in_progress() -> ReplyInProgress:
    return ReplyInProgress("A reply is still being generated in this chat; wait for it or cancel it.")


def _refuse_in_progress(thread: Thread) -> None:
    """The early answer (a read; the transaction's condition on the head decides)."""
    if replies.in_progress(thread.head, replies.now_seconds()):
        raise _in_progress()


def _stored_but_waiting(message: MessageItem) -> ReplyInProgress:
    """A keyed repeat whose question an earlier try stored, while another reply is generating:
    its reply would be a second one in flight. Repeating the request with the same key once that
    reply ends answers the stored question (no second copy)."""
    return ReplyInProgress(
        f"Your message is stored (seq {message.seq}), but a reply is still being generated in this chat; "
        "repeat this request with the same Idempotency-Key once it ends to get the answer."
    )


def _exchange(user_message: MessageItem, reply: MessageItem) -> Exchange:
    return Exchange(
        user_message=message_view(user_message.model_copy(update={"status": "complete", "reply_seq": reply.seq})),
        assistant_message=message_view(reply),
    )


def send_message(
    store: Store,
    model: ChatModel,
    user_id: str,
    session_id: str,
    chat_id: str | None,
    content: str,
    key: RequestKey | None = None,
    respond_async: bool = False,
) -> Exchange:
    """Store the user's message in the active chat, then answer it.

    ``chat_id`` None sends to the session's active chat, whichever it is when the message is
    committed. Only while no reply is generating in the chat (``409 reply_in_progress``): a
    condition on the chat's head in the user message's transaction. ``respond_async``
    (``Prefer: respond-async``): the same transaction stores the reply ``generating`` and takes
    the chat's lease, and the generating function is invoked; the answer does not wait for it."""
    message_id = new_id()
    following_pointer = chat_id is None
    generating: MessageItem | None = None

    attempts = 0

    def store_user_message() -> tuple[Thread, MessageItem]:
        nonlocal generating
        nonlocal attempts
        attempts += 1
        target = _target(store, user_id, session_id, chat_id)
        thread = read_thread(store, user_id, session_id, target, following_pointer, consistent=attempts > 1)
        message = MessageItem(
            message_id=seq_id(message_id, thread.last_seq + 1),
            chat_id=target,
            session_id=session_id,
            seq=thread.last_seq + 1,
            role="user",
            content=content,
            status="unanswered",
            tokens=estimate_tokens(content),
            created_at=utc_now(),
        )
        now = replies.now_seconds()
        if replies.in_progress(thread.head, now):  # the early answer (the transaction's condition decides)
            stored = None if key is None else store.messages.get_marker(user_id, key.key_hash)
            if stored is not None and stored.message_id != message.message_id:
                raise _Repeat(stored)  # a repeat whose first try committed
            raise _in_progress()
        if respond_async:
            generating = replies.generating(thread.head, message, message.seq + 1, seq_id(message_id, message.seq + 1))
            lease = [reply_put(user_id, generating), lease_taken(user_id, generating, generating.lease_until or 0, now)]
            dead = replies.dead_seq(thread.head, now)
            if dead is not None:
                lease.append(dead_reply_failed(user_id, session_id, target, dead, now))
        else:
            lease = replies.lease_check(thread.head, user_id)
        head_index = MARKER + (key is not None) + respond_async
        reply_seq = None if generating is None else generating.seq
        marker = None if key is None else (key.key_hash, _marker(key, message, reply_seq=reply_seq))
        try:
            store.messages.append_user(user_id, message, marker, get_settings().monthly_token_budget, lease)
        except ConditionFailed as exc:
            if exc.failed(USER_MESSAGE) and store.messages.landed(message, user_id):
                return thread, message
            if key is not None and exc.failed(MARKER):  # a repeat, whatever else refused it
                stored = store.messages.get_marker(user_id, key.key_hash)
                if stored is not None and stored.message_id != message.message_id:
                    raise _Repeat(stored) from None
            if exc.failed(head_index) and not exc.failed(SESSION_CHECK):
                raise _in_progress() from None
            if exc.failed(SESSION_CHECK):
                _why_refused(store, user_id, session_id, target, following_pointer)
            raise
        return thread, message

    try:
        thread, user_message = optimistic(store_user_message)
    except _Repeat as repeat:
        return _answer_stored(store, model, user_id, key, repeat.marker)
    if generating is not None:
        started = replies.start_generation(store, user_id, generating)
        return Exchange(user_message=message_view(user_message), assistant_message=message_view(started))
    thread = Thread(thread.head, [user_message, *thread.newest])
    reply = _reply(store, model, user_id, thread, user_message, user_message.seq)
    return _exchange(user_message, reply)


def _marker(key: RequestKey, message: MessageItem, reply_seq: int | None = None) -> SendMarkerItem:
    return SendMarkerItem(
        session_id=message.session_id,
        chat_id=message.chat_id,
        seq=message.seq,
        message_id=message.message_id,
        reply_seq=reply_seq,
        request_hash=key.request_hash,
        expires_at=expiry(),
    )


def _answer_stored(
    store: Store, model: ChatModel, user_id: str, key: RequestKey | None, marker: SendMarkerItem
) -> Exchange:
    """A repeat of a send whose user message is stored: its first reply if it has one, else
    a reply now. The repeat finishes the request its first attempt began, when the chat was
    active and the session too, so a chat switched or a session paused since does not refuse
    it (a reply, like any reply, needs only its chat to exist)."""
    if key is None or marker.request_hash != key.request_hash:
        raise IdempotencyKeyReused("This Idempotency-Key was already used with a different request.")
    session_id, chat_id = marker.session_id, marker.chat_id
    if marker.reply_seq is not None:  # a keyed regenerate's reply
        user, reply = store.messages.get_pair(user_id, session_id, chat_id, marker.seq, marker.reply_seq)
        if user is None or reply is None:
            raise NotFound("The messages this Idempotency-Key stored no longer exist.")
        return _exchange(user, reply)
    user_message = store.messages.get(user_id, session_id, chat_id, marker.seq)
    if user_message is None or user_message.message_id != marker.message_id:
        raise NotFound("The message this Idempotency-Key stored no longer exists.")
    if user_message.reply_seq is not None:
        reply = store.messages.get(user_id, session_id, chat_id, user_message.reply_seq)
        if reply is not None:
            return _exchange(user_message, reply)
    thread = read_thread(store, user_id, session_id, chat_id, following_pointer=False)
    if replies.in_progress(thread.head, replies.now_seconds()):
        raise _stored_but_waiting(user_message)
    try:  # one reply in flight: the lease is a condition of the reply's transaction
        reply = _reply(store, model, user_id, thread, user_message, thread.last_seq, check_lease=True)
    except ReplyInProgress:
        raise _stored_but_waiting(user_message) from None
    return _exchange(user_message, reply)


def regenerate(
    store: Store,
    model: ChatModel,
    user_id: str,
    session_id: str,
    chat_id: str,
    key: RequestKey | None = None,
    respond_async: bool = False,
) -> Exchange:
    """A new reply to the chat's last user message; earlier replies stay. Two requests before
    the model (the thread, the session's answer on sending) and the reply's transaction.
    With ``MONTHLY_TOKEN_BUDGET``, the session's read also reads the user's counters: a
    regenerate whose month's tokens reached the budget is refused before the model is called
    (it stores no question whose transaction could check it).

    Under an ``Idempotency-Key`` the reply's transaction writes the key's marker, and a repeat
    reads it first (one more request): a regenerate DynamoDB committed but answered with an
    error is answered on the repeat, without a second reply or model call."""
    if key is not None:
        stored = store.messages.get_marker(user_id, key.key_hash)
        if stored is not None:
            return _answer_stored(store, model, user_id, key, stored)
    if respond_async:
        return optimistic(lambda: _start_regenerate(store, user_id, session_id, chat_id))
    try:
        return _regenerate(store, model, user_id, session_id, chat_id, key)
    except _Repeat as repeat:
        return _answer_stored(store, model, user_id, key, repeat.marker)


def _start_regenerate(store: Store, user_id: str, session_id: str, chat_id: str) -> Exchange:
    """A regenerate with ``Prefer: respond-async``: the reply stored ``generating`` with the
    chat's lease, the session's state a condition of that transaction, then the generating
    function invoked. (Under an ``Idempotency-Key`` its repeats are answered by the key's record.)"""
    thread, answering = _to_regenerate(store, user_id, session_id, chat_id)
    seq = thread.last_seq + 1
    reply = replies.generating(thread.head, answering, seq, seq_id(new_id(), seq))
    now = replies.now_seconds()
    table = store.table
    try:
        ReplyStore(table).start(user_id, reply, reply.lease_until or 0, now, replies.dead_seq(thread.head, now))
    except ConditionFailed as exc:
        if exc.failed(2) and not exc.failed(1):  # the head's lease runs (the session's check passed)
            raise _in_progress() from None
        raise  # the seq taken, or the session changed since read: read again (and refuse by what is read)
    started = replies.start_generation(store, user_id, reply)
    return Exchange(user_message=message_view(answering), assistant_message=message_view(started))


def _regenerate(
    store: Store, model: ChatModel, user_id: str, session_id: str, chat_id: str, key: RequestKey | None
) -> Exchange:
    thread, answering = _to_regenerate(store, user_id, session_id, chat_id)
    reply = _reply(store, model, user_id, thread, answering, thread.last_seq, key, check_lease=True)
    return _exchange(answering, reply)


def _to_regenerate(store: Store, user_id: str, session_id: str, chat_id: str) -> tuple[Thread, MessageItem]:
    """The chat's thread and the user message a regenerate answers, after the session's and the
    chat's refusals (paused, not active, a reply in flight, the budget spent)."""
    thread = read_thread(store, user_id, session_id, chat_id, following_pointer=False)
    budget = get_settings().monthly_token_budget
    if budget:  # the session and the user's counters in the one read (a regenerate stores no question)
        session, counters = store.sessions.get_with_counters(user_id, session_id)
    else:
        session, counters = store.sessions.get(user_id, session_id), {}
    refusal = _refusal(session, chat_id)
    if refusal is not None:
        raise refusal
    if budget and counters.get(usage.period_field("totalTokens", usage.period_of(utc_now())), 0) >= budget:
        raise usage.budget_exhausted(budget)
    answering = next((m for m in thread.newest if m.role == "user"), None)
    if answering is None and thread.newest:
        answering = store.messages.last_user_message(user_id, session_id, chat_id, thread.newest[-1].seq)
        if answering is None and thread.head.lineage:  # a fork: its shared history, newest first
            shared = after(spans(thread.head.lineage, chat_id)[:-1], thread.newest[-1].seq, oldest_first=False)
            answering = store.branches.last_user_message(user_id, session_id, shared)
    if answering is None:
        raise NothingToRegenerate("The chat has no user message to answer.")
    _refuse_in_progress(thread)
    return thread, answering


def finish_edit(
    store: Store, model: ChatModel, user_id: str, session_id: str, chat_id: str, seq: int, content: str
) -> Exchange:
    """A keyed repeat of an edit whose fork an earlier attempt made (its answer lost): the
    question that attempt stored at ``seq`` and its reply, answered now if it has none; sent
    now if the attempt stopped before it."""
    stored = store.messages.get(user_id, session_id, chat_id, seq)
    if stored is None or stored.role != "user":
        return send_message(store, model, user_id, session_id, chat_id, content)
    if stored.reply_seq is not None:
        reply = store.messages.get(user_id, session_id, chat_id, stored.reply_seq)
        if reply is not None:
            return _exchange(stored, reply)
    thread = read_thread(store, user_id, session_id, chat_id, following_pointer=False)
    return _exchange(stored, _reply(store, model, user_id, thread, stored, thread.last_seq))
