"""The session's status as one table of allowed transitions.

Each transition names what it does to the user's active-session counter, which the store moves
in the same transaction as the status (conditioned on the status it replaces). New statuses
(``archived``) add rows here; nothing else decides which changes are allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chat_sessions.items import SessionStatus

QuotaMove = Literal[-1, 0, 1]


@dataclass(frozen=True)
class Transition:
    old: SessionStatus
    new: SessionStatus
    quota: QuotaMove
    """+1 takes a place under ``MAX_ACTIVE_SESSIONS`` (refused at the limit), -1 frees one."""


TRANSITIONS: dict[tuple[SessionStatus, SessionStatus], Transition] = {
    (t.old, t.new): t
    for t in (
        Transition("active", "paused", quota=-1),
        Transition("paused", "active", quota=1),
        Transition("active", "archived", quota=-1),
        Transition("paused", "archived", quota=0),
        Transition("archived", "paused", quota=0),
    )
}

READ_ONLY: SessionStatus = "archived"
"""The status in which a session accepts no change but ``unarchive`` and ``DELETE``: every write
to it or its chats is conditioned on the session not having it."""

HOLDS_QUOTA: frozenset[SessionStatus] = frozenset({"active"})
"""Statuses that occupy a place under ``MAX_ACTIVE_SESSIONS`` (deleting one frees it)."""


def transition(old: SessionStatus, new: SessionStatus) -> Transition | None:
    """The transition from ``old`` to ``new``; None when the session is already ``new``.

    Raises ``ValueError`` for a change the table does not allow (a bug in the caller: the HTTP
    operations only ask for transitions listed here)."""
    if old == new:
        return None
    try:
        return TRANSITIONS[(old, new)]
    except KeyError:
        raise ValueError(f"no transition from {old} to {new}") from None
