"""The story and each invariant's race, over HTTP, while DynamoDB fights back.

Every scenario runs as users of its own against the fault stack (``conftest.fault_stack``:
DynamoDB Local behind the fault injector, at rates that take every fault path). Clients behave as
well-made clients do: a transient answer (``409 conflict``, ``429``, ``503``) is retried with the
same ``Idempotency-Key``. Judged on every answer (``recorder``: no ``500``, only the contract's
transient failures, ``Retry-After`` where due) and, after each scenario, on the items stored
(``invariants``: read straight from DynamoDB Local).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.faults.conftest import MAX_ACTIVE_SESSIONS, FaultStack, direct_client
from tests.faults.invariants import check_created, check_user, scan
from tests.faults.recorder import Api, Problem, describe_faults, race

S = "/sessions/{sessionId}"
C = "/sessions/{sessionId}/chats/{chatId}"
NOT_FOUND = frozenset({"not_found"})

# One DynamoDB Local and one stack for the whole tier: under pytest-xdist (make test) its tests
# run on one worker.
pytestmark = pytest.mark.xdist_group("faults")


class Scenario:
    """A test's users and the checks made when it ends."""

    def __init__(self, stack: FaultStack, name: str) -> None:
        self.stack = stack
        self.name = name
        self.users: list[str] = []
        self.apis: list[Api] = []
        self.started_events = stack.faults()["events"]

    def api(self, label: str = "user") -> Api:
        user = f"{label}-{uuid.uuid4().hex[:10]}"
        self.users.append(user)
        return self.as_user(user)

    def as_user(self, user: str) -> Api:
        """Another client (connection) for a user this scenario already has."""
        api = Api(self.stack.url, user, self.name, self.stack.recorder, self.stack.fault_events)
        self.apis.append(api)
        return api

    def finish(self) -> None:
        """Judge the scenario: every answer, then every invariant on the stored items."""
        for api in self.apis:
            api.close()
        recorder = self.stack.recorder
        items = scan(direct_client(self.stack.dynamodb_url), self.stack.table)
        violations: list[str] = []
        for user in self.users:
            violations += check_user(items, user, MAX_ACTIVE_SESSIONS, recorder)
        violations += check_created(items, recorder.calls_of(self.name), recorder)
        problems = recorder.problems_of(self.name)
        attach_faults(self.stack, problems, self.started_events)
        report = [p.describe() for p in problems] + violations
        assert not report, f"{len(problems)} answers outside the contract, {len(violations)} broken invariants:\n" + (
            "\n".join(f"- {line}" for line in report[:40])
        )


def attach_faults(stack: FaultStack, problems: list[Problem], after: int) -> None:
    """The faults the injector made while each problem request ran."""
    if not problems:
        return
    events = stack.fault_events(after)
    for problem in problems:
        start, end = problem.call.op_started or problem.call.started, problem.call.ended
        problem.faults = [e for e in events if start <= e["t"] <= end]


@pytest.fixture
def scenario(fault_stack: FaultStack, request: pytest.FixtureRequest) -> Iterator[Scenario]:
    yield Scenario(fault_stack, request.node.name)


def ok(api: Api, response: httpx.Response, status: int = 200) -> Any:
    """The body of an answer that must be ``status`` once the client has retried what it may;
    otherwise fail, naming the faults injected while the client tried."""
    if response.status_code != status:
        events = [e for e in api.stack_events() if e["t"] >= api.op_started]
        raise AssertionError(
            f"{response.request.method} {response.request.url.path}: wanted {status}, got {response.status_code} "
            f"{response.text[:300]}; faults while the client tried: {describe_faults(events)}"
        )
    return response.json() if response.content else None


# --- small steps, each retried until it is done ----------------------------------------------


def create_session(api: Api, name: str = "s", allowed: frozenset[str] = frozenset()) -> httpx.Response:
    return api.until_done("POST", "/sessions", "/sessions", {"name": name}, allowed)


def create_chat(api: Api, sid: str, name: str) -> httpx.Response:
    return api.until_done("POST", S + "/chats", f"/sessions/{sid}/chats", {"name": name}, NOT_FOUND)


def send(
    api: Api, sid: str, cid: str, content: str, allowed: frozenset[str] = frozenset(), key: str | None = None
) -> httpx.Response:
    """A send, retried on transient answers under one ``Idempotency-Key`` (``key``, else a fresh one)."""
    return api.until_done(
        "POST", C + "/messages", f"/sessions/{sid}/chats/{cid}/messages", {"content": content}, allowed, key=key
    )


def send_to_active(api: Api, sid: str, content: str) -> httpx.Response:
    return api.until_done("POST", S + "/messages", f"/sessions/{sid}/messages", {"content": content})


