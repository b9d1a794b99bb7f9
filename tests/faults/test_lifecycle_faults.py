"""The session lifecycle under faults: archive and unarchive raced with writes into the session
and with the active-session quota, and ``DELETE /me`` raced with creates. Judged as the tier
judges (every answer within the contract, every invariant of the stored items), on what an
answer of ``409 session_archived`` left (nothing), on ``GET /me/usage`` against the table, and,
for the erasure, on every item of the user left once the stream has drained.

``MONTHLY_TOKEN_BUDGET`` has no scenario here yet: the tier's one stack runs without a budget
(one for every scenario would change what the others test), so it needs a stack of its own.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.faults.conftest import direct_client
from tests.faults.invariants import scan, user_data
from tests.faults.recorder import Api, race
from tests.faults.test_fault_tier import (
    S,
    Scenario,
    activate,
    create_chat,
    create_session,
    ok,
    read,
    scenario,  # noqa: F401  (the fixture)
    send,
    unique,
)

pytestmark = pytest.mark.xdist_group("faults")  # the tier's one stack

ARCHIVED = frozenset({"session_archived"})
LIMIT = frozenset({"session_limit_reached"})
ERASING = frozenset({"erasure_in_progress"})


def seqs(messages: list[dict[str, Any]]) -> set[int]:
    return {int(m["seq"]) for m in messages}


def usage_matches_table(api: Api, items: list[dict[str, Any]]) -> None:
    """``GET /me/usage`` counts exactly what the table holds: sessions by status, and the chats
    and messages their counters count (``check_user`` holds those to the items stored)."""
    data = user_data(items, api.user)
    stored = {status: 0 for status in ("active", "paused", "archived")}
    for session in data.sessions.values():
        stored[str(session["status"])] += 1
    chats = sum(int(s.get("chatCount") or 0) for s in data.sessions.values())
    messages = sum(int(s.get("messageCount") or 0) for s in data.sessions.values())
    usage = read(api, "/me/usage", "/me/usage")
    assert (usage["sessions"], usage["chats"], usage["messages"]) == (stored, chats, messages), (usage, stored)


def test_archive_races_writes_pauses_and_the_quota_under_faults(scenario: Scenario) -> None:  # noqa: F811
    """Archive and unarchive of one session raced with sends to its chat, chat creates and an
    activation in it, its pause and resume, and creates of other sessions (the active-session
    quota: archiving frees a place, resuming takes one). Sends may meet a new chat made active
    (``chat_not_active``) or the session paused or archived; nothing else but transient answers."""
    api = scenario.api("archiver")
    sid = ok(api, create_session(api, "archived back and forth"), 201)["sessionId"]
    first = ok(api, create_chat(api, sid, "first"), 201)["chatId"]
    ok(api, send(api, sid, first, unique("before")), 201)
    spare = ok(api, create_session(api, "spare"), 201)["sessionId"]
    ok(api, api.until_done("POST", S + "/pause", f"/sessions/{spare}/pause"))
    session_path = f"/sessions/{sid}"

    def work(i: int) -> list[httpx.Response]:
        own = scenario.as_user(api.user)
        if i == 0:  # archive, unarchive, archive, unarchive
            return [
                own.until_done("POST", S + f"/{step}", f"{session_path}/{step}")
                for step in ("archive", "unarchive", "archive", "unarchive")
            ]
        if i == 1:
            refused = ARCHIVED | {"session_paused", "chat_not_active"}
            return [send(own, sid, first, unique(f"raced {j}"), refused) for j in range(3)]
        if i == 2:
            created = [
                own.until_done("POST", S + "/chats", f"{session_path}/chats", {"name": f"raced chat {j}"}, ARCHIVED)
                for j in range(2)
            ]
            return [*created, activate(own, sid, first, ARCHIVED)]
        if i == 3:  # pause and resume: refused while archived, or over the limit
            return [
                own.until_done("POST", S + f"/{step}", f"{session_path}/{step}", allowed=ARCHIVED | LIMIT)
                for step in ("pause", "resume", "pause", "resume")
            ]
        return [create_session(own, f"quota {i}.{j}", LIMIT) for j in range(2)]

    answers = [r for rs in race(6, work) for r in rs]
    assert any(r.status_code in (200, 201) for r in answers)

    items = scan(direct_client(scenario.stack.dynamodb_url), scenario.stack.table)
    data = user_data(items, api.user)
    archived = [c for c in scenario.stack.recorder.calls_of(scenario.name) if c.code == "session_archived"]
    names = {str(c.get("name")) for c in data.chats.get(sid, {}).values()}
    messages = data.messages.get(sid, [])
    for call in archived:
        scenario.stack.recorder.checked("a 409 session_archived stored nothing")
        body = call.request_body or {}
        # A send committed before the archive and refused at its reply keeps its question,
        # unanswered (README, "Session lifecycle"); nothing else of it is stored.
        stored = [m for m in messages if m.get("content") == body.get("content")]
        answered = [m for m in stored if (m.get("role"), m.get("status")) != ("user", "unanswered")]
        replies = [m for m in messages if m.get("role") == "assistant" and m.get("replyToSeq") in seqs(stored)]
        assert not answered and not replies, f"{call.route} answered session_archived, yet stored {stored + replies}"
        assert body.get("name") not in names, f"{call.route} answered session_archived after {call.earlier}: {body}"
    usage_matches_table(api, items)
    scenario.finish()
