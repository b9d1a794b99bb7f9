"""``DELETE /me``: erase every item of the caller, in bounded steps that continue on their own.

The request only marks the user (one UpdateItem, :meth:`ErasureStore.start`) and answers
``202``. Each write of the marker is a stream record that invokes the ``erase_user`` consumer,
which runs one :func:`erase_step`: at most ``STEP_ITEMS`` items deleted and about
``STEP_SECONDS`` spent, then, unless everything is gone, one more write of the marker
(:meth:`ErasureStore.touch`) whose stream record invokes the next step. Lambda retries a step
that fails (the stream holds its record), so the chain does not depend on a step finishing.

Order: every session (its item deleted with the marker pointing at it, then its partition
purged), then the user's other partitions (``keys.erased_after_sessions``: idempotency records
and markers), then whatever else the user's own partition holds (WebSocket connections), then
the marker itself, which ends the erasure: creates are accepted again from then on.

No Scan: the user's partitions are all derived from the user id and their session ids, which
one partition (``USER#u``) lists.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from chat_sessions import keys
from chat_sessions.clock import utc_now
from chat_sessions.models import Erasure
from chat_sessions.observability import logger
from chat_sessions.services.retry import optimistic
from chat_sessions.store import ConditionFailed, Store
from chat_sessions.store.erasure import ErasureStore

STEP_ITEMS = 500
"""Items one step deletes at most (20 BatchWriteItem requests), before it hands over."""
STEP_SECONDS = 5.0
"""Time after which a step starts nothing new and hands over (its function's timeout is 60 s)."""


@dataclass
class Step:
    """What one step did: items deleted, and whether the erasure is over."""

    deleted: int = 0
    done: bool = False


def start_erasure(store: Store, user_id: str) -> Erasure:
    """Mark the caller as being erased; the stream does the rest. Idempotent: a repeat keeps
    the erasure that runs (and kicks it, should its chain of steps have been lost). The marker's
    write goes to the counters item, which creates and sends change in transactions: a write
    refused for one in flight (a collision: nothing written) is retried, and contention that
    outlasts the retries is ``409 conflict``, never a 500."""
    now = utc_now()
    optimistic(lambda: ErasureStore(store.table).start(user_id, now))
    return Erasure()


def erase_step(store: Store, user_id: str, items: int | None = None, seconds: float | None = None) -> Step:
    """One bounded step of the user's erasure (nothing when none runs): at most ``items``
    deleted (``STEP_ITEMS``), nothing new begun after ``seconds`` (``STEP_SECONDS``). Ends by
    handing over (a touch of the marker) or by deleting the marker; a step refused because the
    marker moved under it (another step, or the erasure over) leaves the rest to whoever moved it."""
    items = STEP_ITEMS if items is None else items
    seconds = STEP_SECONDS if seconds is None else seconds
    table = store.table
    erasure = ErasureStore(table)
    marker = erasure.marker(user_id)
    step = Step()
    if marker is None:
        step.done = True
        return step
    deadline = time.monotonic() + seconds

    def spent() -> bool:
        return step.deleted >= items or time.monotonic() >= deadline

    def purged(partition: str, keep: frozenset[str] = frozenset()) -> bool:
        while not spent():
            deleted, empty = erasure.purge_some(partition, items - step.deleted, keep)
            step.deleted += deleted
            if empty:
                return True
        return False

    current = marker.erasing_session
    while True:
        if current is not None and not purged(keys.session_partition(user_id, current)):
            return _hand_over(erasure, user_id, step)
        if spent():
            return _hand_over(erasure, user_id, step)
        following = erasure.next_session(user_id)
        if following is None:
            break
        try:
            erasure.take_session(user_id, following, current)
        except ConditionFailed:
            logger.info("erasure step stale: the marker moved", extra={"deleted": step.deleted})
            return step
        step.deleted += 1
        current = following
    for partition in keys.erased_after_sessions(user_id):
        if not purged(partition):
            return _hand_over(erasure, user_id, step)
    if not purged(keys.user_pk(user_id), keep=frozenset({keys.QUOTA_SK})):
        return _hand_over(erasure, user_id, step)
    step.done = erasure.finish(user_id)
    logger.info("erasure finished" if step.done else "erasure already over", extra={"deleted": step.deleted})
    return step


def _hand_over(erasure: ErasureStore, user_id: str, step: Step) -> Step:
    """The next step is invoked by the stream record of this touch of the marker."""
    step.done = not erasure.touch(user_id)
    logger.info("erasure step handed over", extra={"deleted": step.deleted, "over": step.done})
    return step