def activate(api: Api, sid: str, cid: str, allowed: frozenset[str] = frozenset()) -> httpx.Response:
    return api.until_done("POST", C + "/activate", f"/sessions/{sid}/chats/{cid}/activate", None, allowed)


def delete(api: Api, route: str, path: str) -> None:
    """A delete, retried until done: ``204``, or ``404`` when an earlier try had answered a
    transient failure (it may have deleted the resource before its answer was lost)."""
    response = api.until_done("DELETE", route, path, allowed=NOT_FOUND)
    tries = [c for c in api.recorder.calls_of(api.test) if c.method == "DELETE" and c.path == path]
    if not (response.status_code == 404 and len(tries) > 1):
        ok(api, response, 204)


def read(api: Api, route: str, path: str) -> Any:
    return ok(api, api.until_done("GET", route, path))


def all_messages(api: Api, sid: str, cid: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = f"?limit=50{'&cursor=' + cursor if cursor else ''}"
        page = read(api, C + "/messages", f"/sessions/{sid}/chats/{cid}/messages{query}")
        items += page["items"]
        cursor = page["nextCursor"]
        if cursor is None:
            return items


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


# --- the story -----------------------------------------------------------------------------------


def test_story(scenario: Scenario) -> None:
    """Create a session; the first chat becomes active; send; a second chat takes over; switch
    back; continue. Each step retried until done, and the end state is the story's."""
    api = scenario.api("story")
    session = ok(api, create_session(api, "Story"), 201)
    sid = session["sessionId"]
    debug = ok(api, create_chat(api, sid, "Debug Session"), 201)
    assert debug["active"] is True
    first = ok(api, send_to_active(api, sid, "Why does my Lambda time out?"), 201)
    assert first["userMessage"]["chatId"] == debug["chatId"]
    assert (first["userMessage"]["seq"], first["assistantMessage"]["seq"]) == (1, 2)
    for i in range(3):  # single writes to items that transactions write too
        renamed = api.until_done("PATCH", S, f"/sessions/{sid}", {"name": f"Story, renamed {i}"})
        assert ok(api, renamed)["name"] == f"Story, renamed {i}"
        retitled = api.until_done("PATCH", C, f"/sessions/{sid}/chats/{debug['chatId']}", {"name": f"Debugging {i}"})
        assert ok(api, retitled)["name"] == f"Debugging {i}"
    feature = ok(api, create_chat(api, sid, "Feature Development"), 201)
    assert read(api, S, f"/sessions/{sid}")["activeChatId"] == feature["chatId"]
    ok(api, activate(api, sid, debug["chatId"]))
    second = ok(api, send_to_active(api, sid, "It calls a slow API."), 201)
    assert second["userMessage"]["chatId"] == debug["chatId"]
    assert (second["userMessage"]["seq"], second["assistantMessage"]["seq"]) == (3, 4)

    messages = all_messages(api, sid, debug["chatId"])
    assert [(m["seq"], m["role"]) for m in messages] == [(1, "user"), (2, "assistant"), (3, "user"), (4, "assistant")]
    assert [m["content"] for m in messages if m["role"] == "user"] == [
        "Why does my Lambda time out?",
        "It calls a slow API.",
    ]
    assert all_messages(api, sid, feature["chatId"]) == []
    final = read(api, S, f"/sessions/{sid}")
    assert (final["activeChatId"], final["chatCount"], final["messageCount"]) == (debug["chatId"], 2, 4)
    assert final["name"] == "Story, renamed 2"
    assert scenario.stack.faults()["faults_total"] > 0  # the handlers did go through the injector
    scenario.finish()


# --- races ---------------------------------------------------------------------------------------


def test_one_active_chat_under_concurrent_creates_activates_and_deletes(scenario: Scenario) -> None:
    api = scenario.api("switcher")
    sid = ok(api, create_session(api), 201)["sessionId"]
    existing = [ok(api, create_chat(api, sid, f"chat {i}"), 201)["chatId"] for i in range(4)]
    threads = 12

    def work(i: int) -> httpx.Response:
        own = scenario.as_user(api.user)
        if i % 3 == 0:
            return create_chat(own, sid, f"new {i}")
        if i % 3 == 1:
            return activate(own, sid, existing[i % 4], NOT_FOUND)
        path = f"/sessions/{sid}/chats/{existing[(i // 3) % 2]}"
        return own.until_done("DELETE", C, path, allowed=NOT_FOUND)

    race(threads, work)
    scenario.finish()


def test_seq_is_gap_free_under_concurrent_sends(scenario: Scenario) -> None:
    api = scenario.api("sender")
    sid = ok(api, create_session(api), 201)["sessionId"]
    cid = ok(api, create_chat(api, sid, "busy"), 201)["chatId"]
    contents = [unique(f"message {i}") for i in range(12)]

    def work(i: int) -> list[httpx.Response]:
        own = scenario.as_user(api.user)
        return [send(own, sid, cid, contents[j]) for j in (i, i + 6)]

    answers = [r for pair in race(6, work) for r in pair]
    stored = all_messages(api, sid, cid)
    assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))
    sent = {r.json()["userMessage"]["content"] for r in answers if r.status_code == 201}
    assert sent <= {m["content"] for m in stored if m["role"] == "user"}
    scenario.finish()


