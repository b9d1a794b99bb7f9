"""The generating function's work: one reply, streamed from the model, stored as it grows.

Only ``functions/generate_reply.py`` imports this (it imports the model client). See
:mod:`chat_sessions.services.replies` for the hand-over, the lease and the cost per reply.

Steps: claim the reply (a conditional write: a second delivery of the same asynchronous
invocation, or a reply cancelled before it started, stops here); read the chat's thread (the
model's window, as for a synchronous reply); stream the reply with ``stream=True``, pushing each
piece to the chat's WebSocket subscribers (``push.push_delta``) and storing the content at most
every ``REPLY_FLUSH_SECONDS`` (1.5 s); then one transaction: ``complete`` with usage (the user message answered
and the counters of chat, session and user moved, as a synchronous reply does) and the lease
given back. A model failure stores ``failed`` with what was generated (the user message stays
``unanswered``). A write refused because the reply is no longer ``generating`` (cancelled, or
taken over after its lease ran out) stops the generation and closes the model's stream.
"""

from __future__ import annotations

import time
from typing import Literal

from chat_sessions import push
from chat_sessions.config import get_settings
from chat_sessions.context_window import estimate_tokens
from chat_sessions.errors import ServiceError
from chat_sessions.invocation import seconds_left
from chat_sessions.items import MessageItem
from chat_sessions.llm import Completion, StreamingModel
from chat_sessions.observability import logger
from chat_sessions.services.conversation import model_window, read_thread
from chat_sessions.services.replies import FINISH_MARGIN_SECONDS
from chat_sessions.services.retry import optimistic
from chat_sessions.store import ConditionFailed, Store
from chat_sessions.store.messages import ANSWERED, CHAT, REPLY, SESSION
from chat_sessions.store.replies import ReplyStore, lease_released

Outcome = Literal["complete", "failed", "stopped", "duplicate"]


def _seconds(reply: MessageItem) -> float:
    """The time the model gets: the invocation's time left, and the lease's, minus the margin
    for storing the end (so a live generation always ends before its lease does)."""
    limits = [get_settings().generation_timeout_seconds]
    left = seconds_left()
    if left is not None:
        limits.append(left)
    if reply.lease_until is not None:
        limits.append(reply.lease_until - time.time())
    return min(limits) - FINISH_MARGIN_SECONDS


def generate(
    store: Store, model: StreamingModel, user_id: str, session_id: str, chat_id: str, seq: int, generator: str
) -> Outcome:
    table = store.table
    replies = ReplyStore(table)
    reply = replies.claim(user_id, session_id, chat_id, seq, generator)
    if reply is None:
        logger.info("reply not generating or already claimed", extra={"seq": seq})
        return "duplicate"
    thread = read_thread(store, user_id, session_id, chat_id, following_pointer=False)
    answering = next((m for m in thread.newest if m.seq == reply.reply_to_seq), None)
    if answering is None and reply.reply_to_seq is not None:
        answering = store.messages.get(user_id, session_id, chat_id, reply.reply_to_seq)
    if answering is None:  # a fork's shared question: stored in another chat's range
        replies.fail(user_id, reply, "", 0)
        return "failed"
    window = model_window(thread, answering)
    parts: list[str] = []
    offset = 0
    stored_at = time.monotonic()
    stored_len = 0
    flush_seconds = get_settings().reply_flush_seconds
    stream = model.stream(reply.model or thread.head.model, window, _seconds(reply))
    try:
        for piece in stream:
            push.push_delta(user_id, session_id, chat_id, reply.message_id, offset, piece)
            parts.append(piece)
            offset += len(piece)
            if time.monotonic() - stored_at >= flush_seconds and offset > stored_len:
                content = "".join(parts)
                if not replies.grow(user_id, reply, content, estimate_tokens(content)):
                    stream.close()
                    return "stopped"
                stored_at, stored_len = time.monotonic(), offset
    except ServiceError as exc:
        content = "".join(parts)
        logger.warning("model failed midway", extra={"error": exc.code, "characters": len(content)})
        return "failed" if replies.fail(user_id, reply, content, estimate_tokens(content)) else "stopped"
    return _complete(store, replies, user_id, reply, answering, stream.completion())


def _complete(
    store: Store,
    replies: ReplyStore,
    user_id: str,
    reply: MessageItem,
    answering: MessageItem,
    completion: Completion,
) -> Outcome:
    """The reply ``complete`` with usage, in one transaction with the user message answered, the
    counters and the lease given back (``MessageStore.append_reply``, its Put conditioned on the
    reply still being this generation's)."""
    done = reply.model_copy(
        update={
            "content": completion.content,
            "status": "complete",
            "model": completion.model,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.total_tokens,
            "tokens": estimate_tokens(completion.content),
            "lease_until": None,
            "generator": None,
        }
    )
    answered = answering
    release = lease_released(user_id, reply.session_id, reply.chat_id, reply.seq)

    def attempt() -> Outcome:
        nonlocal answered
        try:
            store.messages.append_reply(user_id, done, answered, extra=[release], generated_by=reply.generator)
        except ConditionFailed as exc:
            if exc.failed(REPLY):  # cancelled (or taken over) since its last write: it stays so
                return "complete" if _landed(store, user_id, done) else "stopped"
            if exc.failed(SESSION) or exc.failed(CHAT):  # archived or deleted while generating
                replies.fail(user_id, reply, done.content, done.tokens)
                return "failed"
            if exc.failed(ANSWERED):  # the question's status changed: count it as it is now
                current = store.messages.get(user_id, reply.session_id, answered.chat_id, answered.seq)
                if current is None:
                    return "stopped"
                answered = current
            raise
        return "complete"

    return optimistic(attempt)


def _landed(store: Store, user_id: str, done: MessageItem) -> bool:
    """Whether the reply is stored as this generation completes it: an earlier attempt of the
    same transaction committed and its answer was lost (the SDK's replay, or a retry under a new
    token after ``TransactionInProgressException``, then meets its own write as a failed
    condition). A cancel or a takeover leaves it another status or other content."""
    stored = store.messages.get(user_id, done.session_id, done.chat_id, done.seq)
    return (
        stored is not None
        and stored.status == "complete"
        and stored.content == done.content
        and stored.total_tokens == done.total_tokens
    )
