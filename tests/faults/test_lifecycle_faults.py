"""The session lifecycle under faults: archive and unarchive raced with writes into the session
and with the active-session quota, and ``DELETE /me`` raced with creates. Judged as the tier
judges (every answer within the contract, every invariant of the stored items), on what an
answer of ``409 session_archived`` left (nothing), on ``GET /me/usage`` against the table, and,
for the erasure, on every item of the user left once the stream has drained.

``MONTHLY_TOKEN_BUDGET`` has no scenario here yet: the tier's one stack runs without a budget
(one for every scenario would change what the others test), so it needs a stack of its own.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.faults.conftest import MAX_ACTIVE_SESSIONS, direct_client
from tests.faults.invariants import check_created, check_user, scan, user_data, user_pk
from tests.faults.recorder import Api, race
from tests.faults.test_fault_tier import (
    NOT_FOUND,
    S,
    Scenario,
    activate,
    attach_faults,
    create_chat,
    create_session,
    ok,
    read,
    scenario,  # noqa: F401  (the fixture)
    send,
    unique,
)
from tests.support import stream_drained

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


def test_erasure_under_faults_leaves_only_what_was_created_after_it(scenario: Scenario) -> None:  # noqa: F811
    """``DELETE /me`` (retried with its key on transient answers) raced with a client creating
    sessions (``409 erasure_in_progress`` while it runs) and one sending to an erased session.
    Once the stream has drained: every session answered before the last ``DELETE`` try began is
    gone with everything in it, every one whose create (its first try: a retried create may be
    answered with the stored response of a try that committed before the erasure) began after
    that try's answer is kept, nothing else of the user is left, and ``GET /me/usage`` counts
    what is."""
    api = scenario.api("erased")
    kept = ok(api, create_session(api, "kept"), 201)["sessionId"]
    chats = [ok(api, create_chat(api, kept, name), 201)["chatId"] for name in ("one", "two")]
    for cid in chats:
        ok(api, activate(api, kept, cid))
        ok(api, send(api, kept, cid, unique(f"to {cid}")), 201)
    paused = ok(api, create_session(api, "paused"), 201)["sessionId"]
    ok(api, api.until_done("POST", S + "/pause", f"/sessions/{paused}/pause"))
    key = f"erase-{uuid.uuid4().hex}"

    def work(i: int) -> list[httpx.Response]:
        own = scenario.as_user(api.user)
        if i == 0:  # a client that retries its DELETE with the same key
            return [own.until_done("DELETE", "/me", "/me", key=key)]
        if i == 1:
            return [create_session(own, f"meanwhile {j}", ERASING | LIMIT) for j in range(6)]
        return [send(own, kept, chats[1], unique(f"meanwhile {j}"), NOT_FOUND) for j in range(3)]

    erased = race(3, work)[0][0]
    ok(api, erased, 202)
    stream_drained(scenario.stack.url)

    calls = scenario.stack.recorder.calls_of(scenario.name)
    deletes = [c for c in calls if c.route == "DELETE /me"]
    marked_from, marked_by = deletes[-1].started, deletes[-1].ended
    created = [c for c in calls if c.route == "POST /sessions" and c.status == 201]
    before = {json.loads(c.body)["sessionId"] for c in created if c.ended < marked_from}
    after = {json.loads(c.body)["sessionId"] for c in created if c.started > marked_by and not c.earlier}
    assert {kept, paused} <= before

    items = scan(direct_client(scenario.stack.dynamodb_url), scenario.stack.table)
    pk = user_pk(api.user)
    left = [i for i in items if str(i["PK"]) == pk or str(i["PK"]).startswith(pk + "#")]
    data = user_data(items, api.user)
    assert not set(data.sessions) & before, f"sessions created before the erasure outlived it: {data.sessions}"
    assert after <= set(data.sessions), "a session created after the erasure was erased"
    survivors = set(data.sessions)
    for item in left:
        item_pk = str(item["PK"])
        if item_pk.startswith(pk + "#SESSION#"):
            assert item_pk[len(pk + "#SESSION#") :] in survivors, f"left of an erased session: {item}"
        elif item_pk == pk:
            assert str(item["SK"]) == "QUOTA" or str(item["SK"])[len("SESSION#") :] in survivors, f"left: {item}"
            assert "erasingSince" not in item, f"the erasure's marker outlived it: {item}"
    if not survivors:
        assert not left, f"nothing was created after the erasure, yet the user has items: {left}"
        usage = read(api, "/me/usage", "/me/usage")
        assert (usage["sessions"], usage["chats"], usage["messages"]) == (
            {"active": 0, "paused": 0, "archived": 0},
            0,
            0,
        )
    usage_matches_table(api, items)

    # Once it is over, the user starts again from nothing: a create lands, unless the creates
    # that came after the erasure already hold every active place (then the limit, not the
    # erasure, refuses it).
    answer = create_session(api, "afterwards", LIMIT)
    if answer.status_code == 201:
        again = answer.json()["sessionId"]
        assert read(api, S, f"/sessions/{again}")["status"] == "active"
    else:
        assert read(api, "/me/usage", "/me/usage")["sessions"]["active"] == MAX_ACTIVE_SESSIONS, answer.text
    items = scan(direct_client(scenario.stack.dynamodb_url), scenario.stack.table)
    usage_matches_table(api, items)
    for each in scenario.apis:
        each.close()
    recorder = scenario.stack.recorder
    # Every 201 stored, except what the erasure took (what was answered before or while it was marked).
    erased_ids = {json.loads(c.body)["sessionId"] for c in created if c.started <= marked_by or c.earlier} - survivors
    judged = [
        c
        for c in recorder.calls_of(scenario.name)
        if not any(s in c.path or s in c.body for s in erased_ids | {kept, paused})
    ]
    violations = check_user(items, api.user, MAX_ACTIVE_SESSIONS, recorder) + check_created(items, judged, recorder)
    problems = recorder.problems_of(scenario.name)
    attach_faults(scenario.stack, problems, scenario.started_events)
    report = [p.describe() for p in problems] + violations
    assert not report, report
