"""The cost model, asserted: what each request costs in DynamoDB round trips, and that a send
costs the same at message 1,000 as at message 10.

Round trips are counted on the boto3 clients the store and idempotency use (botocore events,
:class:`benchmarks.meter.DynamoMeter`), through the Lambda handlers, so a change that adds a
read, reads a whole history or drops a transaction in favour of several writes fails here.
The counts are deterministic, so they are asserted exactly, request by request; the table in
The README's round-trip table is checked against the same expectations, so the README's numbers cannot
drift from the code. ``benchmarks/results.md`` has the timings; no test here depends on time.

Cold start: a handler that never calls the model must not import ``openai`` (about half a
second of import time), checked for every handler module in one fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from moto.dynamodb.models.dynamo_type import LimitedSizeDict

from benchmarks.capacity import ITEM_LIMIT, item_size
from benchmarks.meter import DynamoMeter, Reading
from benchmarks.seed import seed_history, text
from local_stack.template import routes
from tests.support import ROOT, LambdaContext, invoke, moto_table_model, reset_caches

MODEL_CALLERS = {"send_message", "send_to_active_chat", "regenerate", "edit_message"}
COST_DOC = ROOT / "README.md"

# Every request each operation sends, in order, on the happy path (no contention).
EXPECTED: dict[str, list[str]] = {
    "create_session": ["TransactWriteItems"],
    "get_session": ["GetItem"],
    "list_sessions": ["Query", "Query"],
    "list_sessions, one status": ["Query"],
    "update_session": ["UpdateItem"],
    "pause_session": ["GetItem", "TransactWriteItems"],
    "pause_session, already paused": ["GetItem"],
    "resume_session": ["GetItem", "TransactWriteItems"],
    "archive_session": ["GetItem", "TransactWriteItems"],
    "get_usage": ["GetItem"],
    "erase_me": ["UpdateItem"],
    "send_message with a token budget": ["Query", "TransactWriteItems", "TransactWriteItems"],
    "regenerate with a token budget": ["Query", "TransactGetItems", "TransactWriteItems"],
    "unarchive_session": ["GetItem", "TransactWriteItems"],
    "create_chat, first chat": ["GetItem", "TransactWriteItems"],
    "create_chat, replacing the active chat": ["GetItem", "TransactWriteItems"],
    "get_chat": ["GetItem"],
    "list_chats": ["GetItem", "Query"],
    "update_chat": ["TransactWriteItems", "GetItem"],
    "activate_chat": ["TransactGetItems", "TransactWriteItems"],
    "activate_chat, already active": ["TransactGetItems"],
    "send_message": ["Query", "TransactWriteItems", "TransactWriteItems"],
    "send_to_active_chat": ["GetItem", "Query", "TransactWriteItems", "TransactWriteItems"],
    "regenerate": ["Query", "GetItem", "TransactWriteItems"],
    "list_messages": ["Query"],
    "send_message, Prefer: respond-async": ["Query", "TransactWriteItems"],
    "get_message": ["GetItem"],
    "generate_reply, a reply streamed within 1.5 s": ["UpdateItem", "Query", "TransactWriteItems"],
    "regenerate, Prefer: respond-async": ["Query", "GetItem", "TransactWriteItems"],
    "cancel_message": ["TransactWriteItems", "GetItem"],
    "send_message with Idempotency-Key": ["PutItem", "Query", "TransactWriteItems", "TransactWriteItems", "UpdateItem"],
    "send_message, repeated Idempotency-Key": ["PutItem", "BatchGetItem"],
    "delete_chat, no messages": ["TransactGetItems", "TransactWriteItems", "Query", "BatchWriteItem"],
    "delete_chat, 60 messages": [
        "TransactGetItems",
        "TransactWriteItems",
        "Query",
        "BatchWriteItem",
        "BatchWriteItem",
        "BatchWriteItem",
    ],
    "delete_session, one chat with 7 messages": ["GetItem", "TransactWriteItems", "Query", "BatchWriteItem"],
    "fork_chat": ["TransactGetItems", "GetItem", "TransactWriteItems"],
    "send_message in a fork": ["Query", "Query", "TransactWriteItems", "TransactWriteItems"],
    "list_messages of a fork": ["Query", "Query", "Query"],
    "list_messages of a fork, next page": ["Query"],
    "edit_message": [
        "TransactGetItems",
        "GetItem",
        "GetItem",
        "TransactWriteItems",
        "Query",
        "Query",
        "TransactWriteItems",
        "TransactWriteItems",
    ],
    "delete_chat, shared by a fork": ["TransactGetItems", "TransactWriteItems", "Query", "BatchWriteItem"],
}


@pytest.fixture
def local_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The local OpenAI-compatible model server; the real ``openai`` client is pointed at it."""
    from local_stack import model_server

    server, url = model_server.start_in_thread()
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    reset_caches()
    yield server
    server.shutdown()
    server.server_close()