def test_active_session_quota_under_concurrent_creates_resumes_and_pauses(scenario: Scenario) -> None:
    api = scenario.api("quota")
    # Alone, with no one competing, every create up to the limit succeeds: a collision on the
    # counter is never reported as the limit.
    created = [ok(api, create_session(api, f"s{i}"), 201)["sessionId"] for i in range(MAX_ACTIVE_SESSIONS)]
    refused = create_session(api, "over", allowed=frozenset({"session_limit_reached"}))
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "session_limit_reached"
    for sid in created[1:]:
        ok(api, api.until_done("POST", S + "/pause", f"/sessions/{sid}/pause"))
    limit = frozenset({"session_limit_reached"})

    def work(i: int) -> httpx.Response:
        own = scenario.as_user(api.user)
        if i < 4:
            return create_session(own, f"race {i}", allowed=limit)
        if i < 6:
            sid = created[1 + i - 4]
            return own.until_done("POST", S + "/resume", f"/sessions/{sid}/resume", allowed=limit)
        return own.until_done("POST", S + "/pause", f"/sessions/{created[0]}/pause")

    race(7, work)
    scenario.finish()


def test_send_to_active_chat_while_another_client_switches(scenario: Scenario) -> None:
    """The session has an active chat throughout, so a send to "the active chat" never answers
    ``chat_not_active`` or ``no_active_chat`` (neither is in ``allowed``: both are problems)."""
    api = scenario.api("switching")
    sid = ok(api, create_session(api), 201)["sessionId"]
    chats = [ok(api, create_chat(api, sid, name), 201)["chatId"] for name in ("A", "B")]

    def work(i: int) -> list[httpx.Response]:
        own = scenario.as_user(api.user)
        if i == 0:
            return [activate(own, sid, chats[j % 2]) for j in range(8)]
        return [send_to_active(own, sid, unique(f"to active {i}.{j}")) for j in range(3)]

    answers = [r for rs in race(4, work) for r in rs]
    assert any(r.status_code == 201 for r in answers)
    scenario.finish()


def test_deletes_purge_everything_under_faults(scenario: Scenario) -> None:
    """Deleting a chat, then the session, leaves nothing behind (purged in BatchWriteItem calls
    that DynamoDB may hand back partly unprocessed), and the quota counter follows."""
    api = scenario.api("deleter")
    sid = ok(api, create_session(api), 201)["sessionId"]
    chats = [ok(api, create_chat(api, sid, name), 201)["chatId"] for name in ("first", "second")]
    for cid in chats:
        ok(api, activate(api, sid, cid))
        for i in range(2):
            ok(api, send(api, sid, cid, unique(f"to {cid} {i}")), 201)
    delete(api, C, f"/sessions/{sid}/chats/{chats[0]}")
    after = read(api, S, f"/sessions/{sid}")
    assert (after["chatCount"], after["messageCount"], after["activeChatId"]) == (1, 4, chats[1])
    delete(api, S, f"/sessions/{sid}")
    gone = api.until_done("GET", S, f"/sessions/{sid}", allowed=NOT_FOUND)
    assert gone.status_code == 404
    items = scan(direct_client(scenario.stack.dynamodb_url), scenario.stack.table)
    assert not [i for i in items if sid in str(i["PK"]) or sid in str(i["SK"])], "the session's items outlived it"
    scenario.finish()


# --- idempotency and regenerate ------------------------------------------------------------------


def test_repeats_of_one_idempotency_key_call_the_model_once(scenario: Scenario) -> None:
    api = scenario.api("idem")
    sid = ok(api, create_session(api), 201)["sessionId"]
    cid = ok(api, create_chat(api, sid, "c"), 201)["chatId"]
    path = f"/sessions/{sid}/chats/{cid}/messages"
    content = unique("only once")
    key = f"idem-{uuid.uuid4().hex}"

    def post(own: Api, body: dict[str, Any], allowed: frozenset[str] = frozenset()) -> httpx.Response:
        return own.until_done("POST", C + "/messages", path, body, allowed, key=key)

    first = ok(api, post(api, {"content": content}), 201)
    calls = scenario.stack.model_calls()
    for _ in range(4):
        assert ok(api, post(api, {"content": content}), 201) == first
    reused = post(api, {"content": "another body"}, frozenset({"idempotency_key_reused"}))
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused"
    assert scenario.stack.model_calls() == calls, "a repeat of a key that had answered called the model again"

    # Concurrent repeats of a fresh key: one message, the same answer to every 201.
    key = f"idem-{uuid.uuid4().hex}"
    content = unique("raced once")
    answers = race(6, lambda i: post(scenario.as_user(api.user), {"content": content}))
    bodies = {json.dumps(r.json(), sort_keys=True) for r in answers if r.status_code == 201}
    assert len(bodies) <= 1, bodies
    users = [m for m in all_messages(api, sid, cid) if m["role"] == "user"]
    assert [m["content"] for m in users].count(content) <= 1
    scenario.finish()


