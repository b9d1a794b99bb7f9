"""Every condition in the store, shown to refuse a write computed from a stale read.

Each test is one interleaving, played in order on one thread, so it is deterministic: the
writer under test reads, another writer changes the item (through the store or a service, as
a concurrent request would), then the writer under test makes its write with the values it
read. The write must be refused (``ConditionFailed`` naming the items that refused it, the
domain error the store maps it to, or, for a replayed create that finds its own item, the
answer that it landed) and must change nothing: a full scan of the table before and after is
compared. Thread races against moto rarely hit these windows; naming them does.

The items that refused are asserted exactly, item by item. Several conditions guard the same
invariant twice (a chat's ``lastSeq`` and the free message slot; the chat's ``active`` flag and
the session's ``activeChatId``): there the refusal reasons are the only observable difference
between one guard and both, and they are what ``ConditionFailed.failed(i)`` promises callers.

``python -m tests.mutation`` (``make mutants``) removes each condition and each conjunct in turn
and runs these tests against the result: each of those mutants fails at least one test here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from chat_sessions import keys
from chat_sessions.clock import utc_now
from chat_sessions.errors import ErasureInProgress, NotFound, SessionArchived, SessionLimitReached, TokenBudgetExhausted
from chat_sessions.ids import new_id
from chat_sessions.items import ChatItem, CreateMarkerItem, MessageItem, Segment, SendMarkerItem, SessionItem
from chat_sessions.llm import get_chat_model
from chat_sessions.models import CreateChatRequest, CreateSessionRequest, UpdateChatRequest, UpdateSessionRequest
from chat_sessions.services import chats, conversation, erasure, sessions
from chat_sessions.session_status import TRANSITIONS
from chat_sessions.store import ConditionFailed, Store, get_store
from chat_sessions.store.erasure import ErasureStore
from chat_sessions.store.markers import MarkerExists
from chat_sessions.store.messages import Thread
from chat_sessions.store.outcomes import CONDITION_FAILED
from chat_sessions.store.table import plain
from tests.support import table_items
from tests.upstream import Upstream

USER = "alice"
PAUSE = TRANSITIONS[("active", "paused")]
RESUME = TRANSITIONS[("paused", "active")]
# Item positions in each transaction, as the store builds them.
SESSION_QUOTA, SESSION_MARKER = 1, 2
STATUS_UPDATE, STATUS_QUOTA = 0, 1
DELETE_SESSION, DELETE_QUOTA = 0, 1
CREATE_SESSION, CREATE_PREVIOUS = 1, 2
CREATE_MARKER = 5  # with a previous chat: chat, session, previous chat's flag, head, user counters, marker
ACTIVATE_TARGET, ACTIVATE_SESSION, ACTIVATE_PREVIOUS = 0, 1, 2
DELETE_CHAT, DELETE_CHAT_SESSION = 0, 1
USER_MESSAGE, USER_SESSION, USER_MARKER = 0, 1, 2
REPLY_MESSAGE, REPLY_ANSWERED, REPLY_CHAT, REPLY_SESSION, REPLY_COUNTERS, REPLY_MARKER = 0, 1, 2, 3, 4, 5

E = TypeVar("E", bound=Exception)


@pytest.fixture
def store(table: str) -> Iterator[Store]:
    yield get_store()


# ---------------------------------------------------------------------------------------------
# Helpers: the table as a whole, and refusals that must leave it as it was.


def snapshot(table: str) -> list[dict[str, Any]]:
    """Every item, in key order: what "nothing changed" is compared against."""
    return sorted(table_items(table), key=lambda item: (str(item["PK"]), str(item["SK"])))


def refused_as(table: str, write: Callable[[], object], error: type[E]) -> E:
    """Run the stale ``write``; it must raise ``error`` and leave every item as it was."""
    before = snapshot(table)
    with pytest.raises(error) as caught:
        write()
    assert snapshot(table) == before, "a refused write changed the table"
    return caught.value


def refused(table: str, write: Callable[[], object]) -> ConditionFailed:
    return refused_as(table, write, ConditionFailed)


def answered_as_landed(table: str, write: Callable[[], object]) -> None:
    """Run a replayed create: the store answers it as the earlier attempt that landed (no
    error), and it must leave every item as it was."""
    before = snapshot(table)
    write()
    assert snapshot(table) == before, "a replayed create changed the table"


def failed_items(exc: BaseException | None) -> list[int]:
    """The positions of the items whose condition was false (a mapped error: its cause's)."""
    if exc is not None and not isinstance(exc, ConditionFailed):
        exc = exc.__cause__
    assert isinstance(exc, ConditionFailed), f"not refused by a condition: {exc!r}"
    return [i for i, reason in enumerate(exc.reasons) if reason == CONDITION_FAILED]


# ---------------------------------------------------------------------------------------------
# Helpers: the other writer works through the services; the writer under test builds its items
# from what it read, as the services do.


def new_session(store: Store, name: str = "s") -> str:
    return sessions.create_session(store, USER, CreateSessionRequest(name=name)).session_id


def new_chat(store: Store, sid: str, name: str = "c") -> str:
    return chats.create_chat(store, USER, sid, CreateChatRequest(name=name)).chat_id


def session_item(name: str = "s") -> SessionItem:
    now = utc_now()
    return SessionItem(
        session_id=new_id(),
        name=name,
        status="active",
        chat_count=0,
        message_count=0,
        metadata={},
        created_at=now,
        updated_at=now,
    )


def chat_item(sid: str, name: str = "c") -> ChatItem:
    now = utc_now()
    return ChatItem(
        chat_id=new_id(),
        session_id=sid,
        name=name,
        model="test-model",
        active=True,
        message_count=0,
        created_at=now,
        updated_at=now,
    )


def thread(store: Store, sid: str, chat_id: str) -> Thread:
    """What a send reads: the chat's head and newest messages."""
    return store.messages.thread(USER, sid, chat_id, 100)


def user_message(read: Thread, content: str = "hello") -> MessageItem:
    """The user message a send builds from the thread it read: the seq after the newest."""
    return MessageItem(
        message_id=new_id(),
        chat_id=read.head.chat_id,
        session_id=read.head.session_id,
        seq=read.last_seq + 1,
        role="user",
        content=content,
        status="unanswered",
        tokens=2,
        created_at=utc_now(),
    )


def reply_message(read: Thread, answered: MessageItem) -> MessageItem:
    """The reply a send builds: the seq after the newest as read, answering ``answered``."""
    return MessageItem(
        message_id=new_id(),
        chat_id=read.head.chat_id,
        session_id=read.head.session_id,
        seq=read.last_seq + 1,
        role="assistant",
        content="a reply",
        status="complete",
        model="test-model",
        prompt_tokens=3,
        completion_tokens=2,
        total_tokens=5,
        tokens=2,
        reply_to_seq=answered.seq,
        created_at=utc_now(),
    )


def send_user(store: Store, sid: str, chat_id: str, content: str = "hello") -> MessageItem:
    """Another writer's send, first step: its user message appended to a fresh read."""
    message = user_message(thread(store, sid, chat_id), content)
    store.messages.append_user(USER, message)
    return message


def send_exchange(store: Store, sid: str, chat_id: str, content: str = "hello") -> MessageItem:
    """Another writer's whole send: its user message, then the reply (which moves the counters)."""
    answered = send_user(store, sid, chat_id, content)
    reply = reply_message(thread(store, sid, chat_id), answered)
    store.messages.append_reply(USER, reply, answered)
    return reply


def marker_for(message: MessageItem, key_hash: str) -> tuple[str, SendMarkerItem]:
    return key_hash, SendMarkerItem(
        session_id=message.session_id,
        chat_id=message.chat_id,
        seq=message.seq,
        message_id=message.message_id,
        request_hash="b" * 64,
        expires_at=2_000_000_000,
    )


def delete_session_before_its_purge(store: Store, monkeypatch: pytest.MonkeyPatch, sid: str) -> None:
    """Another writer's DELETE of the session whose request ends (times out) after its first
    step, the session item and its place, and before the purge of its chats and messages: the
    state the stream consumer later cleans up, which writes in flight can still meet."""

    def timed_out(pk: str, prefix: str) -> int:
        raise TimeoutError("the DELETE request ended before its purge")

    with monkeypatch.context() as patch:
        patch.setattr(store.table, "purge", timed_out)
        with pytest.raises(TimeoutError):
            sessions.delete_session(store, USER, sid)
    with pytest.raises(NotFound):
        store.sessions.get(USER, sid)


# ---------------------------------------------------------------------------------------------
# table.patch: attribute_exists(PK)


def test_patch_of_a_session_deleted_after_it_was_read_is_not_found(table: str, store: Store) -> None:
    """Read the session, another writer deletes it, PATCH it: nothing is recreated (the
    service reads it again after the refusal: 404)."""
    sid = new_session(store)
    store.sessions.get(USER, sid)
    sessions.delete_session(store, USER, sid)
    refused(table, lambda: store.sessions.update(USER, sid, {"name": "renamed"}, utc_now()))
    refused_as(table, lambda: sessions.update_session(store, USER, sid, UpdateSessionRequest(name="x")), NotFound)


def test_patch_of_a_chat_deleted_after_it_was_read_is_not_found(table: str, store: Store) -> None:
    """Read the chat, another writer deletes it, PATCH it: nothing is recreated."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    store.chats.get(USER, sid, cid)
    chats.delete_chat(store, USER, sid, cid)
    refused_as(table, lambda: store.chats.update(USER, sid, cid, {"name": "renamed"}, [], utc_now()), NotFound)


# ---------------------------------------------------------------------------------------------
# sessions: quota_increment (attribute_not_exists(activeSessions) OR activeSessions < :max)


def test_create_after_another_create_took_the_last_place_is_limit_reached(table: str, store: Store) -> None:
    """A create sees one place of two taken; another create takes the second; the first create
    is refused at the counter, as ``session_limit_reached``."""
    new_session(store, "first")
    assert store.sessions.active_count(USER) == 1
    new_session(store, "second")
    exc = refused_as(table, lambda: store.sessions.create(USER, session_item(), max_active=2), SessionLimitReached)
    assert failed_items(exc) == [SESSION_QUOTA]


# ---------------------------------------------------------------------------------------------
# erasure (DELETE /me): quota_increment_unless_erasing, ErasureStore.take_session/touch/finish


def test_create_after_an_erasure_began_is_refused(table: str, store: Store) -> None:
    """A create decides with the user not being erased; DELETE /me marks them; the create is
    refused at the counter, as ``erasure_in_progress`` (a session appearing behind the erasure
    would be missed by it)."""
    new_session(store)
    erasure.start_erasure(store, USER)
    exc = refused_as(table, lambda: store.sessions.create(USER, session_item(), max_active=10), ErasureInProgress)
    assert failed_items(exc) == [SESSION_QUOTA]


def test_a_step_taking_a_session_after_the_erasure_ended_deletes_nothing(table: str, store: Store) -> None:
    """A step read the marker; the erasure ended (another step) and the user created a session
    again; the stale step's take of that session is refused: the new session stays."""
    erasure.start_erasure(store, USER)
    eraser = ErasureStore(store.table)
    assert eraser.marker(USER) is not None
    assert eraser.finish(USER)
    sid = new_session(store)
    refused(table, lambda: eraser.take_session(USER, sid, previous=None))


def test_a_step_taking_a_session_after_another_step_took_one_is_refused(table: str, store: Store) -> None:
    """Two steps read a marker pointing nowhere; one takes a session; the other's take is
    refused (it would move the pointer off a partition not yet purged)."""
    first, second = new_session(store, "a"), new_session(store, "b")
    erasure.start_erasure(store, USER)
    eraser = ErasureStore(store.table)
    eraser.take_session(USER, first, previous=None)
    refused(table, lambda: eraser.take_session(USER, second, previous=None))


def test_a_step_moving_on_from_a_session_another_step_moved_on_from_is_refused(table: str, store: Store) -> None:
    first, second, third = new_session(store, "a"), new_session(store, "b"), new_session(store, "c")
    erasure.start_erasure(store, USER)
    eraser = ErasureStore(store.table)
    eraser.take_session(USER, first, previous=None)
    eraser.take_session(USER, second, previous=first)
    refused(table, lambda: eraser.take_session(USER, third, previous=first))


def test_a_hand_over_after_the_erasure_ended_recreates_nothing(table: str, store: Store) -> None:
    """A step about to hand over; the erasure ends meanwhile; its touch must not recreate the
    counters item (an update would)."""
    erasure.start_erasure(store, USER)
    eraser = ErasureStore(store.table)
    assert eraser.finish(USER)
    before = snapshot(table)
    assert not eraser.touch(USER)
    assert snapshot(table) == before


def test_a_finish_after_the_user_came_back_keeps_their_counters(table: str, store: Store) -> None:
    """A step about to finish; another finished first and the user created a session again: the
    stale finish must not delete their new counters."""
    erasure.start_erasure(store, USER)
    eraser = ErasureStore(store.table)
    assert eraser.finish(USER)
    new_session(store)
    before = snapshot(table)
    assert not eraser.finish(USER)
    assert snapshot(table) == before


def test_resume_after_another_create_took_the_last_place_is_limit_reached(table: str, store: Store) -> None:
    """Read a paused session (one place of two taken); another writer creates a session; the
    resume is refused at the counter, as ``session_limit_reached``."""
    new_session(store, "active")
    paused = new_session(store, "paused")
    sessions.pause_session(store, USER, paused)
    assert store.sessions.get(USER, paused).status == "paused"
    new_session(store, "took the place")
    exc = refused_as(
        table, lambda: store.sessions.set_status(USER, paused, RESUME, utc_now(), max_active=2), SessionLimitReached
    )
    assert failed_items(exc) == [STATUS_QUOTA]


# ---------------------------------------------------------------------------------------------
# sessions: quota_decrement (activeSessions >= :one)
#
# No interleaving of the service's own writes reaches these: every decrement is conditioned on a
# status that holds a place, so the counter is at least one. The counter below is out of step
# with the sessions (a repair, a bug, a manual edit); the decrement must refuse, not go negative.


def drift_counter_to_zero(store: Store) -> None:
    store.table.update(
        keys.quota_key(USER), UpdateExpression="SET activeSessions = :zero", ExpressionAttributeValues={":zero": 0}
    )


def test_pause_with_the_counter_already_at_zero_never_takes_it_below_zero(table: str, store: Store) -> None:
    """Read an active session; the counter is set to zero behind it; the pause is refused at
    the counter."""
    sid = new_session(store)
    store.sessions.get(USER, sid)
    drift_counter_to_zero(store)
    exc = refused(table, lambda: store.sessions.set_status(USER, sid, PAUSE, utc_now(), max_active=10))
    assert failed_items(exc) == [STATUS_QUOTA]


def test_delete_with_the_counter_already_at_zero_never_takes_it_below_zero(table: str, store: Store) -> None:
    """Read an active session; the counter is set to zero behind it; the delete is refused at
    the counter."""
    sid = new_session(store)
    store.sessions.get(USER, sid)
    drift_counter_to_zero(store)
    exc = refused(table, lambda: store.sessions.delete(USER, sid, "active"))
    assert failed_items(exc) == [DELETE_QUOTA]


# ---------------------------------------------------------------------------------------------
# sessions.create: attribute_not_exists(PK) on the session


def test_create_replayed_after_it_landed_takes_no_second_place(table: str, store: Store) -> None:
    """A create lands (its answer lost); the same create is made again: the session item is
    there, so it is answered as landed, not as the limit, and the counter counts it once."""
    item = session_item()
    store.sessions.create(USER, item, max_active=10)
    assert store.sessions.active_count(USER) == 1
    answered_as_landed(table, lambda: store.sessions.create(USER, item, max_active=10))
    assert store.sessions.active_count(USER) == 1


def test_create_replayed_at_the_limit_is_answered_as_landed(table: str, store: Store) -> None:
    """A create takes the last place (its answer lost); the same create again finds the limit
    reached too, but its own session there: answered as landed, not ``session_limit_reached``."""
    new_session(store, "first")
    item = session_item()
    store.sessions.create(USER, item, max_active=2)
    answered_as_landed(table, lambda: store.sessions.create(USER, item, max_active=2))


# ---------------------------------------------------------------------------------------------
# markers.marker_put: attribute_not_exists(PK) on what an Idempotency-Key created (the send's
# marker is below, with append_user)


def created_marker(session_id: str, chat_id: str | None = None) -> CreateMarkerItem:
    return CreateMarkerItem(session_id=session_id, chat_id=chat_id, request_hash="c" * 64, expires_at=2_000_000_000)


def test_keyed_create_repeated_after_it_landed_creates_no_second_session(table: str, store: Store) -> None:
    """A create under a key lands but its caller sees a failure (503); the repeat with the same
    key makes a new session id: refused at the key's marker (``MarkerExists``, so the service
    answers the session stored), not a second session and a second place."""
    key_hash = "d" * 64
    first = session_item("first")
    store.sessions.create(USER, first, 10, (key_hash, created_marker(first.session_id)))
    repeat = session_item("first")
    exc = refused_as(
        table,
        lambda: store.sessions.create(USER, repeat, 10, (key_hash, created_marker(repeat.session_id))),
        MarkerExists,
    )
    assert failed_items(exc) == [SESSION_MARKER]


def test_keyed_create_repeated_after_it_took_the_last_place_is_not_limit_reached(table: str, store: Store) -> None:
    """A create under a key takes the last place and its caller sees a failure; the repeat is
    refused at the counter and at the marker: the marker wins (``MarkerExists``), never a false
    ``session_limit_reached`` for a session the key did create."""
    new_session(store, "holds a place")
    key_hash = "e" * 64
    first = session_item("first")
    store.sessions.create(USER, first, 2, (key_hash, created_marker(first.session_id)))
    repeat = session_item("first")
    exc = refused_as(
        table,
        lambda: store.sessions.create(USER, repeat, 2, (key_hash, created_marker(repeat.session_id))),
        MarkerExists,
    )
    assert failed_items(exc) == [SESSION_QUOTA, SESSION_MARKER]


def test_keyed_chat_create_repeated_after_it_landed_creates_no_second_chat(table: str, store: Store) -> None:
    """A chat create under a key lands (now the active chat) but its caller sees a failure; the
    repeat reads the pointer afresh (the chat it created) and makes a new chat id: refused at
    the marker only, so no second chat is created and the first stays active."""
    sid = new_session(store)
    key_hash = "f" * 64
    first = chat_item(sid, "c")
    store.chats.create(USER, sid, first, None, (key_hash, created_marker(sid, first.chat_id)))
    previous = store.sessions.get(USER, sid).active_chat_id
    assert previous == first.chat_id
    repeat = chat_item(sid, "c")
    exc = refused_as(
        table,
        lambda: store.chats.create(USER, sid, repeat, previous, (key_hash, created_marker(sid, repeat.chat_id))),
        MarkerExists,
    )
    assert failed_items(exc) == [CREATE_MARKER]


# ---------------------------------------------------------------------------------------------
# sessions.set_status: #status = :old


def test_pause_after_another_pause_frees_no_second_place(table: str, store: Store) -> None:
    """Two pauses read the session active; one lands; the other is refused at the session, so
    the counter (another session still active) is decremented once."""
    new_session(store, "stays active")
    sid = new_session(store)
    assert store.sessions.get(USER, sid).status == "active"
    sessions.pause_session(store, USER, sid)
    exc = refused(table, lambda: store.sessions.set_status(USER, sid, PAUSE, utc_now(), max_active=10))
    assert failed_items(exc) == [STATUS_UPDATE]


def test_resume_after_another_resume_takes_no_second_place(table: str, store: Store) -> None:
    """Two resumes read the session paused; one lands; the other is refused at the session,
    and is not reported as ``session_limit_reached``."""
    sid = new_session(store)
    sessions.pause_session(store, USER, sid)
    assert store.sessions.get(USER, sid).status == "paused"
    sessions.resume_session(store, USER, sid)
    exc = refused(table, lambda: store.sessions.set_status(USER, sid, RESUME, utc_now(), max_active=10))
    assert failed_items(exc) == [STATUS_UPDATE]


def test_resume_after_another_resume_at_the_limit_is_not_limit_reached(table: str, store: Store) -> None:
    """Two resumes read the session paused; one lands and fills the last place; the other is
    refused at both items and must answer the stale read (retried), not ``session_limit_reached``."""
    new_session(store, "active")
    sid = new_session(store)
    sessions.pause_session(store, USER, sid)
    assert store.sessions.get(USER, sid).status == "paused"
    sessions.resume_session(store, USER, sid)
    exc = refused(table, lambda: store.sessions.set_status(USER, sid, RESUME, utc_now(), max_active=2))
    assert failed_items(exc) == [STATUS_UPDATE, STATUS_QUOTA]


def test_pause_of_a_session_deleted_after_it_was_read_recreates_nothing(table: str, store: Store) -> None:
    """Read an active session; another writer deletes it; the pause is refused at the session
    (no half session item is created, no place freed twice)."""
    new_session(store, "stays active")
    sid = new_session(store)
    store.sessions.get(USER, sid)
    sessions.delete_session(store, USER, sid)
    exc = refused(table, lambda: store.sessions.set_status(USER, sid, PAUSE, utc_now(), max_active=10))
    assert failed_items(exc) == [STATUS_UPDATE]


# ---------------------------------------------------------------------------------------------
# sessions.delete: #status = :status


def test_delete_with_status_read_before_a_pause_frees_no_second_place(table: str, store: Store) -> None:
    """Read the session active; another writer pauses it (freeing its place); the delete,
    which would free the place again, is refused at the session."""
    new_session(store, "stays active")
    sid = new_session(store)
    status = store.sessions.get(USER, sid).status
    sessions.pause_session(store, USER, sid)
    exc = refused(table, lambda: store.sessions.delete(USER, sid, status))
    assert failed_items(exc) == [DELETE_SESSION]


def test_delete_with_status_read_before_a_resume_keeps_no_place_held(table: str, store: Store) -> None:
    """Read the session paused; another writer resumes it (taking a place); the delete, which
    would not free that place, is refused at the session."""
    sid = new_session(store)
    sessions.pause_session(store, USER, sid)
    status = store.sessions.get(USER, sid).status
    sessions.resume_session(store, USER, sid)
    exc = refused(table, lambda: store.sessions.delete(USER, sid, status))
    assert failed_items(exc) == [DELETE_SESSION]


# ---------------------------------------------------------------------------------------------
# chats.session_switch, no chat read: attribute_exists(PK) AND attribute_not_exists(activeChatId)


def test_first_chat_after_another_first_chat_landed_leaves_one_active(table: str, store: Store) -> None:
    """Two creates read a session with no active chat; one lands; the other is refused at the
    session (else two chats would be active)."""
    sid = new_session(store)
    previous = store.sessions.get(USER, sid).active_chat_id
    assert previous is None
    new_chat(store, sid, "landed first")
    exc = refused(table, lambda: store.chats.create(USER, sid, chat_item(sid), previous))
    assert failed_items(exc) == [CREATE_SESSION]


def test_activate_after_another_activate_filled_an_empty_pointer(table: str, store: Store) -> None:
    """The active chat was deleted; two activates read no active chat; one lands; the other is
    refused at the session."""
    sid = new_session(store)
    first, second, doomed = new_chat(store, sid, "a"), new_chat(store, sid, "b"), new_chat(store, sid, "c")
    chats.delete_chat(store, USER, sid, doomed)
    session, _ = store.chats.get_with_session(USER, sid, second)
    assert session.active_chat_id is None
    chats.activate_chat(store, USER, sid, first)
    exc = refused(table, lambda: store.chats.activate(USER, sid, second, session.active_chat_id, utc_now()))
    assert failed_items(exc) == [ACTIVATE_SESSION]


def test_first_chat_in_a_session_deleted_after_it_was_read_is_refused(table: str, store: Store) -> None:
    """Read a session with no chat; another writer deletes the session; the create is refused
    at the session (a refusal the service retries into 404, not an update of a missing item)."""
    sid = new_session(store)
    previous = store.sessions.get(USER, sid).active_chat_id
    sessions.delete_session(store, USER, sid)
    exc = refused(table, lambda: store.chats.create(USER, sid, chat_item(sid), previous))
    assert failed_items(exc) == [CREATE_SESSION]


# ---------------------------------------------------------------------------------------------
# chats.session_switch, a chat read: activeChatId = :prev


def test_delete_of_an_inactive_chat_another_writer_activated_is_refused(table: str, store: Store) -> None:
    """Read chat A inactive (B active); another writer activates A; deleting A as inactive,
    which would point the session back at B while B is off, is refused at the session."""
    sid = new_session(store)
    a = new_chat(store, sid, "a")
    new_chat(store, sid, "b")
    session, chat = store.chats.get_with_session(USER, sid, a)
    chats.activate_chat(store, USER, sid, a)
    exc = refused(table, lambda: store.chats.delete(USER, sid, chat, session.active_chat_id, utc_now()))
    assert failed_items(exc) == [DELETE_CHAT_SESSION]


def test_delete_of_the_active_chat_after_another_was_activated_is_refused(table: str, store: Store) -> None:
    """Read chat B active; another writer activates A; deleting B as the active chat, which
    would clear the pointer while A is on, is refused at the session."""
    sid = new_session(store)
    a = new_chat(store, sid, "a")
    b = new_chat(store, sid, "b")
    session, chat = store.chats.get_with_session(USER, sid, b)
    chats.activate_chat(store, USER, sid, a)
    exc = refused(table, lambda: store.chats.delete(USER, sid, chat, session.active_chat_id, utc_now()))
    assert failed_items(exc) == [DELETE_CHAT_SESSION]


def test_create_after_the_pointer_moved_is_refused(table: str, store: Store) -> None:
    """Read B active; another writer activates A; creating C with B as the previous active chat
    is refused at the session and at B's flag."""
    sid = new_session(store)
    a = new_chat(store, sid, "a")
    new_chat(store, sid, "b")
    previous = store.sessions.get(USER, sid).active_chat_id
    chats.activate_chat(store, USER, sid, a)
    exc = refused(table, lambda: store.chats.create(USER, sid, chat_item(sid), previous))
    assert failed_items(exc) == [CREATE_SESSION, CREATE_PREVIOUS]


def test_activate_after_the_pointer_moved_is_refused(table: str, store: Store) -> None:
    """Read C active; another writer activates B; activating A with C as the previous active
    chat is refused at the session and at C's flag."""
    sid = new_session(store)
    a, b = new_chat(store, sid, "a"), new_chat(store, sid, "b")
    new_chat(store, sid, "c")
    session, _ = store.chats.get_with_session(USER, sid, a)
    chats.activate_chat(store, USER, sid, b)
    exc = refused(table, lambda: store.chats.activate(USER, sid, a, session.active_chat_id, utc_now()))
    assert failed_items(exc) == [ACTIVATE_SESSION, ACTIVATE_PREVIOUS]


# ---------------------------------------------------------------------------------------------
# chats.chat_flag: active = :old


def test_activate_of_a_chat_deleted_after_it_was_read_recreates_nothing(table: str, store: Store) -> None:
    """Read chat A (B active); another writer deletes A; activating A is refused at A's flag
    (else a half chat item would be created and the session pointed at it)."""
    sid = new_session(store)
    a = new_chat(store, sid, "a")
    new_chat(store, sid, "b")
    session, _ = store.chats.get_with_session(USER, sid, a)
    chats.delete_chat(store, USER, sid, a)
    exc = refused(table, lambda: store.chats.activate(USER, sid, a, session.active_chat_id, utc_now()))
    assert failed_items(exc) == [ACTIVATE_TARGET]


def test_activate_after_another_activate_of_the_same_chat_is_refused(table: str, store: Store) -> None:
    """Two activates of A read B active; one lands; the other is refused at every item: A is
    already on, the pointer moved, B is already off."""
    sid = new_session(store)
    a = new_chat(store, sid, "a")
    new_chat(store, sid, "b")
    session, _ = store.chats.get_with_session(USER, sid, a)
    chats.activate_chat(store, USER, sid, a)
    exc = refused(table, lambda: store.chats.activate(USER, sid, a, session.active_chat_id, utc_now()))
    assert failed_items(exc) == [ACTIVATE_TARGET, ACTIVATE_SESSION, ACTIVATE_PREVIOUS]


# ---------------------------------------------------------------------------------------------
# chats.create: attribute_not_exists(PK) on the chat


def test_create_chat_replayed_after_the_pointer_moved_on_overwrites_nothing(table: str, store: Store) -> None:
    """Chat A is created (its answer lost) and gets a message; another writer creates B; the
    same create of A, made again against the pointer as now read (B), finds A there and is
    answered as landed (else A would be reset to no messages, made active again and counted
    twice)."""
    sid = new_session(store)
    a = chat_item(sid, "a")
    store.chats.create(USER, sid, a, None)
    send_user(store, sid, a.chat_id)
    new_chat(store, sid, "b")
    previous = store.sessions.get(USER, sid).active_chat_id
    answered_as_landed(table, lambda: store.chats.create(USER, sid, a, previous))


# ---------------------------------------------------------------------------------------------
# chats.delete: messageCount = :n


def test_delete_chat_after_a_message_landed_is_refused(table: str, store: Store) -> None:
    """Read the active chat with no message; another writer's exchange lands in it; the
    delete, which would take the read count (0) off the session's, is refused at the chat."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    session, chat = store.chats.get_with_session(USER, sid, cid)
    send_exchange(store, sid, cid)
    exc = refused(table, lambda: store.chats.delete(USER, sid, chat, session.active_chat_id, utc_now()))
    assert failed_items(exc) == [DELETE_CHAT]


# ---------------------------------------------------------------------------------------------
# messages.append_user: message (attribute_not_exists(PK)), session check (#status = :active
# AND activeChatId = :chat), marker (attribute_not_exists(PK))


def test_send_with_the_thread_read_before_another_send_is_refused(table: str, store: Store) -> None:
    """Two sends read the thread empty; one lands at seq 1; the other is refused at its
    message (seq 1 is taken): no repeat, and it retries after the newer message."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    read = thread(store, sid, cid)
    send_user(store, sid, cid, "landed first")
    exc = refused(table, lambda: store.messages.append_user(USER, user_message(read)))
    assert failed_items(exc) == [USER_MESSAGE]


def test_send_to_a_chat_switched_off_after_it_was_read_is_refused(table: str, store: Store) -> None:
    """Read chat B's thread while B is active; another writer activates A; the send to B is
    refused at the session's pointer."""
    sid = new_session(store)
    a = new_chat(store, sid, "a")
    b = new_chat(store, sid, "b")
    read = thread(store, sid, b)
    chats.activate_chat(store, USER, sid, a)
    exc = refused(table, lambda: store.messages.append_user(USER, user_message(read)))
    assert failed_items(exc) == [USER_SESSION]


def test_send_to_a_session_paused_after_it_was_read_is_refused(table: str, store: Store) -> None:
    """Read the session active; another writer pauses it; the send is refused at the session."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    assert store.sessions.get(USER, sid).status == "active"
    read = thread(store, sid, cid)
    sessions.pause_session(store, USER, sid)
    exc = refused(table, lambda: store.messages.append_user(USER, user_message(read)))
    assert failed_items(exc) == [USER_SESSION]


def test_send_in_a_session_deleted_before_its_purge_is_refused(
    table: str, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read the active chat's thread; another writer's DELETE removes the session but not yet
    its chats; the send is refused at the session."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    read = thread(store, sid, cid)
    delete_session_before_its_purge(store, monkeypatch, sid)
    exc = refused(table, lambda: store.messages.append_user(USER, user_message(read)))
    assert failed_items(exc) == [USER_SESSION]


def test_send_repeated_with_a_key_that_already_stored_a_message_is_refused(table: str, store: Store) -> None:
    """A send under a key stores its message and marker (then the model fails); the repeat
    reads the thread afresh and is refused at the marker only, so it stores no second message."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    key_hash = "a" * 64
    first = user_message(thread(store, sid, cid), "hi")
    store.messages.append_user(USER, first, marker_for(first, key_hash))
    repeat = user_message(thread(store, sid, cid), "hi")
    exc = refused(table, lambda: store.messages.append_user(USER, repeat, marker_for(repeat, key_hash)))
    assert failed_items(exc) == [USER_MARKER]
    marker = store.messages.get_marker(USER, key_hash)
    assert marker is not None and marker.message_id == first.message_id


def test_send_replayed_after_it_landed_is_refused_and_known_as_ours(table: str, store: Store) -> None:
    """A send's append lands and its answer is lost; the same append is made again: refused
    (its seq is taken), and ``landed`` tells it is this message, not another writer's."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    read = thread(store, sid, cid)
    message = user_message(read)
    store.messages.append_user(USER, message)
    exc = refused(table, lambda: store.messages.append_user(USER, message))
    assert failed_items(exc) == [USER_MESSAGE]
    assert store.messages.landed(message, USER)
    assert not store.messages.landed(user_message(read, "another writer's"), USER)


# ---------------------------------------------------------------------------------------------
# messages.append_reply: reply (attribute_not_exists(PK)), the answered message (#status = :was),
# chat (attribute_exists(PK)), session (attribute_exists(PK))


def test_reply_with_the_thread_read_before_another_send_is_refused(table: str, store: Store) -> None:
    """A reply is built after seq 1; another send lands at seq 2; the reply is refused at its
    message (seq 2 is taken)."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    answered = send_user(store, sid, cid, "first")
    read = thread(store, sid, cid)
    send_user(store, sid, cid, "second, landed first")
    exc = refused(table, lambda: store.messages.append_reply(USER, reply_message(read, answered), answered))
    assert failed_items(exc) == [REPLY_MESSAGE]


def test_reply_to_a_message_answered_after_it_was_read_is_refused(table: str, store: Store) -> None:
    """A reply is built for a message read unanswered; another writer's reply answers it first
    (counting it); the reply, at a free seq, is refused at the answered message, so the user
    message is not counted a second time."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    answered = send_user(store, sid, cid)
    other = reply_message(thread(store, sid, cid), answered)
    store.messages.append_reply(USER, other, answered)
    late = reply_message(thread(store, sid, cid), answered)
    exc = refused(table, lambda: store.messages.append_reply(USER, late, answered))
    assert failed_items(exc) == [REPLY_ANSWERED]
    assert store.chats.get(USER, sid, cid).message_count == 2


def test_reply_replayed_after_it_landed_is_refused_and_known_as_ours(table: str, store: Store) -> None:
    """A reply lands and its answer is lost; the same reply is appended again: refused (its
    seq is taken, the message is answered), usage not added twice, and ``landed`` tells it is
    this reply."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    answered = send_user(store, sid, cid)
    reply = reply_message(thread(store, sid, cid), answered)
    store.messages.append_reply(USER, reply, answered)
    exc = refused(table, lambda: store.messages.append_reply(USER, reply, answered))
    assert failed_items(exc) == [REPLY_MESSAGE, REPLY_ANSWERED]
    assert store.messages.landed(reply, USER)


def test_keyed_regenerate_repeated_after_its_reply_landed_stores_no_second_reply(table: str, store: Store) -> None:
    """A regenerate under a key stores its reply and marker, but its caller sees a failure; the
    repeat reads the thread afresh and builds a reply at the next (free) seq: refused at the
    key's marker only, so the message gets no second regenerated reply."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    answered = send_user(store, sid, cid)
    store.messages.append_reply(USER, reply_message(thread(store, sid, cid), answered), answered)
    answered = thread(store, sid, cid).newest[1]
    assert (answered.seq, answered.status) == (1, "complete")
    key_hash = "9" * 64

    def marker(reply: MessageItem) -> tuple[str, SendMarkerItem]:
        key, record = marker_for(answered, key_hash)
        return key, record.model_copy(update={"reply_seq": reply.seq})

    first = reply_message(thread(store, sid, cid), answered)
    store.messages.append_reply(USER, first, answered, marker(first))
    repeat = reply_message(thread(store, sid, cid), answered)
    exc = refused(table, lambda: store.messages.append_reply(USER, repeat, answered, marker(repeat)))
    assert failed_items(exc) == [REPLY_MARKER]


def test_reply_after_its_chat_was_deleted_is_refused(table: str, store: Store) -> None:
    """A reply is built for chat A's message; another writer deletes A (its messages purged);
    the reply is refused at the message it answers and at the chat (no half items created)."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    answered = send_user(store, sid, cid)
    read = thread(store, sid, cid)
    chats.delete_chat(store, USER, sid, cid)
    exc = refused(table, lambda: store.messages.append_reply(USER, reply_message(read, answered), answered))
    assert failed_items(exc) == [REPLY_ANSWERED, REPLY_CHAT]


def test_reply_in_a_session_deleted_before_its_purge_is_refused(
    table: str, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply is built; another writer's DELETE removes the session but not yet its chat and
    messages; the reply is refused at the session (no half session item created)."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    answered = send_user(store, sid, cid)
    read = thread(store, sid, cid)
    delete_session_before_its_purge(store, monkeypatch, sid)
    exc = refused(table, lambda: store.messages.append_reply(USER, reply_message(read, answered), answered))
    assert failed_items(exc) == [REPLY_SESSION]


# ---------------------------------------------------------------------------------------------
# The services under the same interleavings: a stale read is retried from a fresh read, and a
# write whose answer was lost is recognised, never stored twice.


def stored_messages(table: str, chat_id: str) -> list[dict[str, Any]]:
    return sorted(
        (i for i in table_items(table) if i.get("type") == "message" and i["chatId"] == chat_id),
        key=lambda i: int(i["seq"]),
    )


def test_send_to_the_active_chat_follows_a_pointer_moved_before_the_write(
    table: str, store: Store, model: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The send reads the session (B active) and B; another writer activates A just before the
    append; the send is refused, re-reads, and lands in A: never ``chat_not_active``."""
    sid = new_session(store)
    a = new_chat(store, sid, "a")
    b = new_chat(store, sid, "b")
    append = store.messages.append_user

    def switch_first(*args: Any, **kwargs: Any) -> None:
        monkeypatch.setattr(store.messages, "append_user", append)
        chats.activate_chat(store, USER, sid, a)
        append(*args, **kwargs)

    monkeypatch.setattr(store.messages, "append_user", switch_first)
    exchange = conversation.send_message(store, get_chat_model(), USER, sid, None, "to whichever is active")
    assert exchange.user_message.chat_id == a
    assert [m["seq"] for m in stored_messages(table, a)] == [1, 2]
    assert stored_messages(table, b) == []
    assert model.calls == 1


def test_send_to_the_active_chat_follows_a_pointer_moved_between_its_reads(
    table: str, store: Store, model: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The send reads the session (B active); another writer deletes B, whose pointer goes
    with it, and activates A before the send reads B's thread; B is gone: the send re-reads the
    session and lands in A, never ``not_found`` or ``chat_not_active``."""
    sid = new_session(store)
    a = new_chat(store, sid, "a")
    b = new_chat(store, sid, "b")
    read_thread = store.messages.thread

    def switch_first(*args: Any, **kwargs: Any) -> Thread:
        monkeypatch.setattr(store.messages, "thread", read_thread)
        chats.delete_chat(store, USER, sid, b)
        chats.activate_chat(store, USER, sid, a)
        return read_thread(*args, **kwargs)

    monkeypatch.setattr(store.messages, "thread", switch_first)
    exchange = conversation.send_message(store, get_chat_model(), USER, sid, None, "to whichever is active")
    assert exchange.user_message.chat_id == a
    assert [m["seq"] for m in stored_messages(table, a)] == [1, 2]
    assert stored_messages(table, b) == []
    assert model.calls == 1


def test_send_whose_append_landed_but_whose_answer_was_lost_stores_it_once(
    table: str, store: Store, model: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user message's append commits but its answer is lost, and the replay of the same
    request is refused: the send recognises its own message, stores it once and answers it."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    append = store.messages.append_user

    def answer_lost(*args: Any, **kwargs: Any) -> None:
        monkeypatch.setattr(store.messages, "append_user", append)
        append(*args, **kwargs)
        append(*args, **kwargs)  # the replay: refused with ConditionFailed

    monkeypatch.setattr(store.messages, "append_user", answer_lost)
    exchange = conversation.send_message(store, get_chat_model(), USER, sid, cid, "once")
    stored = stored_messages(table, cid)
    assert [(m["seq"], m["role"], m["status"]) for m in stored] == [
        (1, "user", "complete"),
        (2, "assistant", "complete"),
    ]
    assert stored[0]["messageId"] == exchange.user_message.message_id
    assert store.chats.get(USER, sid, cid).message_count == 2
    assert model.calls == 1


def test_reply_whose_append_landed_but_whose_answer_was_lost_stores_it_once(
    table: str, store: Store, model: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply's append commits but its answer is lost, and the replay is refused: the send
    recognises its own reply and stores it (and its usage) once."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    append = store.messages.append_reply

    def answer_lost(*args: Any, **kwargs: Any) -> None:
        monkeypatch.setattr(store.messages, "append_reply", append)
        append(*args, **kwargs)
        append(*args, **kwargs)  # the replay: refused with ConditionFailed

    monkeypatch.setattr(store.messages, "append_reply", answer_lost)
    exchange = conversation.send_message(store, get_chat_model(), USER, sid, cid, "once")
    stored = stored_messages(table, cid)
    assert [(m["seq"], m["role"]) for m in stored] == [(1, "user"), (2, "assistant")]
    assert stored[1]["messageId"] == exchange.assistant_message.message_id
    chat = store.chats.get(USER, sid, cid)
    assert (chat.message_count, chat.total_tokens) == (2, 18)
    assert store.sessions.get(USER, sid).total_tokens == 18


def test_a_send_whose_eventually_consistent_read_missed_a_message_retries_consistently(
    table: str, store: Store, model: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A send reads the thread eventually consistent (half the read units); that read is stale,
    missing a message another writer stored a moment before. The user message's seq is then
    taken, the write is refused, and the retry reads consistently and lands after it: no
    repeat, no gap, and the model is shown the message it had missed."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    stale = thread(store, sid, cid)
    send_user(store, sid, cid, "landed meanwhile")
    read_thread = store.messages.thread
    consistency: list[bool] = []

    def eventually(user_id: str, session_id: str, chat_id: str, max_messages: int, consistent: bool = True) -> Thread:
        consistency.append(consistent)
        return read_thread(user_id, session_id, chat_id, max_messages, consistent) if consistent else stale

    monkeypatch.setattr(store.messages, "thread", eventually)
    exchange = conversation.send_message(store, get_chat_model(), USER, sid, cid, "after it")
    assert consistency == [False, True]
    assert (exchange.user_message.seq, exchange.assistant_message.seq) == (2, 3)
    assert [m["seq"] for m in stored_messages(table, cid)] == [1, 2, 3]
    assert "landed meanwhile" in json.dumps(model.received[-1])


# ---------------------------------------------------------------------------------------------
# Archived sessions are read-only: every write that touches a session or its chats is conditioned
# on ``#status <> :archived`` (chats.session_switch, chats.session_writable, sessions.update,
# messages.append_reply's session update); the user message's ``#status = :active`` already
# refuses it. Each interleaving: the writer reads the session writable, another archives it.

ARCHIVE = TRANSITIONS[("active", "archived")]
UPDATE_CHAT_SESSION = 1  # chats.update: chat, session check, head


def archive(store: Store, sid: str) -> None:
    assert sessions.archive_session(store, USER, sid).status == "archived"


def test_first_chat_in_a_session_archived_after_it_was_read_is_refused(table: str, store: Store) -> None:
    """Read a session with no chat; another writer archives it; the create is refused at the
    session, and the service answers ``session_archived``."""
    sid = new_session(store)
    previous = store.sessions.get(USER, sid).active_chat_id
    archive(store, sid)
    exc = refused(table, lambda: store.chats.create(USER, sid, chat_item(sid), previous))
    assert failed_items(exc) == [CREATE_SESSION]
    refused_as(table, lambda: chats.create_chat(store, USER, sid, CreateChatRequest(name="n")), SessionArchived)


def test_create_after_the_session_was_archived_is_refused(table: str, store: Store) -> None:
    """Read B active; another writer archives the session (the pointer unchanged); creating C
    is refused at the session alone."""
    sid = new_session(store)
    new_chat(store, sid, "b")
    previous = store.sessions.get(USER, sid).active_chat_id
    archive(store, sid)
    exc = refused(table, lambda: store.chats.create(USER, sid, chat_item(sid), previous))
    assert failed_items(exc) == [CREATE_SESSION]


def test_activate_after_the_session_was_archived_is_refused(table: str, store: Store) -> None:
    sid = new_session(store)
    a = new_chat(store, sid, "a")
    new_chat(store, sid, "b")
    session, _ = store.chats.get_with_session(USER, sid, a)
    archive(store, sid)
    exc = refused(table, lambda: store.chats.activate(USER, sid, a, session.active_chat_id, utc_now()))
    assert failed_items(exc) == [ACTIVATE_SESSION]
    refused_as(table, lambda: chats.activate_chat(store, USER, sid, a), SessionArchived)


def test_delete_chat_after_the_session_was_archived_is_refused(table: str, store: Store) -> None:
    sid = new_session(store)
    a = new_chat(store, sid, "a")
    new_chat(store, sid, "b")
    session, chat = store.chats.get_with_session(USER, sid, a)
    archive(store, sid)
    exc = refused(table, lambda: store.chats.delete(USER, sid, chat, session.active_chat_id, utc_now()))
    assert failed_items(exc) == [DELETE_CHAT_SESSION]
    refused_as(table, lambda: chats.delete_chat(store, USER, sid, a), SessionArchived)


@pytest.mark.parametrize("change", [{"name": "renamed"}, {"model": "m2"}], ids=["name", "head"])
def test_chat_patch_after_the_session_was_archived_is_refused(table: str, store: Store, change: dict[str, str]) -> None:
    """Read the chat; another writer archives the session; the PATCH (of the chat alone, or of
    chat and head) is refused at the session's check, and the service answers
    ``session_archived`` from the session read after the refusal."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    store.chats.get(USER, sid, cid)
    archive(store, sid)
    exc = refused(table, lambda: store.chats.update(USER, sid, cid, change, [], utc_now()))
    assert failed_items(exc) == [UPDATE_CHAT_SESSION]
    request = UpdateChatRequest.model_validate(change)
    refused_as(table, lambda: chats.update_chat(store, USER, sid, cid, request), SessionArchived)


def test_chat_patch_in_a_session_deleted_before_its_purge_is_refused(
    table: str, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session goes, its chat not yet purged: a PATCH of the chat is refused at the
    session's check (a missing session is not "not archived"), and answers 404."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    delete_session_before_its_purge(store, monkeypatch, sid)
    exc = refused(table, lambda: store.chats.update(USER, sid, cid, {"name": "renamed"}, [], utc_now()))
    assert failed_items(exc) == [UPDATE_CHAT_SESSION]
    request = UpdateChatRequest(name="renamed")
    refused_as(table, lambda: chats.update_chat(store, USER, sid, cid, request), NotFound)


def test_session_patch_after_it_was_archived_is_refused(table: str, store: Store) -> None:
    sid = new_session(store)
    store.sessions.get(USER, sid)
    archive(store, sid)
    refused(table, lambda: store.sessions.update(USER, sid, {"name": "renamed"}, utc_now()))
    request = UpdateSessionRequest(name="renamed")
    refused_as(table, lambda: sessions.update_session(store, USER, sid, request), SessionArchived)


def test_reply_in_a_session_archived_while_the_model_answered_is_refused(table: str, store: Store) -> None:
    """The user message landed and the reply is built; another writer archives the session;
    the reply is refused at the session: nothing lands in an archived session."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    answered = send_user(store, sid, cid)
    read = thread(store, sid, cid)
    archive(store, sid)
    exc = refused(table, lambda: store.messages.append_reply(USER, reply_message(read, answered), answered))
    assert failed_items(exc) == [REPLY_SESSION]


def test_send_after_the_session_was_archived_is_session_archived(table: str, store: Store, model: Upstream) -> None:
    """Read the thread; another writer archives the session; the user message is refused by
    the session's ``#status = :active`` and the service names the status it reads back."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    message = user_message(thread(store, sid, cid))
    archive(store, sid)
    exc = refused(table, lambda: store.messages.append_user(USER, message))
    assert failed_items(exc) == [USER_SESSION]
    refused_as(table, lambda: conversation.send_message(store, get_chat_model(), USER, sid, cid, "x"), SessionArchived)


def test_archive_with_status_read_before_a_pause_frees_no_second_place(table: str, store: Store) -> None:
    """Read the session active; another writer pauses it (freeing its place); archiving it as
    active, which would free the place again, is refused at the session's status."""
    new_session(store, "stays active")
    sid = new_session(store)
    store.sessions.get(USER, sid)
    sessions.pause_session(store, USER, sid)
    exc = refused(table, lambda: store.sessions.set_status(USER, sid, ARCHIVE, utc_now(), max_active=10))
    assert failed_items(exc) == [STATUS_UPDATE]


# ---------------------------------------------------------------------------------------------
# Branches (issue 11): branches.pin_op (the source's pin raised: attribute_exists(PK) AND NOT
# pinnedSeq >= :seq; with the active source's flag going off: active = :on AND NOT pinnedSeq >=
# :seq), and chats.delete conditioned on the pin read (messageCount = :n AND
# attribute_not_exists(pinnedSeq) / AND pinnedSeq = :pin).

FORK_PIN_AFTER_FLAG = 3  # a fork of an inactive source that replaces another active chat:
# chat, session, previous flag, head, base, pin
FORK_PIN_OF_ACTIVE = 4  # a fork of the active source: chat, session, head, base, pin (with its flag)
DELETE_KEPT_HEAD = 2


def conversation_of(store: Store, sid: str, cid: str, exchanges: int) -> None:
    for n in range(exchanges):
        send_exchange(store, sid, cid, f"q{n}")


def fork_item(sid: str, fork_id: str, source: ChatItem, upto: int, lineage: list[Segment] | None) -> ChatItem:
    """The chat item a fork of ``source`` at ``upto`` writes, as the service builds it."""
    from chat_sessions.items import ForkOrigin

    now = utc_now()
    return ChatItem(
        chat_id=fork_id,
        session_id=sid,
        name="fork",
        model=source.model,
        active=True,
        message_count=0,
        created_at=now,
        updated_at=now,
        forked_from=ForkOrigin(chat_id=source.chat_id, seq=upto),
        lineage=lineage,
    )


def fork_write(store: Store, sid: str, source: ChatItem, upto: int, previous: str | None) -> Callable[[], None]:
    """The write of a fork of ``source`` at ``upto`` planned from what was read now (source,
    pointer): it runs later, after another writer's change."""
    from chat_sessions.services.branches import plan

    fork_id = new_id()
    planned = plan(store, USER, source, upto, fork_id)
    item = fork_item(sid, fork_id, source, upto, planned.lineage or None)
    assert planned.pin == (source.chat_id, planned.lineage[-1].to_seq), "the write under test raises the pin"
    return lambda: store.branches.fork(USER, sid, item, previous, planned.pin, planned.copied)


def fork_of(store: Store, sid: str, cid: str, upto: int) -> str:
    """Another writer's fork, through the service."""
    from chat_sessions.models import ForkChatRequest
    from chat_sessions.services import branches

    return branches.fork_chat(store, USER, sid, cid, ForkChatRequest.model_validate({"uptoSeq": upto})).chat_id


def test_fork_of_a_source_deleted_after_it_was_read_is_refused_at_the_pin(table: str, store: Store) -> None:
    """Read the source (inactive, another chat active); another writer deletes it (its
    messages purged: no fork pinned them); the fork's pin would recreate a bare chat item and
    share purged messages: refused at the pin."""
    sid = new_session(store)
    source = new_chat(store, sid, "source")
    conversation_of(store, sid, source, 2)
    other = new_chat(store, sid, "other")
    read = store.chats.get(USER, sid, source)
    write = fork_write(store, sid, read, 3, other)
    chats.delete_chat(store, USER, sid, source)
    exc = refused(table, write)
    assert failed_items(exc) == [FORK_PIN_AFTER_FLAG + 2]


def test_fork_that_read_a_lower_pin_than_another_fork_raised_is_refused(table: str, store: Store) -> None:
    """Read the source pinned at nothing; another fork pins it at 4 (and becomes active); the
    fork at 2 would lower the pin to 2, and a delete would then purge messages the other fork
    shares: refused at the pin (and at the pointer the other fork moved)."""
    sid = new_session(store)
    source = new_chat(store, sid, "source")
    conversation_of(store, sid, source, 2)
    other = new_chat(store, sid, "other")
    read = store.chats.get(USER, sid, source)
    write = fork_write(store, sid, read, 2, other)
    fork_of(store, sid, source, 4)
    chats.activate_chat(store, USER, sid, other)  # the pointer back where it was read
    exc = refused(table, write)
    assert failed_items(exc) == [FORK_PIN_AFTER_FLAG + 2]
    assert store.chats.get(USER, sid, source).pinned_seq == 4


def test_fork_of_the_active_source_switched_off_after_it_was_read_is_refused(table: str, store: Store) -> None:
    """Read the source active; another writer activates another chat; the fork (which turns
    the source's flag off with its pin) is refused at the session and at the source."""
    sid = new_session(store)
    other = new_chat(store, sid, "other")
    source = new_chat(store, sid, "source")
    conversation_of(store, sid, source, 1)
    read = store.chats.get(USER, sid, source)
    write = fork_write(store, sid, read, 2, source)
    chats.activate_chat(store, USER, sid, other)
    exc = refused(table, write)
    assert failed_items(exc) == [CREATE_SESSION, FORK_PIN_OF_ACTIVE]


def test_fork_of_the_active_source_after_another_fork_raised_its_pin_is_refused(table: str, store: Store) -> None:
    """Read the active source unpinned; another fork pins it at 4, and the source is activated
    again; the fork at 2 would lower the pin: refused at the source alone."""
    sid = new_session(store)
    source = new_chat(store, sid, "source")
    conversation_of(store, sid, source, 2)
    read = store.chats.get(USER, sid, source)
    write = fork_write(store, sid, read, 2, source)
    fork_of(store, sid, source, 4)
    chats.activate_chat(store, USER, sid, source)
    exc = refused(table, write)
    assert failed_items(exc) == [FORK_PIN_OF_ACTIVE]


def test_delete_of_a_chat_a_fork_pinned_after_it_was_read_is_refused(table: str, store: Store) -> None:
    """Read the chat unpinned; another writer forks it (pinning 2); the delete would purge the
    messages the fork shares: refused at the chat."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    conversation_of(store, sid, cid, 1)
    session, chat = store.chats.get_with_session(USER, sid, cid)
    fork_of(store, sid, cid, 2)
    chats.activate_chat(store, USER, sid, cid)  # the pointer back where it was read
    exc = refused(table, lambda: store.chats.delete(USER, sid, chat, session.active_chat_id, utc_now()))
    assert failed_items(exc) == [DELETE_CHAT]


def test_delete_of_a_chat_pinned_higher_after_it_was_read_is_refused(table: str, store: Store) -> None:
    """Read the chat pinned at 2; another fork pins it at 4; the delete would keep too little:
    refused at the chat."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    conversation_of(store, sid, cid, 2)
    fork_of(store, sid, cid, 2)
    session, chat = store.chats.get_with_session(USER, sid, cid)
    assert chat.pinned_seq == 2
    fork_of(store, sid, cid, 4)
    chats.activate_chat(store, USER, sid, str(session.active_chat_id))  # the pointer back where it was read
    exc = refused(table, lambda: store.chats.delete(USER, sid, chat, session.active_chat_id, utc_now()))
    assert failed_items(exc) == [DELETE_CHAT]


def test_delete_of_a_pinned_chat_after_a_message_landed_is_refused(table: str, store: Store) -> None:
    """Read the pinned (active) chat; another writer's exchange lands in it; the delete, which
    would take the read count off the session's, is refused at the chat."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    conversation_of(store, sid, cid, 1)
    fork_of(store, sid, cid, 2)
    chats.activate_chat(store, USER, sid, cid)
    session, chat = store.chats.get_with_session(USER, sid, cid)
    send_exchange(store, sid, cid)
    exc = refused(table, lambda: store.chats.delete(USER, sid, chat, session.active_chat_id, utc_now()))
    assert failed_items(exc) == [DELETE_CHAT]


def test_fork_replayed_after_it_landed_overwrites_nothing(table: str, store: Store) -> None:
    """A fork lands (its answer lost) and gets a message; another writer creates a chat; the
    same fork, made again against the pointer as now read, finds its chat there and is
    answered as landed (else the fork would be reset to no messages, made active again and
    counted twice)."""
    sid = new_session(store)
    source = new_chat(store, sid, "source")
    conversation_of(store, sid, source, 1)
    read = store.chats.get(USER, sid, source)
    first = fork_write(store, sid, read, 2, source)
    first()
    fork_id = store.sessions.get(USER, sid).active_chat_id
    assert fork_id is not None and fork_id != source
    send_user(store, sid, fork_id)
    new_chat(store, sid, "other")
    again = fork_item(sid, fork_id, read, 2, store.chats.get(USER, sid, fork_id).lineage)
    previous = store.sessions.get(USER, sid).active_chat_id
    answered_as_landed(table, lambda: store.branches.fork(USER, sid, again, previous, None, None))


# ---------------------------------------------------------------------------------------------
# The user's counters (GET /me/usage): sessions.delete takes the session's counts away, so it is
# conditioned on them as read (#status = :status AND chatCount = :chats AND messageCount =
# :messages); a send's user message, with MONTHLY_TOKEN_BUDGET, on the month's tokens
# (attribute_not_exists(#spent) OR #spent < :budget on the counters item).


def test_delete_with_counts_read_before_a_chat_was_created_is_refused(table: str, store: Store) -> None:
    """Read the session (no chat); another writer creates a chat; the delete, which would take
    0 chats from the user's count, is refused at the session."""
    sid = new_session(store)
    read = store.sessions.get(USER, sid)
    new_chat(store, sid)
    exc = refused(table, lambda: store.sessions.delete(USER, sid, read.status, read.chat_count, read.message_count))
    assert failed_items(exc) == [DELETE_SESSION]


def test_delete_with_counts_read_before_a_reply_landed_is_refused(table: str, store: Store) -> None:
    """Read the session; another writer's exchange lands (two messages counted); the delete,
    which would take the old count from the user's, is refused at the session."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    read = store.sessions.get(USER, sid)
    send_exchange(store, sid, cid)
    exc = refused(table, lambda: store.sessions.delete(USER, sid, read.status, read.chat_count, read.message_count))
    assert failed_items(exc) == [DELETE_SESSION]


def spend(store: Store, sid: str, cid: str, tokens: int) -> None:
    """Another writer's exchange whose reply used ``tokens`` in this period."""
    answered = send_user(store, sid, cid)
    reply = reply_message(thread(store, sid, cid), answered).model_copy(
        update={"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}
    )
    store.messages.append_reply(USER, reply, answered)


def test_send_after_another_reply_reached_the_budget_is_refused(table: str, store: Store) -> None:
    """The budget is 100 and 99 are spent: a user message is accepted (below the budget); its
    reply, in flight, spends 1 more (the overshoot a budget allows); the next user message is
    refused at the budget's check (429, nothing stored), though nothing else refuses it."""
    sid = new_session(store)
    cid = new_chat(store, sid)
    spend(store, sid, cid, 99)
    accepted = user_message(thread(store, sid, cid))
    store.messages.append_user(USER, accepted, budget=100)
    in_flight = reply_message(thread(store, sid, cid), accepted).model_copy(
        update={"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}
    )
    store.messages.append_reply(USER, in_flight, accepted)
    refused_message = user_message(thread(store, sid, cid))
    exc = refused_as(table, lambda: store.messages.append_user(USER, refused_message, budget=100), TokenBudgetExhausted)
    assert failed_items(exc) == [USER_SESSION + 1]  # the budget's check, the last item (no marker)
    assert int(exc.headers["Retry-After"]) > 0


# ---------------------------------------------------------------------------------------------
# sessions.count_expired (retention): the receipt's attribute_not_exists(PK), the counters'
# attribute_exists(PK). The stream record is the stale read: it names a session DynamoDB's TTL
# removed, and by the time it is (re)delivered, the removal may have been counted, or the user
# erased.


def expired_by_ttl(store: Store, sid: str) -> tuple[str, str, SessionItem]:
    """The session removed as DynamoDB's TTL does (no counters moved), and what its stream
    record carries: its keys and its old image."""
    key = keys.session_key(USER, sid)
    old = store.table.call("delete_item", TableName=store.table.table_name, Key=dict(key), ReturnValues="ALL_OLD")[
        "Attributes"
    ]
    return key["PK"], key["SK"], SessionItem.from_item(plain(old))


def test_an_expired_session_counted_by_an_earlier_delivery_is_not_counted_again(table: str, store: Store) -> None:
    sid = new_session(store)
    send_exchange(store, sid, new_chat(store, sid))
    pk, sk, image = expired_by_ttl(store, sid)
    assert store.sessions.count_expired(pk, sk, image, 2_000_000_000)  # the first delivery
    assert store.sessions.counters(USER)["activeSessions"] == 0
    before = snapshot(table)
    assert not store.sessions.count_expired(pk, sk, image, 2_000_000_001)  # Lambda's retry
    assert snapshot(table) == before, "a redelivered record moved the counters again"


def test_an_expired_session_of_a_user_erased_meanwhile_recreates_no_counters(table: str, store: Store) -> None:
    sid = new_session(store)
    send_exchange(store, sid, new_chat(store, sid))
    pk, sk, image = expired_by_ttl(store, sid)
    store.table.call("delete_item", TableName=store.table.table_name, Key=dict(keys.quota_key(USER)))  # erased
    before = snapshot(table)
    assert not store.sessions.count_expired(pk, sk, image, 2_000_000_000)
    assert snapshot(table) == before, "counters recreated below zero for a user with none"


# ---------------------------------------------------------------------------------------------
# Replies generated on their own (issue 9): the chat's lease, the claim, the growing content,
# the end, cancel, a dead reply taken over. store.replies builds each condition.


def _generating(store: Store, sid: str, chat: str, lease_seconds: int = 100) -> tuple[MessageItem, MessageItem]:
    """A question and its reply ``generating`` with the chat's lease, as an async send stores them."""
    import time

    from chat_sessions.ids import message_id
    from chat_sessions.store.replies import lease_taken, reply_put

    now = int(time.time())
    base = new_id()
    question = MessageItem(
        message_id=message_id(base, 1),
        chat_id=chat,
        session_id=sid,
        seq=1,
        role="user",
        content="q",
        status="unanswered",
        tokens=1,
        created_at=utc_now(),
    )
    reply = MessageItem(
        message_id=message_id(base, 2),
        chat_id=chat,
        session_id=sid,
        seq=2,
        role="assistant",
        content="",
        status="generating",
        model="test-model",
        tokens=0,
        reply_to_seq=1,
        created_at=utc_now(),
        lease_until=now + lease_seconds,
    )
    store.messages.append_user(
        USER, question, None, 0, [reply_put(USER, reply), lease_taken(USER, reply, reply.lease_until or 0, now)]
    )
    return question, reply


def _replies(store: Store) -> Any:
    from chat_sessions.store.replies import ReplyStore

    return ReplyStore(store.table)


def test_stale_lease_refuses_a_second_reply_and_a_sync_send(store: Store, table: str) -> None:
    """The head read free; another request took the lease since: neither an async send (taking
    it) nor a sync one (checking it) lands."""
    import time

    from chat_sessions.ids import message_id
    from chat_sessions.store.replies import lease_free, lease_taken, reply_put

    sid = new_session(store)
    chat = new_chat(store, sid)
    _generating(store, sid, chat)
    now = int(time.time())
    question = MessageItem(
        message_id=message_id(new_id(), 3),
        chat_id=chat,
        session_id=sid,
        seq=3,
        role="user",
        content="q2",
        status="unanswered",
        tokens=1,
        created_at=utc_now(),
    )
    second = question.model_copy(
        update={
            "message_id": message_id(new_id(), 4),
            "seq": 4,
            "role": "assistant",
            "status": "generating",
            "reply_to_seq": 3,
            "lease_until": now + 100,
        }
    )
    taking = [reply_put(USER, second), lease_taken(USER, second, now + 100, now)]
    assert failed_items(refused(table, lambda: store.messages.append_user(USER, question, None, 0, taking))) == [3]
    checking = [lease_free(USER, sid, chat, now)]
    assert failed_items(refused(table, lambda: store.messages.append_user(USER, question, None, 0, checking))) == [2]


def test_stale_claim_of_a_claimed_reply_changes_nothing(store: Store, table: str) -> None:
    sid = new_session(store)
    chat = new_chat(store, sid)
    _, reply = _generating(store, sid, chat)
    assert _replies(store).claim(USER, sid, chat, reply.seq, "first") is not None
    before = snapshot(table)
    assert _replies(store).claim(USER, sid, chat, reply.seq, "second") is None  # a duplicate delivery
    assert snapshot(table) == before


def test_stale_writes_of_a_cancelled_generation_are_refused(store: Store, table: str) -> None:
    """The generation claimed the reply; the reply was cancelled since: its content write, its
    failure and its completion are all refused, and change nothing."""
    import time

    sid = new_session(store)
    chat = new_chat(store, sid)
    question, reply = _generating(store, sid, chat)
    claimed = _replies(store).claim(USER, sid, chat, reply.seq, "gen")
    assert claimed is not None
    _replies(store).cancel(USER, sid, chat, reply.seq, reply.message_id, int(time.time()))
    before = snapshot(table)
    assert _replies(store).grow(USER, claimed, "late text", 2) is False
    assert _replies(store).fail(USER, claimed, "late text", 2) is False
    assert snapshot(table) == before
    done = claimed.model_copy(update={"status": "complete", "content": "all", "lease_until": None, "generator": None})
    exc = refused(table, lambda: store.messages.append_reply(USER, done, question, generated_by="gen"))
    assert failed_items(exc) == [REPLY_MESSAGE]
    # Another claim's writes are refused the same way (the content is this generation's only).
    other = claimed.model_copy(update={"generator": "someone-else"})
    assert failed_items(
        refused(table, lambda: store.messages.append_reply(USER, done, question, generated_by=other.generator))
    ) == [REPLY_MESSAGE]


def test_stale_cancel_of_a_reply_that_ended_or_died_is_refused(store: Store, table: str) -> None:
    import time

    sid = new_session(store)
    chat = new_chat(store, sid)
    _, reply = _generating(store, sid, chat, lease_seconds=-5)  # its lease already past: dead
    exc = refused(table, lambda: _replies(store).cancel(USER, sid, chat, reply.seq, reply.message_id, int(time.time())))
    assert failed_items(exc) == [0]
    other = new_chat(store, sid, "other")
    _, live = _generating(store, sid, other)
    claimed = _replies(store).claim(USER, sid, other, live.seq, "gen")
    assert claimed is not None
    assert _replies(store).fail(USER, claimed, "x", 1) is True  # it ended
    exc = refused(table, lambda: _replies(store).cancel(USER, sid, other, live.seq, live.message_id, int(time.time())))
    assert failed_items(exc) == [0, 1]


def test_stale_takeover_of_a_lease_that_was_given_back_is_refused(store: Store, table: str) -> None:
    """A regenerate read a dead reply under an expired lease; the reply was stored failed and the
    lease given back since (a cancel, the generation's own end): its takeover of the dead reply
    is refused (the reply is not generating any more)."""
    import time

    from chat_sessions.ids import message_id

    sid = new_session(store)
    chat = new_chat(store, sid)
    _, dead = _generating(store, sid, chat, lease_seconds=-5)
    now = int(time.time())
    claimed = _replies(store).claim(USER, sid, chat, dead.seq, "late")
    assert claimed is not None
    assert _replies(store).fail(USER, claimed, "", 0) is True
    reply = dead.model_copy(update={"message_id": message_id(new_id(), 3), "seq": 3, "lease_until": now + 100})
    exc = refused(table, lambda: _replies(store).start(USER, reply, now + 100, now, dead.seq))
    assert failed_items(exc) == [3]


def test_stale_sync_send_clearing_a_dead_lease_taken_over_since_is_refused(store: Store, table: str) -> None:
    """A sync send read the head holding a dead reply's lease that ran out; since, a regenerate
    (itself on a stale read that showed no lease) took the lease for its own reply, leaving the
    dead one ``generating``. The send's clearing of the head is refused (the lease runs again),
    though the dead reply's ``failed`` alone would land: no second reply in flight."""
    import time

    from chat_sessions.ids import message_id
    from chat_sessions.services import replies

    sid = new_session(store)
    chat = new_chat(store, sid)
    _, dead = _generating(store, sid, chat, lease_seconds=-5)
    read = thread(store, sid, chat)  # the send's read: the dead reply's lease, run out
    ops = replies.lease_check(read.head, USER)
    assert len(ops) == 2, "the read names a dead reply: the head's Update and the reply's failed"
    now = int(time.time())
    taken = dead.model_copy(update={"message_id": message_id(new_id(), 3), "seq": 3, "lease_until": now + 100})
    _replies(store).start(USER, taken, now + 100, now, None)
    question = user_message(read, "sync").model_copy(update={"seq": 4})  # after the takeover's reply
    exc = refused(table, lambda: store.messages.append_user(USER, question, None, 0, ops))
    assert failed_items(exc) == [2]


def test_stale_end_after_the_lease_was_taken_over_is_refused(store: Store, table: str) -> None:
    """The chat's lease names another reply now (taken over after this one's ran out): this
    reply's end cannot give it back."""
    sid = new_session(store)
    chat = new_chat(store, sid)
    _, reply = _generating(store, sid, chat)
    claimed = _replies(store).claim(USER, sid, chat, reply.seq, "gen")
    assert claimed is not None
    store.table.update(
        keys.head_key(USER, sid, chat),
        UpdateExpression="SET generatingSeq = :other",
        ExpressionAttributeValues={":other": 9},
    )
    exc = refused(table, lambda: _replies(store).fail(USER, claimed, "text", 1))
    assert failed_items(exc) == [1]


def test_stale_lease_taken_in_a_chat_deleted_after_it_was_read_recreates_no_head(store: Store, table: str) -> None:
    """The head's Update taking the lease, alone: a chat deleted after it was read has no head,
    and the lease is not written into a new one (the rest of a send's transaction refuses too;
    this is the condition of the head's own write)."""
    import time

    from chat_sessions.store.replies import lease_taken

    sid = new_session(store)
    chat = new_chat(store, sid)
    _, reply = _generating(store, sid, chat)
    gone = reply.model_copy(update={"chat_id": new_id()})  # the chat read, then deleted
    now = int(time.time())
    exc = refused(table, lambda: store.table.transact([lease_taken(USER, gone, now + 100, now)]))
    assert failed_items(exc) == [0]


def test_stale_reply_put_at_a_seq_another_write_took_overwrites_nothing(store: Store, table: str) -> None:
    """A ``generating`` reply put at the seq the thread read as free, after another request
    stored a message there: refused, the stored message kept."""
    from chat_sessions.ids import message_id
    from chat_sessions.store.replies import reply_put

    sid = new_session(store)
    chat = new_chat(store, sid)
    _, reply = _generating(store, sid, chat)
    other = reply.model_copy(update={"message_id": message_id(new_id(), reply.seq), "content": "not mine"})
    exc = refused(table, lambda: store.table.transact([reply_put(USER, other)]))
    assert failed_items(exc) == [0]


def test_stale_takeover_of_a_reply_whose_lease_still_runs_is_refused(store: Store, table: str) -> None:
    """The dead reply's ``failed``, alone: a reply whose lease still runs is not dead, whatever
    the reader believed (the head's condition refuses too; this is the reply's own)."""
    import time

    from chat_sessions.store.replies import dead_reply_failed

    sid = new_session(store)
    chat = new_chat(store, sid)
    _, live = _generating(store, sid, chat, lease_seconds=100)
    now = int(time.time())
    exc = refused(table, lambda: store.table.transact([dead_reply_failed(USER, sid, chat, live.seq, now)]))
    assert failed_items(exc) == [0]


def test_stale_takeover_of_a_reply_that_ended_under_a_past_lease_is_refused(store: Store, table: str) -> None:
    """The dead reply's ``failed``, alone, on a reply that ended (cancelled here) while its item
    still names a past lease: only a ``generating`` reply is stored failed, whatever lease
    attribute an ended one carries."""
    import time

    from chat_sessions.store.replies import dead_reply_failed

    sid = new_session(store)
    chat = new_chat(store, sid)
    _, dead = _generating(store, sid, chat, lease_seconds=-5)
    store.table.update(
        keys.message_key(USER, sid, chat, dead.seq),
        UpdateExpression="SET #status = :cancelled",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":cancelled": "cancelled"},
    )
    now = int(time.time())
    exc = refused(table, lambda: store.table.transact([dead_reply_failed(USER, sid, chat, dead.seq, now)]))
    assert failed_items(exc) == [0]


def test_stale_subscribe_to_a_chat_deleted_after_it_was_read_is_refused(store: Store, table: str) -> None:
    """A WebSocket subscribe to a chat that is gone (or was never the caller's): refused at the
    chat's check, no subscription written, the connection unchanged."""
    from chat_sessions.store.connections import ChatNotFound, ConnectionStore

    sid = new_session(store)
    connections = ConnectionStore(store.table)
    connections.connect(USER, "conn-1", utc_now(), 2_000_000_000)
    refused_as(table, lambda: connections.subscribe(USER, "conn-1", sid, new_id(), 2_000_000_000), ChatNotFound)


def test_stale_subscribe_after_the_connection_was_closed_is_refused(store: Store, table: str) -> None:
    """A subscribe whose connection ran ``$disconnect`` meanwhile: refused, and neither the
    connection item nor a subscription is written back (it would outlive its connection)."""
    from chat_sessions.store.connections import ConnectionGone, ConnectionStore

    sid = new_session(store)
    chat = new_chat(store, sid)
    connections = ConnectionStore(store.table)
    connections.connect(USER, "conn-1", utc_now(), 2_000_000_000)
    connections.disconnect(USER, "conn-1")
    refused_as(table, lambda: connections.subscribe(USER, "conn-1", sid, chat, 2_000_000_000), ConnectionGone)


def _regenerate_reply(store: Store, sid: str, chat: str) -> tuple[MessageItem, int]:
    """An async regenerate's ``generating`` reply to a completed exchange, as ``start`` takes it."""
    import time

    from chat_sessions.ids import message_id

    _, reply = _generating(store, sid, chat)
    claimed = _replies(store).claim(USER, sid, chat, reply.seq, "gen")
    assert claimed is not None and _replies(store).fail(USER, claimed, "", 0) is True  # the chat is free
    now = int(time.time())
    again = reply.model_copy(update={"message_id": message_id(new_id(), 3), "seq": 3, "lease_until": now + 100})
    return again, now


def test_stale_async_regenerate_after_the_session_was_paused_is_refused(store: Store, table: str) -> None:
    """``start`` read the session active; it was paused since: no reply, no lease."""
    sid = new_session(store)
    chat = new_chat(store, sid)
    reply, now = _regenerate_reply(store, sid, chat)
    sessions.pause_session(store, USER, sid)
    exc = refused(table, lambda: _replies(store).start(USER, reply, now + 100, now, None))
    assert failed_items(exc) == [1]


def test_stale_async_regenerate_after_another_chat_was_activated_is_refused(store: Store, table: str) -> None:
    """``start`` read its chat as the active one; another chat was activated since."""
    sid = new_session(store)
    chat = new_chat(store, sid)
    reply, now = _regenerate_reply(store, sid, chat)
    new_chat(store, sid, "other")  # a new chat becomes the active one
    exc = refused(table, lambda: _replies(store).start(USER, reply, now + 100, now, None))
    assert failed_items(exc) == [1]


def test_stale_claim_of_a_reply_cancelled_before_it_started_changes_nothing(store: Store, table: str) -> None:
    """The generation's first write: a reply cancelled before the generation started is not
    claimed (it would generate into a cancelled reply)."""
    import time

    sid = new_session(store)
    chat = new_chat(store, sid)
    _, reply = _generating(store, sid, chat)
    _replies(store).cancel(USER, sid, chat, reply.seq, reply.message_id, int(time.time()))
    before = snapshot(table)
    assert _replies(store).claim(USER, sid, chat, reply.seq, "gen") is None
    assert snapshot(table) == before


def test_stale_writes_of_a_generation_that_lost_its_claim_are_refused(store: Store, table: str) -> None:
    """A reply claimed by one generation: another invocation's content, failure and completion
    (a duplicate delivery that believed it held the claim) are refused while it still generates."""
    sid = new_session(store)
    chat = new_chat(store, sid)
    question, reply = _generating(store, sid, chat)
    claimed = _replies(store).claim(USER, sid, chat, reply.seq, "gen")
    assert claimed is not None
    other = claimed.model_copy(update={"generator": "someone-else"})
    before = snapshot(table)
    assert _replies(store).grow(USER, other, "not mine", 2) is False
    assert _replies(store).fail(USER, other, "not mine", 2) is False
    assert snapshot(table) == before
    done = claimed.model_copy(update={"status": "complete", "content": "x", "lease_until": None, "generator": None})
    exc = refused(table, lambda: store.messages.append_reply(USER, done, question, generated_by="someone-else"))
    assert failed_items(exc) == [REPLY_MESSAGE]


def test_stale_cancel_of_a_reply_that_ended_under_a_running_lease_is_refused(store: Store, table: str) -> None:
    """Cancel read the reply generating; it ended since (failed here) while its item and the
    head still name a running lease: only a generating reply is cancelled."""
    import time

    sid = new_session(store)
    chat = new_chat(store, sid)
    _, reply = _generating(store, sid, chat)
    store.table.update(
        keys.message_key(USER, sid, chat, reply.seq),
        UpdateExpression="SET #status = :failed",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":failed": "failed"},
    )
    exc = refused(table, lambda: _replies(store).cancel(USER, sid, chat, reply.seq, reply.message_id, int(time.time())))
    assert failed_items(exc) == [0]


def test_stale_cancel_naming_another_message_at_the_seq_is_refused(store: Store, table: str) -> None:
    """Cancel by an id whose seq holds another message (the id read is not the one stored
    there): refused, the generating reply untouched."""
    import time

    from chat_sessions.ids import message_id

    sid = new_session(store)
    chat = new_chat(store, sid)
    _, reply = _generating(store, sid, chat)
    stale_id = message_id(new_id(), reply.seq)
    exc = refused(table, lambda: _replies(store).cancel(USER, sid, chat, reply.seq, stale_id, int(time.time())))
    assert failed_items(exc) == [0]