def service_meter() -> DynamoMeter:
    """A meter on both clients the service uses (the store's and the idempotency layer's)."""
    from chat_sessions import store

    return DynamoMeter().attach(store.dynamodb_client()).attach(store.plain_dynamodb_client())


class Recorder:
    """Invokes handlers and keeps what each one sent to DynamoDB, by label."""

    def __init__(self) -> None:
        self.meter = service_meter()
        self.seen: dict[str, list[str]] = {}

    def __call__(self, label: str, module: str, status: int, **kwargs: Any) -> Any:
        self.meter.reset()
        result = invoke(module, **kwargs)
        reading = self.meter.take()
        assert result.status == status, (label, result.body)
        assert reading.requests == len(reading.calls), f"{label}: a request was retried"
        self.seen[label] = reading.operations
        return result.body


def new_conversation(user: str) -> tuple[str, str]:
    session = invoke("create_session", user=user, body={"name": "cost"})
    assert session.status == 201
    chat = invoke("create_chat", user=user, session=session.body["sessionId"], body={"name": "c"})
    assert chat.status == 201
    return str(session.body["sessionId"]), str(chat.body["chatId"])


def seed_client() -> Any:
    """A client of its own for seeding, so the service's meters never see it."""
    import boto3

    return _MotoSeeder(boto3.resource("dynamodb").meta.client)


class _MotoSeeder:
    """The seeding client, but its batches of history go into moto's table directly: 10,000
    items through the API took 9 s of CPU per chat (serialising, parsing, answering each batch),
    most of the cost tests' time; what a measured request costs is counted on the service's own
    clients, which still go through the API. Every other call goes to the client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        from boto3.dynamodb.types import TypeSerializer

        wire = TypeSerializer()
        with _item_size_summed_once():
            for table_name, requests in RequestItems.items():
                table = moto_table_model(table_name)
                assert table is not None, f"no table {table_name} in moto"
                for request in requests:
                    item: dict[str, Any] = {
                        name: wire.serialize(value) for name, value in request["PutRequest"]["Item"].items()
                    }
                    assert item_size(item) <= ITEM_LIMIT, f"a seeded item of {item_size(item)} bytes"
                    table.put_item(item)
        return {"UnprocessedItems": {}}


@contextmanager
def _item_size_summed_once() -> Iterator[None]:
    """moto's item checks its size limit as each attribute is added, summing the sizes of all the
    attributes already there: quadratic in the attributes, 85% of the CPU of seeding 10,000
    messages. The seeder sums each item's size once instead (``batch_write_item``) and turns the
    per-attribute check off while it puts its items; the service's own writes keep it."""
    check = LimitedSizeDict.__setitem__
    LimitedSizeDict.__setitem__ = dict.__setitem__  # type: ignore[method-assign]
    try:
        yield
    finally:
        LimitedSizeDict.__setitem__ = check  # type: ignore[method-assign]


