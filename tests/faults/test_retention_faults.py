"""Retention under faults: a session whose retention has passed is removed by the local TTL
emulation, and the stream's purge consumer (reaching DynamoDB through the fault injector: lost
answers, throttles, collisions, so its records fail and are delivered again) purges it and takes
it off the user's counters exactly once. Judged on the stored items and on ``GET /me/usage``."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import MAX_ACTIVE_SESSIONS, direct_client
from tests.faults.invariants import check_created, check_user, scan
from tests.faults.test_fault_tier import (
    NOT_FOUND,
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
from tests.support import stream_drained

pytestmark = pytest.mark.xdist_group("faults")  # the tier's one stack
WAIT_S = 300.0  # a bound for a busy machine; the wait is polled


def test_an_expired_session_leaves_nothing_and_is_counted_once_under_faults(scenario: Scenario) -> None:  # noqa: F811
    api = scenario.api("expiring")
    kept = ok(api, create_session(api, "kept"), 201)["sessionId"]
    sid = ok(api, create_session(api, "expires"), 201)["sessionId"]
    for name in ("first", "second"):
        cid = ok(api, create_chat(api, sid, name), 201)["chatId"]
        ok(api, activate(api, sid, cid))
        ok(api, send(api, sid, cid, unique(f"to {name}")), 201)
    kept_chat = ok(api, create_chat(api, kept, "kept chat"), 201)["chatId"]
    ok(api, send(api, kept, kept_chat, unique("stays")), 201)
    before = read(api, "/me/usage", "/me/usage")
    assert (before["sessions"]["active"], before["chats"], before["messages"]) == (2, 3, 6)

    # Its retention passes (the stack runs without one: the attribute is set as a write would).
    client = direct_client(scenario.stack.dynamodb_url)
    pk = next(str(i["PK"]) for i in scan(client, scenario.stack.table) if i["SK"] == f"SESSION#{sid}")
    client.update_item(
        TableName=scenario.stack.table,
        Key={"PK": {"S": pk}, "SK": {"S": f"SESSION#{sid}"}},
        UpdateExpression="SET expiresAt = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )
    deadline = time.monotonic() + WAIT_S
    while api.until_done("GET", S, f"/sessions/{sid}", allowed=NOT_FOUND).status_code != 404:
        assert time.monotonic() < deadline, "the expired session was not removed"
        time.sleep(0.2)
    state = stream_drained(scenario.stack.url)
    purge = next(c for c in state["consumers"] if c["function"] == "PurgeDeletedFunction")
    assert purge["deadLettered"] == 0, purge

    items = scan(client, scenario.stack.table)
    assert not [i for i in items if sid in str(i["PK"]) and i["SK"] != f"EXPIRED#{sid}"], "its items outlived it"
    assert [i["SK"] for i in items].count(f"EXPIRED#{sid}") == 1
    after = read(api, "/me/usage", "/me/usage")
    assert after["sessions"] == {"active": 1, "paused": 0, "archived": 0}
    assert (after["chats"], after["messages"]) == (1, 2)  # the kept session's only: counted once

    # The tier's judgement (Scenario.finish), the removed session's own 201s excepted: every other
    # answer within the contract, every invariant of the user's stored items.
    for each in scenario.apis:
        each.close()
    recorder = scenario.stack.recorder
    calls = [c for c in recorder.calls_of(scenario.name) if sid not in c.path and sid not in c.body]
    violations = check_user(items, api.user, MAX_ACTIVE_SESSIONS, recorder) + check_created(items, calls, recorder)
    problems = [p.describe() for p in recorder.problems_of(scenario.name)]
    assert not problems and not violations, problems + violations
