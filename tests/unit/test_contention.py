"""DynamoDB fighting back, one kind of fault at a time, deterministically (issue 8, defects 1-4).

The handlers run against a moto server behind the project's fault injector
(:mod:`local_stack.faults`) with one fault kind at rate 1: every request of the kind it applies
to gets it. Each test names the defect it pins: the answer must be the contract's, never a
``500``, and the stored items must be exactly what the answer says. The fault tier
(``tests/faults``) runs the same injector at mixed rates against DynamoDB Local.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from local_stack.faults import FaultInjector, parse_spec
from tests.lambda_service import LambdaService
from tests.support import invoke, reset_caches, table_items
from tests.unit.conftest import GENERATOR
from tests.upstream import Upstream


@pytest.fixture
def injector(server_table: str, dynamodb_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultInjector]:
    """The injector in front of the moto server, passing everything until a test sets faults;
    services retry a lost race 3 times here instead of 30, to keep the tests short."""
    from chat_sessions.services import retry

    proxy = FaultInjector(dynamodb_endpoint, parse_spec("seed=1") or _never()).start()
    monkeypatch.setenv("DYNAMODB_ENDPOINT", proxy.url)
    monkeypatch.setattr(retry, "ATTEMPTS", 3)
    reset_caches()
    yield proxy
    proxy.shutdown()
    reset_caches()


def _never() -> Any:
    raise AssertionError("seed=1 is a valid spec")


def injected(proxy: FaultInjector, kind: str) -> int:
    return sum(proxy.snapshot()["faults"].get(kind, {}).values())


def faults(proxy: FaultInjector, spec: str) -> None:
    spec_parsed = parse_spec(spec)
    assert spec_parsed is not None
    proxy.spec = spec_parsed


def kinds(table: str, kind: str) -> list[dict[str, Any]]:
    return [i for i in table_items(table) if i.get("type") == kind]


def conversation() -> tuple[str, str, str]:
    sid = invoke("create_session", body={"name": "s"}).body["sessionId"]
    first = invoke("create_chat", session=sid, body={"name": "a"}).body["chatId"]
    second = invoke("create_chat", session=sid, body={"name": "b"}).body["chatId"]
    return sid, first, second


def test_reads_cancelled_by_collisions_answer_conflict_not_500(
    server_table: str, injector: FaultInjector, model: Upstream
) -> None:
    """Defect 1: a TransactGetItems cancelled with TransactionConflict reasons is retried, and
    contention that outlasts the retries is ``409 conflict`` (activate, delete chat)."""
    sid, first, _ = conversation()
    before = table_items(server_table)
    faults(injector, "seed=1,tx_conflict=1")
    for module in ("activate_chat", "delete_chat"):
        answer = invoke(module, session=sid, chat=first)
        assert (answer.status, answer.body["error"]["code"]) == (409, "conflict"), (module, answer)
    assert table_items(server_table) == before
    assert injected(injector, "tx_conflict") >= 6


def test_an_edit_whose_reads_collide_is_a_conflict_not_500(
    server_table: str, injector: FaultInjector, model: Upstream
) -> None:
    """Found by the fault tier: an edit's first read (session and chat, one TransactGetItems)
    cancelled as a collision answered 500; it is retried like every read, and contention that
    outlasts the retries is ``409 conflict`` with nothing stored."""
    sid, _, active = conversation()
    sent = invoke("send_message", session=sid, chat=active, body={"content": "q"})
    assert sent.status == 201, sent
    before = table_items(server_table)
    faults(injector, "seed=1,tx_conflict=1")
    where = {"session": sid, "chat": active, "message": sent.body["userMessage"]["messageId"]}
    answer = invoke("edit_message", **where, body={"content": "q, edited"})
    assert (answer.status, answer.body["error"]["code"]) == (409, "conflict"), answer
    assert table_items(server_table) == before
    assert injected(injector, "tx_conflict") >= 3
    faults(injector, "seed=1")
    edited = invoke("edit_message", **where, body={"content": "q, edited"})
    assert edited.status == 201, edited


def test_a_collision_on_the_quota_is_a_conflict_never_the_limit(
    server_table: str, injector: FaultInjector, model: Upstream
) -> None:
    """Defect 2: a TransactionConflict reason on the quota counter is a collision (409
    ``conflict``), not ``session_limit_reached``, for create and resume alike."""
    sid = invoke("create_session", body={"name": "s"}).body["sessionId"]
    assert invoke("pause_session", session=sid).status == 200
    faults(injector, "seed=1,tx_conflict=1")
    for answer in (invoke("create_session", body={"name": "t"}), invoke("resume_session", session=sid)):
        assert (answer.status, answer.body["error"]["code"]) == (409, "conflict"), answer
    faults(injector, "seed=1")
    assert [s["status"] for s in kinds(server_table, "session")] == ["paused"]
    assert invoke("resume_session", session=sid).status == 200


def test_a_single_write_refused_for_a_transaction_in_flight_is_a_conflict(
    server_table: str, injector: FaultInjector, model: Upstream
) -> None:
    """Defect 3: ``TransactionConflictException`` on a single write (a PATCH) is retried, then
    ``409 conflict``; the item is unchanged. (A chat's PATCH is a transaction since an archived
    session refuses it by a ``ConditionCheck``: its collisions are cancellations.)"""
    sid, first, _ = conversation()
    for spec, module in (("write_conflict", "update_session"), ("tx_conflict", "update_chat")):
        faults(injector, f"seed=1,{spec}=1")
        answer = invoke(module, session=sid, chat=first, body={"name": "renamed"})
        assert (answer.status, answer.body["error"]["code"]) == (409, "conflict"), (module, answer)
        assert injected(injector, spec) >= 3
    assert {i["name"] for i in kinds(server_table, "session") + kinds(server_table, "chat")} == {"s", "a", "b"}


def test_lost_answers_never_apply_a_write_twice(server_table: str, injector: FaultInjector, model: Upstream) -> None:
    """Defect 4: every transaction commits and its answer is lost; the SDK replays it with the
    same token and moto, which ignores tokens, refuses the replay. Each operation still answers
    success and is applied exactly once."""
    faults(injector, "seed=1,lost=1,tokens=backend")
    created = invoke("create_session", body={"name": "s"})
    assert created.status == 201, created
    sid = created.body["sessionId"]
    chat = invoke("create_chat", session=sid, body={"name": "a"})
    assert chat.status == 201, chat
    cid = chat.body["chatId"]
    sent = invoke("send_message", session=sid, chat=cid, body={"content": "once"})
    assert sent.status == 201, sent
    assert invoke("pause_session", session=sid).status == 200
    faults(injector, "seed=1")
    messages = sorted(kinds(server_table, "message"), key=lambda m: int(m["seq"]))
    assert [(int(m["seq"]), m["role"], m["status"]) for m in messages] == [
        (1, "user", "complete"),
        (2, "assistant", "complete"),
    ]
    assert [m["messageId"] for m in messages] == [
        sent.body["userMessage"]["messageId"],
        sent.body["assistantMessage"]["messageId"],
    ]
    (session,) = kinds(server_table, "session")
    (only_chat,) = kinds(server_table, "chat")
    assert (int(session["messageCount"]), int(only_chat["messageCount"]), int(session["chatCount"])) == (2, 2, 1)
    quota = [i for i in table_items(server_table) if i["SK"] == "QUOTA"]
    assert [int(q["activeSessions"]) for q in quota] == [0]
    assert model.calls == 1
    assert injected(injector, "lost") >= 5


@pytest.mark.parametrize(
    ("kind", "status", "code"), [("throttle", 429, "rate_limited"), ("server_error", 503, "unavailable")]
)
def test_throttling_and_unavailability_answer_with_retry_after(
    server_table: str, injector: FaultInjector, model: Upstream, kind: str, status: int, code: str
) -> None:
    """Throttling that outlasts the SDK's retries is ``429 rate_limited``, a DynamoDB that keeps
    answering 5xx is ``503 unavailable``; both with ``Retry-After``, on reads and writes."""
    sid, first, _ = conversation()
    before = table_items(server_table)
    faults(injector, f"seed=1,{kind}=1")
    for module, kwargs in (
        ("get_session", {"session": sid}),
        ("send_message", {"session": sid, "chat": first, "body": {"content": "hi"}}),
    ):
        answer = invoke(module, **kwargs)
        assert (answer.status, answer.body["error"]["code"]) == (status, code), (module, answer)
        assert answer.headers.get("Retry-After") == "1"
    faults(injector, "seed=1")
    assert table_items(server_table) == before


def test_a_keyed_repeat_of_a_write_committed_but_answered_503_answers_that_write(
    server_table: str, injector: FaultInjector, model: Upstream
) -> None:
    """A create or send commits, its answer is lost and the SDK's retries fail too, so the
    client gets ``503``; its repeat with the same ``Idempotency-Key`` answers what the first
    attempt stored (201, the same ids) instead of storing it again or meeting the quota it
    filled. A different request under that key is refused."""
    invoke("create_session", body={"name": "warm-up"})  # the user's quota counter exists
    key = {"Idempotency-Key": "k-session"}
    faults(injector, "seed=1,lost=1,lost_retries=1")
    failed = invoke("create_session", body={"name": "s"}, headers=key)
    assert (failed.status, failed.body["error"]["code"]) == (503, "unavailable"), failed
    faults(injector, "seed=1")
    with_limit = {"MAX_ACTIVE_SESSIONS": "2"}
    again = invoke_with_env(with_limit, "create_session", body={"name": "s"}, headers=key)
    assert again.status == 201, again
    sessions = [s for s in kinds(server_table, "session") if s["name"] == "s"]
    assert [s["sessionId"] for s in sessions] == [again.body["sessionId"]]
    other = invoke("create_session", body={"name": "other"}, headers=key)
    assert (other.status, other.body["error"]["code"]) == (422, "idempotency_key_reused")

    sid = again.body["sessionId"]
    chat_key = {"Idempotency-Key": "k-chat"}
    faults(injector, "seed=1,lost=1,lost_retries=1")
    assert invoke("create_chat", session=sid, body={"name": "c"}, headers=chat_key).status == 503
    faults(injector, "seed=1")
    chat = invoke("create_chat", session=sid, body={"name": "c"}, headers=chat_key)
    assert chat.status == 201, chat
    assert [c["chatId"] for c in kinds(server_table, "chat")] == [chat.body["chatId"]]

    send_key = {"Idempotency-Key": "k-send"}
    faults(injector, "seed=1,lost=1,lost_retries=1")
    assert (
        invoke("send_message", session=sid, chat=chat.body["chatId"], body={"content": "hi"}, headers=send_key).status
        == 503
    )
    faults(injector, "seed=1")
    sent = invoke("send_message", session=sid, chat=chat.body["chatId"], body={"content": "hi"}, headers=send_key)
    assert sent.status == 201, sent
    users = [m for m in kinds(server_table, "message") if m["role"] == "user"]
    assert [m["messageId"] for m in users] == [sent.body["userMessage"]["messageId"]]

    regenerate_key = {"Idempotency-Key": "k-regenerate"}
    faults(injector, "seed=1,lost=1,lost_retries=1")
    assert invoke("regenerate", session=sid, chat=chat.body["chatId"], headers=regenerate_key).status == 503
    faults(injector, "seed=1")
    calls = model.calls
    again_regenerated = invoke("regenerate", session=sid, chat=chat.body["chatId"], headers=regenerate_key)
    assert again_regenerated.status == 201, again_regenerated
    replies = sorted(int(m["seq"]) for m in kinds(server_table, "message") if m["role"] == "assistant")
    assert replies == [2, 3] and again_regenerated.body["assistantMessage"]["seq"] == 3
    assert model.calls == calls  # the repeat found the committed reply: no second model call


def invoke_with_env(env: dict[str, str], module: str, **kwargs: Any) -> Any:
    """``invoke`` with settings changed for one call (the cached settings re-read around it)."""
    import os

    from chat_sessions.config import get_settings

    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        return invoke(module, **kwargs)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


def idempotency_records(table: str, user: str = "alice") -> list[dict[str, Any]]:
    from chat_sessions import keys

    return [i for i in table_items(table) if i[keys.PK] == keys.idempotency_pk(user) and "status" in i]


def test_a_claim_whose_writes_fail_is_released_so_a_retry_runs(
    server_table: str, injector: FaultInjector, model: Upstream
) -> None:
    """The claim's ``PutItem`` commits and every answer to it is lost (the SDK's replays too):
    Powertools gives up, the client gets ``503``. Left behind, the claim would answer every
    retry ``409`` "still in progress" until it expired (the fault tier's CI failure); released,
    the retry with the same key runs and creates the session once."""
    key = {"Idempotency-Key": "k-claimed"}
    faults(injector, "seed=1,lost_write=1")
    failed = invoke("create_session", body={"name": "s"}, headers=key)
    assert (failed.status, failed.body["error"]["code"]) == (503, "unavailable"), failed
    assert injected(injector, "lost_write") >= 4  # the claim's 3 tries, then the release
    faults(injector, "seed=1")
    assert idempotency_records(server_table) == []
    retried = invoke("create_session", body={"name": "s"}, headers=key)
    assert retried.status == 201, retried
    assert invoke("create_session", body={"name": "s"}, headers=key).body == retried.body
    assert [s["sessionId"] for s in kinds(server_table, "session")] == [retried.body["sessionId"]]


@pytest.mark.parametrize(
    ("kind", "status", "code"), [("throttle", 429, "rate_limited"), ("server_error", 503, "unavailable")]
)
def test_a_keyed_request_whose_claim_fails_answers_429_or_503_not_500(
    server_table: str, injector: FaultInjector, kind: str, status: int, code: str
) -> None:
    """With a key, the first DynamoDB call is Powertools' claim (its PutItem), whose errors
    Powertools wraps in its own persistence error: the request still answers what the same
    error answers anywhere else (``429``/``503`` with ``Retry-After``), never ``500``, and stores
    nothing; the same key then runs once DynamoDB is back."""
    key = {"Idempotency-Key": f"k-{kind}"}
    faults(injector, f"seed=1,{kind}=1")
    failed = invoke("create_session", body={"name": "s"}, headers=key)
    assert (failed.status, failed.body["error"]["code"]) == (status, code), failed
    assert failed.headers.get("Retry-After") == "1"
    faults(injector, "seed=1")
    assert table_items(server_table) == []
    assert invoke("create_session", body={"name": "s"}, headers=key).status == 201


def test_a_release_leaves_another_requests_claim(server_table: str, injector: FaultInjector) -> None:
    """Request A holds the key while B, whose claim was refused, releases what it may have left
    (as it would after its claim's answers were lost). The owner condition keeps A's claim:
    without it, B would delete it and a third request would run the operation beside A."""
    from chat_sessions import idempotency, keys
    from chat_sessions.store import plain_dynamodb_client

    client = plain_dynamodb_client()
    released: list[bool] = []

    def first() -> dict[str, Any]:
        (claim,) = idempotency_records(server_table)
        key = {name: {"S": claim[name]} for name in (keys.PK, keys.SK)}
        held = client.get_item(TableName=server_table, Key=key, ConsistentRead=True)["Item"]
        other = idempotency._OwnedClaims(client, "request-b")
        with pytest.raises(client.exceptions.ConditionalCheckFailedException):
            other.put_item(
                TableName=server_table,
                Item=held,
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": keys.PK},
            )
        released.append(other.release())
        assert [r["status"] for r in idempotency_records(server_table)] == ["INPROGRESS"]
        return {"status": 200, "body": {}}

    assert idempotency.run_once("alice", "op", "k", {"n": 1}, first) == {"status": 200, "body": {}}
    assert released == [True]
    assert [r["status"] for r in idempotency_records(server_table)] == ["COMPLETED"]


def test_a_release_leaves_a_record_whose_completion_landed(server_table: str, injector: FaultInjector) -> None:
    """The operation ran; Powertools' update to COMPLETED commits and its answers are lost. The
    caller still gets the result, and the status condition keeps the completed record, so a
    repeat replays it instead of running the operation again."""
    from chat_sessions import idempotency

    runs: list[int] = []

    def operation() -> dict[str, Any]:
        runs.append(1)
        faults(injector, "seed=1,lost_write=1")
        return {"status": 201, "body": {"n": len(runs)}}

    assert idempotency.run_once("alice", "op", "k", {"n": 1}, operation) == {"status": 201, "body": {"n": 1}}
    faults(injector, "seed=1")
    assert [r["status"] for r in idempotency_records(server_table)] == ["COMPLETED"]
    assert idempotency.run_once("alice", "op", "k", {"n": 1}, operation) == {"status": 201, "body": {"n": 1}}
    assert runs == [1]


def test_an_erasure_whose_marker_write_collides_is_a_conflict_not_500(
    server_table: str, injector: FaultInjector, model: Upstream
) -> None:
    """Found by the fault tier (tests/faults/test_lifecycle_faults.py): ``DELETE /me`` whose one
    UpdateItem of the counters item was refused with ``TransactionConflictException`` (a
    session create's transaction in flight on that item) answered 500. It is retried, then
    ``409 conflict`` with nothing marked; a repeat once the collisions stop starts the erasure."""
    invoke("create_session", body={"name": "s"})
    before = table_items(server_table)
    faults(injector, "seed=1,write_conflict=1")
    answer = invoke("erase_me")
    assert (answer.status, answer.body["error"]["code"]) == (409, "conflict"), answer
    assert table_items(server_table) == before
    assert injected(injector, "write_conflict") >= 3
    faults(injector, "seed=1")
    assert invoke("erase_me").status == 202


@pytest.mark.usefixtures("lam")
def test_a_cancel_whose_transaction_collides_is_a_conflict_not_500(
    server_table: str, injector: FaultInjector, model: Upstream
) -> None:
    """Found by a fault-tier scenario of async replies: a cancel whose transaction was cancelled
    as a collision (the generation writing the same reply or head at that instant) answered 500.
    It is retried, then ``409 conflict`` with the reply still generating; once the collisions
    stop, the cancel lands."""
    from tests.unit.test_async_replies import ASYNC

    sid = invoke("create_session", body={"name": "s"}).body["sessionId"]
    chat = invoke("create_chat", session=sid, body={"name": "c", "model": "test-model"}).body["chatId"]
    sent = invoke("send_message", session=sid, chat=chat, body={"content": "q"}, headers=ASYNC)
    assert sent.status == 202, sent
    reply_id = sent.body["assistantMessage"]["messageId"]
    before = table_items(server_table)
    faults(injector, "seed=1,tx_conflict=1")
    answer = invoke("cancel_message", session=sid, chat=chat, message=reply_id)
    assert (answer.status, answer.body["error"]["code"]) == (409, "conflict"), answer
    assert table_items(server_table) == before
    assert injected(injector, "tx_conflict") >= 3
    faults(injector, "seed=1")
    answer = invoke("cancel_message", session=sid, chat=chat, message=reply_id)
    assert (answer.status, answer.body["status"]) == (200, "cancelled"), answer


def test_a_keyed_send_committed_but_answered_503_is_not_refused_as_new_while_a_reply_generates(
    server_table: str, injector: FaultInjector, model: Upstream, lam: LambdaService
) -> None:
    """Found by the fault tier's async-reply scenario: a keyed send whose first try stored its
    question but answered 503, repeated while another client's reply generated, was refused
    ``reply_in_progress`` as if it had stored nothing. The repeat is recognised first: it still
    answers ``409 reply_in_progress`` (answering now would put a second reply in flight), saying
    that its message is stored, and stores nothing again; once the other reply ends, the same
    key answers the stored question (201, the same message, no second copy)."""
    from tests.unit.test_async_replies import ASYNC, generate

    sid = invoke("create_session", body={"name": "s"}).body["sessionId"]
    chat = invoke("create_chat", session=sid, body={"name": "c", "model": "test-model"}).body["chatId"]
    key = {"Idempotency-Key": "k-send-while-generating"}
    faults(injector, "seed=1,lost=1,lost_retries=1")
    first = invoke("send_message", session=sid, chat=chat, body={"content": "mine"}, headers=key)
    assert first.status == 503, first
    faults(injector, "seed=1")
    other = invoke("send_message", session=sid, chat=chat, body={"content": "theirs"}, headers=ASYNC)
    assert other.status == 202, other

    repeat = invoke("send_message", session=sid, chat=chat, body={"content": "mine"}, headers=key)
    assert (repeat.status, repeat.body["error"]["code"]) == (409, "reply_in_progress"), repeat
    assert "stored (seq 1)" in repeat.body["error"]["message"], repeat
    users = [m for m in kinds(server_table, "message") if m["role"] == "user"]
    assert sorted((int(m["seq"]), m["content"], m["status"]) for m in users) == [
        (1, "mine", "unanswered"),
        (2, "theirs", "unanswered"),
    ]

    assert generate(lam.events(GENERATOR)[0]) == "complete"
    answered = invoke("send_message", session=sid, chat=chat, body={"content": "mine"}, headers=key)
    assert answered.status == 201, answered
    assert (answered.body["userMessage"]["seq"], answered.body["userMessage"]["content"]) == (1, "mine")
    statuses = (answered.body["userMessage"]["status"], answered.body["assistantMessage"]["status"])
    assert statuses == ("complete", "complete")
    mine = [m for m in kinds(server_table, "message") if m["role"] == "user" and m["content"] == "mine"]
    assert [m["status"] for m in mine] == ["complete"]


def test_a_generation_whose_last_answer_is_lost_reports_complete_and_stores_once(
    server_table: str, injector: FaultInjector, model: Upstream, lam: LambdaService
) -> None:
    """The reply's last transaction commits and its answer is lost; the SDK's replay is refused
    (moto ignores the token, as DynamoDB would refuse a later attempt under a new one): the
    generation recognises its own reply, stored complete once, and says ``complete``, not
    ``stopped`` (which means cancelled or taken over)."""
    from tests.unit.test_async_replies import ASYNC, generate

    created = invoke("create_session", body={"name": "s"})
    sid = created.body["sessionId"]
    cid = invoke("create_chat", session=sid, body={"name": "a"}).body["chatId"]
    sent = invoke("send_message", session=sid, chat=cid, body={"content": "q"}, headers=ASYNC)
    assert sent.status == 202, sent
    (event,) = lam.events(GENERATOR)
    faults(injector, "seed=1,lost=1,tokens=backend")
    outcome = generate(event)
    faults(injector, "seed=1")
    assert injected(injector, "lost") >= 1
    assert outcome == "complete"
    messages = sorted(kinds(server_table, "message"), key=lambda m: int(m["seq"]))
    assert [(int(m["seq"]), m["role"], m["status"]) for m in messages] == [
        (1, "user", "complete"),
        (2, "assistant", "complete"),
    ]
    (session,) = kinds(server_table, "session")
    assert int(session["messageCount"]) == 2 and model.calls == 1