def test_regenerate_under_faults(scenario: Scenario) -> None:
    api = scenario.api("regen")
    sid = ok(api, create_session(api), 201)["sessionId"]
    cid = ok(api, create_chat(api, sid, "c"), 201)["chatId"]
    sent = ok(api, send(api, sid, cid, unique("answer me again")), 201)
    path = f"/sessions/{sid}/chats/{cid}/regenerate"
    answers = [api.until_done("POST", C + "/regenerate", path) for _ in range(3)]
    lock = threading.Lock()
    raced: list[httpx.Response] = []

    def work(i: int) -> None:
        response = scenario.as_user(api.user).until_done("POST", C + "/regenerate", path)
        with lock:
            raced.append(response)

    race(3, work)
    regenerated = [r.json() for r in answers + raced if r.status_code == 201]
    assert all(r["userMessage"]["messageId"] == sent["userMessage"]["messageId"] for r in regenerated)
    messages = all_messages(api, sid, cid)
    replies = [m for m in messages if m["role"] == "assistant"]
    # One reply per regenerate that answered 201, none for a repeat of one (a regenerate that
    # never got its 201 may or may not have stored its reply).
    unfinished = len(answers + raced) - len(regenerated)
    assert 1 + len(regenerated) <= len(replies) <= 1 + len(regenerated) + unfinished, (len(replies), regenerated)
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert {r["assistantMessage"]["messageId"] for r in regenerated} <= {m["messageId"] for m in replies}
    scenario.finish()


# --- branches ------------------------------------------------------------------------------------


def fork(api: Api, sid: str, cid: str, name: str, upto: int, allowed: frozenset[str] = frozenset()) -> httpx.Response:
    body = {"name": name, "uptoSeq": upto}
    return api.until_done("POST", C + "/fork", f"/sessions/{sid}/chats/{cid}/fork", body, allowed | NOT_FOUND)


def test_forks_and_edits_under_faults(scenario: Scenario) -> None:
    """Forks raced with activations of their source and sends to it, then an edit, then the
    source deleted: one active chat throughout, every fork's history the source's first
    ``uptoSeq`` messages followed by its own, and none of it changed by the source's deletion."""
    api = scenario.api("brancher")
    sid = ok(api, create_session(api), 201)["sessionId"]
    source = ok(api, create_chat(api, sid, "source"), 201)["chatId"]
    for i in range(3):
        ok(api, send(api, sid, source, unique(f"question {i}")), 201)
    before = all_messages(api, sid, source)
    assert [m["seq"] for m in before] == list(range(1, 7))
    inactive = frozenset({"chat_not_active"})

    def work(i: int) -> httpx.Response:
        own = scenario.as_user(api.user)
        if i % 3 == 0:
            return fork(own, sid, source, f"fork {i}", upto=2 + i // 3 * 2)
        if i % 3 == 1:
            return activate(own, sid, source, NOT_FOUND)
        return send(own, sid, source, unique(f"raced {i}"), allowed=inactive)

    answers = race(6, work)
    forks = [r.json() for r in answers if r.status_code == 201 and "forkedFrom" in r.json()]
    assert forks, [r.status_code for r in answers]
    source_now = all_messages(api, sid, source)
    edited = ok(
        api,
        api.until_done(
            "POST",
            C + "/messages/{messageId}/edit",
            f"/sessions/{sid}/chats/{source}/messages/{before[2]['messageId']}/edit",
            {"content": unique("question 1, edited")},
        ),
        201,
    )
    assert (edited["userMessage"]["seq"], edited["chat"]["forkedFrom"]) == (3, {"chatId": source, "seq": 2})
    histories = {
        f["chatId"]: [(m["seq"], m["role"], m["content"]) for m in all_messages(api, sid, f["chatId"])]
        for f in [*forks, edited["chat"]]
    }
    shown = [(m["seq"], m["role"], m["content"]) for m in source_now]
    for chat in [*forks, edited["chat"]]:
        upto = chat["forkedFrom"]["seq"]
        assert histories[chat["chatId"]][:upto] == shown[:upto], chat
    delete(api, C, f"/sessions/{sid}/chats/{source}")
    for chat_id, history in histories.items():
        assert [(m["seq"], m["role"], m["content"]) for m in all_messages(api, sid, chat_id)] == history
    scenario.finish()