def test_round_trips_per_operation(table: str, local_model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # With MONTHLY_TOKEN_BUDGET: the send's check rides in its user message's transaction, the
    # regenerate's read of the session also reads the user's counters (one request either way).
    with monkeypatch.context() as budget:
        budget.setenv("MONTHLY_TOKEN_BUDGET", "1000000")
        reset_caches()
        with_budget = Recorder()
        b_sid, b_chat = new_conversation("dave")
        dave: dict[str, Any] = {"user": "dave", "session": b_sid, "chat": b_chat}
        with_budget("send_message with a token budget", "send_message", 201, **dave, body={"content": "x"})
        with_budget("regenerate with a token budget", "regenerate", 201, **dave)
    reset_caches()
    call = Recorder()
    call.seen.update(with_budget.seen)
    sid = call("create_session", "create_session", 201, body={"name": "s"})["sessionId"]
    call("get_session", "get_session", 200, session=sid)
    call("list_sessions", "list_sessions", 200)
    call("list_sessions, one status", "list_sessions", 200, query={"status": "active"})
    call("update_session", "update_session", 200, session=sid, body={"name": "renamed"})
    first = call("create_chat, first chat", "create_chat", 201, session=sid, body={"name": "a"})["chatId"]
    second = call("create_chat, replacing the active chat", "create_chat", 201, session=sid, body={"name": "b"})[
        "chatId"
    ]
    call("get_chat", "get_chat", 200, session=sid, chat=second)
    call("list_chats", "list_chats", 200, session=sid)
    call("update_chat", "update_chat", 200, session=sid, chat=second, body={"name": "b2"})
    call("activate_chat", "activate_chat", 200, session=sid, chat=first)
    call("activate_chat, already active", "activate_chat", 200, session=sid, chat=first)
    call("send_message", "send_message", 201, session=sid, chat=first, body={"content": "one"})
    call("send_to_active_chat", "send_to_active_chat", 201, session=sid, body={"content": "two"})
    call("regenerate", "regenerate", 201, session=sid, chat=first)
    call("list_messages", "list_messages", 200, session=sid, chat=first, query={"limit": "20"})
    key = {"Idempotency-Key": "cost-test-1"}
    sent = call(
        "send_message with Idempotency-Key",
        "send_message",
        201,
        session=sid,
        chat=first,
        body={"content": "three"},
        headers=key,
    )
    calls_before = local_model.calls
    again = call(
        "send_message, repeated Idempotency-Key",
        "send_message",
        201,
        session=sid,
        chat=first,
        body={"content": "three"},
        headers=key,
    )
    assert again == sent and local_model.calls == calls_before
    call("pause_session", "pause_session", 200, session=sid)
    call("pause_session, already paused", "pause_session", 200, session=sid)
    call("resume_session", "resume_session", 200, session=sid)
    call("archive_session", "archive_session", 200, session=sid)
    call("unarchive_session", "unarchive_session", 200, session=sid)
    assert invoke("resume_session", session=sid).status == 200
    call("delete_chat, no messages", "delete_chat", 204, session=sid, chat=second)

    other_sid, other_chat = new_conversation("bob")
    seed_history(seed_client(), table, "bob", other_sid, other_chat, 60, "test-model")
    call("delete_chat, 60 messages", "delete_chat", 204, user="bob", session=other_sid, chat=other_chat)

    messages = invoke("list_messages", session=sid, chat=first, query={"limit": "100"}).body["items"]
    assert len(messages) == 7  # three exchanges and a regenerated reply: the session's purge has work to do
    call("delete_session, one chat with 7 messages", "delete_session", 204, session=sid)
    assert invoke("get_session", session=sid).status == 404
    call("get_usage", "get_usage", 200)
    replies_generated_apart(call, monkeypatch)
    call("erase_me", "erase_me", 202, user="erin")

    # Branches: a fork of a 20-message chat at 10, a send there, its listing (the source's
    # part, then its own), an edit of the source's 9th message, the source deleted.
    sid, source = new_conversation("carol")
    seed_history(seed_client(), table, "carol", sid, source, 20, "test-model")
    carol: dict[str, Any] = {"user": "carol", "session": sid}
    forked = call("fork_chat", "fork_chat", 201, **carol, chat=source, body={"uptoSeq": 10})["chatId"]
    call("send_message in a fork", "send_message", 201, **carol, chat=forked, body={"content": "x"})
    page = call("list_messages of a fork", "list_messages", 200, **carol, chat=forked, query={"limit": "11"})
    assert [m["seq"] for m in page["items"]] == list(range(1, 12))
    more = {"limit": "11", "cursor": page["nextCursor"]}
    assert (
        call("list_messages of a fork, next page", "list_messages", 200, **carol, chat=forked, query=more)["items"][0][
            "seq"
        ]
        == 12
    )
    ninth = invoke("list_messages", **carol, chat=source, query={"limit": "9"}).body["items"][-1]
    call("edit_message", "edit_message", 201, **carol, chat=source, message=ninth["messageId"], body={"content": "y"})
    call("delete_chat, shared by a fork", "delete_chat", 204, **carol, chat=source)

    assert call.seen == EXPECTED


def replies_generated_apart(call: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefer: respond-async (issue 9): the send stores the question and the generating reply in
    its one transaction and hands the reply over (a Lambda invoke, not DynamoDB); the generation
    claims the reply, reads the thread and ends in one transaction, plus one write of the content
    per ``REPLY_FLUSH_SECONDS`` it takes (none here: the local model answers at once)."""
    import generate_reply

    from tests.lambda_service import lambda_service

    sid, chat = new_conversation("frank")
    where: dict[str, Any] = {"user": "frank", "session": sid, "chat": chat}
    with lambda_service() as lam:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lam.url)  # read when the Lambda client is made
        monkeypatch.setenv("GENERATE_REPLY_FUNCTION", "GenerateReplyFunction")
        prefer = {"Prefer": "respond-async"}
        sent = call(
            "send_message, Prefer: respond-async", "send_message", 202, **where, body={"content": "q"}, headers=prefer
        )
        reply_id = sent["assistantMessage"]["messageId"]
        call("get_message", "get_message", 200, **where, message=reply_id, query={})
        (event,) = lam.events("GenerateReplyFunction")
        call.meter.reset()
        assert generate_reply.lambda_handler(event, LambdaContext(remaining_millis=300_000)) == {"outcome": "complete"}
        call.seen["generate_reply, a reply streamed within 1.5 s"] = call.meter.take().operations
        again = call("regenerate, Prefer: respond-async", "regenerate", 202, **where, headers=prefer)
        call("cancel_message", "cancel_message", 200, **where, message=again["assistantMessage"]["messageId"])


def test_a_generated_reply_writes_its_content_at_most_every_flush_interval(
    table: str, local_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes per generated reply: the claim, one write of the content per ``REPLY_FLUSH_SECONDS``
    (1.5 s) of generation at most, the end's transaction; bounded by the function's timeout
    (300 s: at most 2 + 200), whatever the chat's length. A ~2.5 s reply here."""
    import generate_reply

    from tests.lambda_service import lambda_service

    monkeypatch.setenv("LOCAL_MODEL_DELAY_MS", "60")  # the local model's pause between words
    sid, chat = new_conversation("grace")
    with lambda_service() as lam:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lam.url)
        monkeypatch.setenv("GENERATE_REPLY_FUNCTION", "GenerateReplyFunction")
        content = " ".join(f"w{i}" for i in range(30))
        sent = invoke(
            "send_message",
            user="grace",
            session=sid,
            chat=chat,
            body={"content": content},
            headers={"Prefer": "respond-async"},
        )
        assert sent.status == 202
        (event,) = lam.events("GenerateReplyFunction")
        meter = service_meter()
        started = time.monotonic()
        assert generate_reply.lambda_handler(event, LambdaContext(remaining_millis=300_000)) == {"outcome": "complete"}
        elapsed = time.monotonic() - started
        operations = meter.take().operations
        meter.detach()
    grows = operations.count("UpdateItem") - 1  # the first UpdateItem is the claim
    assert operations[:2] == ["UpdateItem", "Query"] and operations[-1] == "TransactWriteItems"
    assert 1 <= grows <= elapsed / 1.5 + 1, (grows, elapsed)  # it grew while generating, never more often
    assert len(operations) == 3 + grows


def test_cost_doc_matches_the_measured_round_trips() -> None:
    """The README states, for every row of EXPECTED (which the test above measures), the same
    count and the same requests."""
    section = COST_DOC.read_text().split("### Round trips per operation", 1)[1].split("\n#", 1)[0]
    rows: dict[str, tuple[int, list[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[2].isdigit():
            label = cells[0].replace("`", "")
            operations = [op.strip() for op in cells[3].split(",")]
            rows[label] = (int(cells[2]), operations)
    assert {label: (len(ops), ops) for label, ops in EXPECTED.items()} == rows


LENGTHS = (10, 200, 10_000)


def test_a_send_costs_three_requests_and_the_same_units_at_any_length(table: str, local_model: Any) -> None:
    """Three requests (the thread, the user message, the reply) at 10, 200 and 10,000 stored
    messages; request bytes flat; write units flat (the four-request layout's 14, with the user's
    counters that layout did not keep); read
    units grow with the window (``CONTEXT_MAX_MESSAGES``), not with the chat, so 200 and 10,000
    read the same."""
    import boto3

    from benchmarks.capacity import CapacityEstimator, Estimate
    from chat_sessions import store

    readings: dict[int, tuple[Reading, Estimate]] = {}
    for length in LENGTHS:
        user = f"user-{length}"
        sid, chat = new_conversation(user)
        seed_history(seed_client(), table, user, sid, chat, length, "test-model")
        meter = service_meter()
        units = CapacityEstimator(boto3.client("dynamodb")).attach(store.dynamodb_client())
        sent = invoke("send_message", user=user, session=sid, chat=chat, body={"content": text(length + 1)})
        readings[length] = (meter.take(), units.take())
        meter.detach()
        units.detach()
        assert sent.status == 201
        assert (sent.body["userMessage"]["seq"], sent.body["assistantMessage"]["seq"]) == (length + 1, length + 2)
        # The model is shown a bounded window, not the history.
        assert len(local_model.requests[-1]["messages"]) <= min(length + 1, 101)

    (short, short_units), (mid, mid_units), (long, long_units) = (readings[n] for n in LENGTHS)
    assert short.operations == mid.operations == long.operations == EXPECTED["send_message"]
    assert short.requests == long.requests == 3
    assert long.request_bytes <= 1.2 * short.request_bytes, (short.request_bytes, long.request_bytes)
    assert short_units.write_units == mid_units.write_units == long_units.write_units == SEND_WRITE_UNITS
    assert (short_units.read_units, mid_units.read_units, long_units.read_units) == SEND_READ_UNITS


SEND_WRITE_UNITS = 16.0
"""User message 2 + the session's condition check 2 + the chat head's (no reply generating, issue 9)
2; reply 2 + the answered message 2 + chat 2 + session 2 + the user's counters 2 (transactions
charge twice; a ``ConditionCheck`` is charged as a write). 12 before the user's counters
(``GET /me/usage``, issue 10) joined the reply's transaction, 14 before the head's check."""
SEND_READ_UNITS = (1.0, 9.0, 9.0)
"""The thread query: the head and up to ``CONTEXT_MAX_MESSAGES`` (100) messages of 400
characters, one unit per 4 KB, at 10, 200 and 10,000 stored messages."""


def test_a_page_of_messages_is_one_request_at_any_length(table: str) -> None:
    for length in (10, 10_000):
        user = f"pager-{length}"
        sid, chat = new_conversation(user)
        seed_history(seed_client(), table, user, sid, chat, length, "test-model")
        for order in ("asc", "desc"):
            meter = service_meter()
            pages = [invoke("list_messages", user=user, session=sid, chat=chat, query={"limit": "50", "order": order})]
            if pages[0].body["nextCursor"]:
                query = {"limit": "50", "order": order, "cursor": pages[0].body["nextCursor"]}
                pages.append(invoke("list_messages", user=user, session=sid, chat=chat, query=query))
            reading = meter.take()
            meter.detach()
            seqs = [m["seq"] for page in pages for m in page.body["items"]]
            expected = list(range(1, 101)) if order == "asc" else list(range(length, length - 100, -1))
            assert seqs == expected[: min(100, length)]
            assert reading.operations == ["Query"] * len(pages)


# Imports each handler module named on the command line, in order, and prints which of them
# imported ``openai``. After a module that did, everything its import added is forgotten, so the
# next module is imported as in a process that never saw ``openai``; extension modules are kept
# (some cannot be initialised twice in one process; none imports ``openai``). After a module that
# did not, what it added stays: none of it imports ``openai``, so keeping it hides nothing.
_IMPORT_PROBE = """
import importlib, json, sys
found = {}
for module in sys.argv[1:]:
    before = set(sys.modules)
    importlib.import_module(module)
    found[module] = "openai" in sys.modules
    if found[module]:
        for name in set(sys.modules) - before:
            if str(getattr(sys.modules[name], "__file__", None) or "").endswith(".py"):
                del sys.modules[name]
        assert "openai" not in sys.modules, sorted(sys.modules)
print(json.dumps(found))
"""


def test_only_model_calling_handlers_import_openai() -> None:
    """One interpreter for all the handlers (a fresh one each cost about a second of CPU)."""
    modules = sorted({route.module for route in routes()})
    assert set(modules) >= MODEL_CALLERS | {"get_message", "cancel_message", "list_messages"}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "common" / "python"), str(ROOT / "functions")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, *modules],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tempfile.gettempdir(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found: dict[str, bool] = json.loads(done.stdout)
    assert sorted(found) == modules
    assert set(found.values()) == {True, False}, found
    assert {module for module, flag in found.items() if flag} == MODEL_CALLERS


def test_a_fork_and_an_edit_cost_the_same_at_message_10_and_at_message_10000(table: str, local_model: Any) -> None:
    """History is shared, not copied: a fork at seq 10 and at seq 10,000 sends the same requests
    with the same bytes but for the digits of ``uptoSeq`` (in the lineage, the pin and
    ``forkedFrom``) and consumes the same capacity units; so does an edit of the message before,
    and a send in the fork (its window reads the fork's own range and its source's)."""
    import boto3

    from benchmarks.capacity import CapacityEstimator, Estimate
    from chat_sessions import store

    readings: dict[int, dict[str, tuple[Reading, Estimate]]] = {}
    for length in (10, 10_000):
        user = f"brancher-{length:05d}"  # the same length: the user id is in every key
        sid, chat = new_conversation(user)
        seed_history(seed_client(), table, user, sid, chat, length, "test-model")
        question = text(length - 1)
        listed = invoke("list_messages", user=user, session=sid, chat=chat, query={"limit": "1", "order": "desc"})
        assert listed.body["items"][0]["seq"] == length
        stored_question = store.get_store().messages.get(user, sid, chat, length - 1)
        assert stored_question is not None and stored_question.content == question
        runs: dict[str, tuple[Reading, Estimate]] = {}
        cases: list[tuple[str, str, dict[str, Any]]] = [
            ("fork", "fork_chat", {"chat": chat, "body": {"uptoSeq": length}}),
            ("edit", "edit_message", {"chat": chat, "message": stored_question.message_id, "body": {"content": "y"}}),
        ]
        for label, module, kwargs in cases:
            meter = service_meter()
            units = CapacityEstimator(boto3.client("dynamodb")).attach(store.dynamodb_client())
            # moto copies the whole table for each transaction (seconds at 10,000 items): the
            # model's deadline must not count that against the edit, as DynamoDB would not take it.
            done = invoke(module, user=user, session=sid, context=LambdaContext(remaining_millis=600_000), **kwargs)
            runs[label] = (meter.take(), units.take())
            meter.detach()
            units.detach()
            assert done.status == 201, done.body
        readings[length] = runs

    for label in ("fork", "edit"):
        (short, short_units), (long, long_units) = readings[10][label], readings[10_000][label]
        assert short.operations == long.operations, label
        assert short.requests == long.requests == len(EXPECTED["fork_chat" if label == "fork" else "edit_message"])
        # Only the numbers that name a seq grow, "10" to "10000" (3 digits): in a fork's chat,
        # head, base, pin and forkedFrom; in an edit also its message's seq and its reply's (5).
        # An edit's reply also repeats its prompt tokens (which grow with the window, not the
        # chat) in the user's counters, ever and this month (4 more numbers of a digit more).
        places = 5 if label == "fork" else 11
        growth_allowed = 3 * places + (0 if label == "fork" else 4)
        growth = long.request_bytes - short.request_bytes
        assert 0 <= growth <= growth_allowed, (label, short.request_bytes, long.request_bytes)
        assert short_units.write_units == long_units.write_units, label
        if label == "fork":
            assert short_units.read_units == long_units.read_units
        else:  # the send's window: 10 messages against a full one (CONTEXT_MAX_MESSAGES), as a send's
            window = SEND_READ_UNITS[2] - SEND_READ_UNITS[0]
            assert long_units.read_units - short_units.read_units == window, (short_units, long_units)
