"""DELETE /me through the real handlers and store, on moto: the request marks the user, the
``erase_user`` stream consumer erases them in bounded steps, each invoked by a record of the
marker's last write, as the table's stream would (:func:`drain`).

"Nothing left" is checked by reading the whole table: no item whose partition key is one of the
user's, and every other user's items exactly as they were.
"""

from __future__ import annotations

import copy
from typing import Any

import erase_user
import pytest

from benchmarks.meter import DynamoMeter
from chat_sessions import keys
from chat_sessions.services import erasure
from chat_sessions.store import get_store
from chat_sessions.store.erasure import ErasureStore
from tests.support import LambdaContext, invoke, load_event, table_items
from tests.upstream import Reply, Upstream

ZERO_USAGE = {"promptTokens": 0, "completionTokens": 0, "totalTokens": 0}


def owned_by(user: str, item: dict[str, Any]) -> bool:
    """Whether an item is in one of ``user``'s partitions (their own, a session's, idempotency)."""
    pk, own = str(item["PK"]), keys.user_pk(user)
    return pk == own or pk.startswith(own + "#")


def items_of(table: str, user: str) -> list[dict[str, Any]]:
    return sorted((i for i in table_items(table) if owned_by(user, i)), key=lambda i: (str(i["PK"]), str(i["SK"])))


def others(table: str, user: str) -> list[dict[str, Any]]:
    return sorted((i for i in table_items(table) if not owned_by(user, i)), key=lambda i: (str(i["PK"]), str(i["SK"])))


def marker_record(user: str) -> dict[str, Any] | None:
    """The stream record of the marker's last write (as the template's filter passes it), or
    None when there is no marker: what invokes the next step."""
    item = get_store().table.get(keys.quota_key(user))
    if item is None or keys.ERASING_SINCE not in item:
        return None
    record: dict[str, Any] = copy.deepcopy(load_event("erase_user")["Records"][0])
    image = {k: ({"N": str(v)} if isinstance(v, int) else {"S": str(v)}) for k, v in item.items()}
    record["dynamodb"]["Keys"] = {"PK": {"S": item["PK"]}, "SK": {"S": item["SK"]}}
    record["dynamodb"]["NewImage"] = image
    return record


def consume(*records: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = erase_user.lambda_handler({"Records": list(records)}, LambdaContext())
    return result


def drain(user: str, limit: int = 200) -> int:
    """Invoke the consumer with the marker's record until the marker is gone, as the stream
    would; returns how many steps that took."""
    for steps in range(limit):
        record = marker_record(user)
        if record is None:
            return steps
        assert consume(record) == {"batchItemFailures": []}
    raise AssertionError(f"the erasure did not finish in {limit} steps")


def populate(user: str, model: Upstream) -> list[str]:
    """Sessions in every status, chats, messages, a fork, keyed requests (idempotency records
    and markers): a bit of everything a user can own."""
    model.default = Reply(content="ok", prompt_tokens=3, completion_tokens=2)
    sids = []
    for n in range(3):
        created = invoke("create_session", user=user, body={"name": f"s{n}"}, headers={"Idempotency-Key": f"k{n}"})
        assert created.status == 201, created
        sid = created.body["sessionId"]
        sids.append(sid)
        chat = invoke("create_chat", user=user, session=sid, body={"name": "c"}).body["chatId"]
        for text in ("one", "two"):
            sent = invoke(
                "send_message",
                user=user,
                session=sid,
                chat=chat,
                body={"content": text},
                headers={"Idempotency-Key": f"{sid}{text}"},
            )
            assert sent.status == 201, sent
        fork = invoke("fork_chat", user=user, session=sid, chat=chat, body={"uptoSeq": 2})
        assert fork.status == 201, fork
    assert invoke("pause_session", user=user, session=sids[1]).status == 200
    assert invoke("archive_session", user=user, session=sids[2]).status == 200
    return sids


def test_delete_me_erases_every_item_of_the_caller_and_nothing_else(table: str, model: Upstream) -> None:
    populate("alice", model)
    populate("bob", model)
    bob_before = others(table, "alice")
    assert len(items_of(table, "alice")) > 30

    answered = invoke("erase_me")
    assert (answered.status, answered.body) == (202, {"status": "erasing"})
    assert drain("alice") >= 1

    assert items_of(table, "alice") == []
    assert others(table, "alice") == bob_before
    assert invoke("list_sessions").body["items"] == []
    for status in ("active", "paused", "archived"):
        assert invoke("list_sessions", query={"status": status}).body["items"] == []
    usage = invoke("get_usage").body
    assert usage["sessions"] == {"active": 0, "paused": 0, "archived": 0}
    assert (usage["chats"], usage["messages"], usage["usage"], usage["periodUsage"]) == (0, 0, ZERO_USAGE, ZERO_USAGE)


def test_steps_are_bounded_and_hand_over(table: str, model: Upstream) -> None:
    """With 10 items a step, each step deletes at most 10 and the chain still ends with nothing."""
    populate("alice", model)
    total = len(items_of(table, "alice"))
    invoke("erase_me")
    store = get_store()
    steps, deleted = 0, 0
    while (step := erasure.erase_step(store, "alice", items=10)).done is False:
        assert step.deleted <= 10
        deleted += step.deleted
        steps += 1
    deleted += step.deleted
    assert steps >= total // 10
    assert items_of(table, "alice") == []
    assert deleted == total - 1  # everything but the counters item, which the last step deletes


def test_a_step_sends_a_bounded_number_of_requests(table: str, model: Upstream) -> None:
    """The default step (500 items): at most 20 BatchWriteItem requests, and a handful of others."""
    populate("alice", model)
    invoke("erase_me")
    meter = DynamoMeter().attach(get_store().table.client)
    meter.reset()
    erasure.erase_step(get_store(), "alice")
    operations = meter.take().operations
    assert operations.count("BatchWriteItem") <= erasure.STEP_ITEMS // 25
    assert operations[0] == "GetItem" and operations[-1] == "DeleteItem"  # the marker read, then deleted
    assert len(operations) < 30


def test_a_repeat_answers_202_and_does_no_harm(table: str, model: Upstream) -> None:
    populate("alice", model)
    assert invoke("erase_me").status == 202
    erasure.erase_step(get_store(), "alice", items=5)  # part way
    again = invoke("erase_me")
    assert (again.status, again.body) == (202, {"status": "erasing"})
    drain("alice")
    assert items_of(table, "alice") == []
    done = invoke("erase_me")  # after the end: a new erasure of nothing, which ends at once
    assert done.status == 202
    assert drain("alice") == 1 and items_of(table, "alice") == []


def test_erasing_a_user_with_nothing(table: str) -> None:
    assert invoke("erase_me", user="nobody").status == 202
    assert drain("nobody") == 1
    assert items_of(table, "nobody") == []


def test_creates_are_refused_while_erasing_and_accepted_after(table: str, model: Upstream) -> None:
    populate("alice", model)
    invoke("erase_me")
    refused = invoke("create_session", body={"name": "x"})
    assert (refused.status, refused.body["error"]["code"]) == (409, "erasure_in_progress")
    assert int(refused.headers["Retry-After"]) > 0
    keyed = invoke("create_session", body={"name": "x"}, headers={"Idempotency-Key": "during"})
    assert keyed.status == 409
    drain("alice")
    assert items_of(table, "alice") == []
    created = invoke("create_session", body={"name": "after"})
    assert created.status == 201
    assert [s["sessionId"] for s in invoke("list_sessions").body["items"]] == [created.body["sessionId"]]
    assert invoke("get_usage").body["sessions"]["active"] == 1


def test_the_limit_is_still_told_apart_from_an_erasure(table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support import reset_caches

    monkeypatch.setenv("MAX_ACTIVE_SESSIONS", "1")
    reset_caches()
    assert invoke("create_session", body={"name": "a"}).status == 201
    full = invoke("create_session", body={"name": "b"})
    assert (full.status, full.body["error"]["code"]) == (409, "session_limit_reached")


def test_writes_in_a_session_being_erased_land_nowhere(table: str, model: Upstream) -> None:
    """Once a step has taken a session (its item deleted), sends and chat creates there are
    refused (404) and leave nothing for the rest of the erasure to miss."""
    sid = populate("alice", model)[0]
    chat = invoke("list_chats", session=sid).body["items"][0]["chatId"]
    invoke("erase_me")
    store = get_store()
    while (marker := ErasureStore(store.table).marker("alice")) is not None and marker.erasing_session != sid:
        erasure.erase_step(store, "alice", items=1)
    assert marker is not None and marker.erasing_session == sid
    assert invoke("send_message", session=sid, chat=chat, body={"content": "late"}).status == 404
    assert invoke("create_chat", session=sid, body={"name": "late"}).status == 404
    drain("alice")
    assert items_of(table, "alice") == []


def test_the_consumer_steps_once_per_user_and_ignores_other_records(table: str, model: Upstream) -> None:
    populate("alice", model)
    invoke("erase_me")
    record = marker_record("alice")
    assert record is not None
    other = copy.deepcopy(record)
    other["dynamodb"]["Keys"]["SK"] = {"S": "SESSION#01JDQ3Z8N4V2K7M9XQ4W5T6Y7Z"}
    meter = DynamoMeter().attach(get_store().table.client)
    meter.reset()
    assert consume(record, other, copy.deepcopy(record)) == {"batchItemFailures": []}
    assert meter.take().operations.count("GetItem") == 1  # one step: one read of the marker
    drain("alice")
    assert items_of(table, "alice") == []


def test_user_of_pk_inverts_user_pk() -> None:
    for user in ("alice", "a#b", "50%", "%23", "a%2523#", "ü"):
        assert keys.user_of_pk(keys.user_pk(user)) == user
    assert keys.user_of_pk("USER#a#SESSION#x") is None
    assert keys.user_of_pk("USER#a%2") is None
    assert keys.user_of_pk("CONN#x") is None


def test_a_keyed_request_whose_record_was_erased_does_not_write_it_back(table: str) -> None:
    """Powertools completes its record with an UpdateItem; if the erasure deleted the claim
    while the request ran, the record must not come back (it holds the response)."""
    from chat_sessions import idempotency

    def produce() -> dict[str, Any]:
        for item in table_items(table):  # the erasure's purge of the idempotency partition
            if str(item["PK"]) == keys.idempotency_pk("alice"):
                get_store().table.call("delete_item", TableName=table, Key={"PK": item["PK"], "SK": item["SK"]})
        return {"answer": 1}

    assert idempotency.run_once("alice", "op", "key-1", {"a": 1}, produce) == {"answer": 1}
    assert items_of(table, "alice") == []
    # an ordinary keyed request still completes its record, and a repeat replays it
    assert idempotency.run_once("alice", "op", "key-2", {"a": 1}, lambda: {"answer": 2}) == {"answer": 2}
    assert idempotency.run_once("alice", "op", "key-2", {"a": 1}, lambda: {"answer": 3}) == {"answer": 2}
