"""Branches (issue 11): forks share their source's history, edits fork before a message.

Through the handlers, against moto and the real ``openai`` client on a scripted upstream.
"""

from __future__ import annotations

from typing import Any

import pytest

from chat_sessions import keys
from chat_sessions.services.branches import MAX_FORK_DEPTH
from chat_sessions.services.cleanup import purge_children
from chat_sessions.store import get_store
from tests.support import invoke, table_items
from tests.upstream import Reply, Upstream


def new_session() -> str:
    created = invoke("create_session", body={"name": "s"})
    assert created.status == 201
    return str(created.body["sessionId"])


def new_chat(sid: str, name: str = "c", system_prompt: str | None = None) -> str:
    body: dict[str, Any] = {"name": name, "model": "test-model"}
    if system_prompt:
        body["systemPrompt"] = system_prompt
    created = invoke("create_chat", session=sid, body=body)
    assert created.status == 201
    return str(created.body["chatId"])


def send(sid: str, chat: str, content: str) -> dict[str, Any]:
    sent = invoke("send_message", session=sid, chat=chat, body={"content": content})
    assert sent.status == 201, sent.body
    return dict(sent.body)


def fork(sid: str, chat: str, upto: int, **body: Any) -> dict[str, Any]:
    forked = invoke("fork_chat", session=sid, chat=chat, body={"uptoSeq": upto, **body})
    assert forked.status == 201, forked.body
    return dict(forked.body)


def listing(sid: str, chat: str, order: str = "asc", limit: int = 100) -> list[dict[str, Any]]:
    """Every message, following cursors; each page checked to be full but the last."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": str(limit), "order": order}
        if cursor:
            query["cursor"] = cursor
        page = invoke("list_messages", session=sid, chat=chat, query=query)
        assert page.status == 200, page.body
        items.extend(page.body["items"])
        cursor = page.body["nextCursor"]
        if not cursor:
            return items
        assert len(page.body["items"]) == limit, "a page stopped short"


def conversation(sid: str, chat: str, exchanges: int, prefix: str = "q") -> None:
    for n in range(exchanges):
        send(sid, chat, f"{prefix}{n}")


def contents(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in messages]


@pytest.fixture(autouse=True)
def replies(model: Upstream) -> Upstream:
    model.default = Reply(content="an answer")
    return model


def test_a_fork_shares_the_history_up_to_its_seq_and_becomes_active(table: str, model: Upstream) -> None:
    sid = new_session()
    source = new_chat(sid, "source", system_prompt="be brief")
    conversation(sid, source, 3)  # seqs 1..6
    forked = fork(sid, source, 4)
    assert forked["forkedFrom"] == {"chatId": source, "seq": 4}
    assert (forked["active"], forked["name"], forked["systemPrompt"]) == (True, "source (fork)", "be brief")
    assert invoke("get_session", session=sid).body["activeChatId"] == forked["chatId"]
    assert invoke("get_chat", session=sid, chat=source).body["active"] is False
    assert invoke("get_chat", session=sid, chat=forked["chatId"]).body["forkedFrom"] == forked["forkedFrom"]
    assert invoke("get_chat", session=sid, chat=source).body["forkedFrom"] is None

    shared = listing(sid, source)[:4]
    mine = listing(sid, forked["chatId"])
    assert [m["seq"] for m in mine] == [1, 2, 3, 4]
    assert mine == [{**m, "chatId": forked["chatId"]} for m in shared]

    sent = send(sid, forked["chatId"], "a new direction")
    assert (sent["userMessage"]["seq"], sent["assistantMessage"]["seq"]) == (5, 6)
    window = model.received[-1]["messages"]
    assert window[0] == {"role": "system", "content": "be brief"}
    assert [m["content"] for m in window[1:]] == ["q0", "an answer", "q1", "an answer", "a new direction"]
    assert [m["seq"] for m in listing(sid, forked["chatId"])] == [1, 2, 3, 4, 5, 6]
    assert len(listing(sid, source)) == 6, "the source is unchanged"


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
def test_a_fork_of_a_fork_lists_every_message_once_in_order_both_ways(table: str, limit: int) -> None:
    """Three chats' ranges in one history: cursors cross them both ways, never stopping short."""
    sid = new_session()
    source = new_chat(sid)
    conversation(sid, source, 3, "a")  # 1..6 in the source
    first = fork(sid, source, 5)["chatId"]
    conversation(sid, first, 2, "b")  # 6..9 in the first fork (seq 5 is the source's)
    second = fork(sid, first, 8)["chatId"]
    conversation(sid, second, 1, "c")  # 9..10 in the second fork
    expected = ["a0", "an answer", "a1", "an answer", "a2", "b0", "an answer", "b1", "c0", "an answer"]
    asc = listing(sid, second, "asc", limit)
    assert contents(asc) == expected
    assert [m["seq"] for m in asc] == list(range(1, 11))
    assert {m["chatId"] for m in asc} == {second}
    desc = listing(sid, second, "desc", limit)
    assert desc == list(reversed(asc))


def test_changing_or_deleting_the_source_changes_nothing_the_fork_shows(table: str, model: Upstream) -> None:
    sid = new_session()
    source = new_chat(sid)
    conversation(sid, source, 3)
    forked = fork(sid, source, 4)["chatId"]
    before = listing(sid, forked)
    assert invoke("activate_chat", session=sid, chat=source).status == 200
    send(sid, source, "more in the source")
    assert invoke("regenerate", session=sid, chat=source).status == 201
    assert invoke("update_chat", session=sid, chat=source, body={"name": "renamed", "systemPrompt": "x"}).status == 200
    assert invoke("pause_session", session=sid).status == 200
    assert invoke("resume_session", session=sid).status == 200
    assert invoke("delete_chat", session=sid, chat=source).status == 204
    assert listing(sid, forked) == before
    assert listing(sid, forked, "desc") == list(reversed(before))

    # The deleted source answers 404 however it is asked for, its kept messages notwithstanding.
    for order in ("asc", "desc"):
        assert invoke("list_messages", session=sid, chat=source, query={"order": order}).status == 404
    assert invoke("get_chat", session=sid, chat=source).status == 404
    assert invoke("fork_chat", session=sid, chat=source, body={"uptoSeq": 1}).status == 404
    assert invoke("regenerate", session=sid, chat=source).status == 404

    # The stream consumer's purge of the removed chat keeps them too.
    chat_key = keys.chat_key("alice", sid, source)
    purge_children(get_store(), chat_key["PK"], chat_key["SK"])
    assert listing(sid, forked) == before

    assert invoke("activate_chat", session=sid, chat=forked).status == 200
    send(sid, forked, "still here")
    assert [m["content"] for m in model.received[-1]["messages"]][:4] == contents(before)


def test_deleting_the_session_leaves_no_item_behind(table: str) -> None:
    sid = new_session()
    source = new_chat(sid)
    conversation(sid, source, 2)
    forked = fork(sid, source, 3)["chatId"]
    fork(sid, forked, 2)
    assert invoke("delete_chat", session=sid, chat=source).status == 204
    assert invoke("delete_session", session=sid).status == 204
    left = [i for i in table_items(table) if sid in str(i["PK"]) + str(i["SK"])]
    assert left == []


def test_deleting_a_fork_and_then_its_source_keeps_what_other_forks_share(table: str) -> None:
    sid = new_session()
    source = new_chat(sid)
    conversation(sid, source, 3)
    kept = fork(sid, source, 2)["chatId"]
    gone = fork(sid, source, 6)["chatId"]
    assert invoke("delete_chat", session=sid, chat=gone).status == 204
    assert invoke("delete_chat", session=sid, chat=source).status == 204
    assert [m["seq"] for m in listing(sid, kept)] == [1, 2]
    assert invoke("list_messages", session=sid, chat=gone).status == 404
    # The source's messages after the highest seq a fork shared were purged.
    stored = [i for i in table_items(table) if i.get("type") == "message" and i["chatId"] == source]
    assert sorted(int(i["seq"]) for i in stored) == list(range(1, 7))  # 6: the deleted fork's pin


def test_forks_of_forks_up_to_the_maximum_depth_then_fork_too_deep(table: str) -> None:
    sid = new_session()
    chat = new_chat(sid)
    send(sid, chat, "root")
    for depth in range(1, MAX_FORK_DEPTH + 1):
        chat = fork(sid, chat, 2 * depth)["chatId"]
        send(sid, chat, f"depth {depth}")
    history = listing(sid, chat)
    assert [m["seq"] for m in history] == list(range(1, 2 * MAX_FORK_DEPTH + 3))
    # Pages of 3 cross all nine ranges both ways, their cursors carrying the whole lineage.
    assert listing(sid, chat, "asc", 3) == history
    assert listing(sid, chat, "desc", 3) == list(reversed(history))
    too_deep = invoke("fork_chat", session=sid, chat=chat, body={"uptoSeq": len(history)})
    assert too_deep.status == 409 and too_deep.body["error"]["code"] == "fork_too_deep"
    # Forking at a seq an ancestor holds spans fewer chats, and works.
    assert fork(sid, chat, 3)["forkedFrom"]["seq"] == 3


@pytest.mark.parametrize(
    "body",
    [{"uptoSeq": 5}, {"uptoSeq": -1}, {"uptoSeq": "1"}, {"uptoSeq": 10**12}, {}, {"uptoSeq": 1, "x": 1}],
    ids=["past-last", "negative", "string", "huge", "missing", "unknown-field"],
)
def test_fork_outside_the_history_is_a_validation_error(table: str, body: dict[str, Any]) -> None:
    sid = new_session()
    chat = new_chat(sid)
    conversation(sid, chat, 2)
    refused = invoke("fork_chat", session=sid, chat=chat, body=body)
    assert refused.status == 400 and refused.body["error"]["code"] == "validation_error"
    assert invoke("list_chats", session=sid).body["items"] == [invoke("get_chat", session=sid, chat=chat).body]


def test_fork_at_zero_and_at_the_last_seq(table: str) -> None:
    sid = new_session()
    chat = new_chat(sid)
    conversation(sid, chat, 1)
    empty = fork(sid, chat, 0)
    assert listing(sid, empty["chatId"]) == [] and empty["forkedFrom"] == {"chatId": chat, "seq": 0}
    whole = fork(sid, chat, 2)["chatId"]
    assert [m["seq"] for m in listing(sid, whole)] == [1, 2]
    missing = invoke("fork_chat", session=sid, chat="01JDQ3Z8N4V2K7M9XQ4W5T6Y7Z", body={"uptoSeq": 0})
    assert missing.status == 404
    assert invoke("fork_chat", user="bob", session=sid, chat=chat, body={"uptoSeq": 0}).status == 404


def test_a_fork_at_an_unanswered_question_answers_it_alone(table: str, model: Upstream) -> None:
    sid = new_session()
    source = new_chat(sid)
    send(sid, source, "first")
    model.script = [Reply(status=500)]
    assert invoke("send_message", session=sid, chat=source, body={"content": "lost"}).status == 502
    forked = fork(sid, source, 3)["chatId"]
    regenerated = invoke("regenerate", session=sid, chat=forked)
    assert regenerated.status == 201
    assert (regenerated.body["userMessage"]["seq"], regenerated.body["userMessage"]["status"]) == (3, "complete")
    assert [m["status"] for m in listing(sid, forked)] == ["complete", "complete", "complete", "complete"]
    assert listing(sid, source)[-1]["status"] == "unanswered", "the source's question is its own"
    assert invoke("get_chat", session=sid, chat=forked).body["messageCount"] == 2


def test_regenerate_in_a_fork_answers_a_shared_question_without_touching_the_source(
    table: str, model: Upstream
) -> None:
    sid = new_session()
    source = new_chat(sid)
    conversation(sid, source, 2)
    before = listing(sid, source)
    forked = fork(sid, source, 3)["chatId"]  # ends at the source's second question, answered there
    model.default = Reply(content="another answer")
    regenerated = invoke("regenerate", session=sid, chat=forked)
    assert regenerated.status == 201
    assert (regenerated.body["userMessage"]["seq"], regenerated.body["assistantMessage"]["seq"]) == (3, 4)
    assert contents(listing(sid, forked)) == ["q0", "an answer", "q1", "another answer"]
    assert listing(sid, source) == before


def test_edit_forks_before_the_message_and_sends_there(table: str, model: Upstream) -> None:
    sid = new_session()
    source = new_chat(sid)
    conversation(sid, source, 3)
    before = listing(sid, source)
    question = before[2]  # seq 3
    model.default = Reply(content="edited answer")
    edited = invoke("edit_message", session=sid, chat=source, message=question["messageId"], body={"content": "q1'"})
    assert edited.status == 201, edited.body
    chat = edited.body["chat"]
    assert chat["forkedFrom"] == {"chatId": source, "seq": 2} and chat["active"] is True
    assert chat["messageCount"] == 2
    assert (edited.body["userMessage"]["seq"], edited.body["userMessage"]["content"]) == (3, "q1'")
    assert edited.body["assistantMessage"]["content"] == "edited answer"
    assert contents(listing(sid, chat["chatId"])) == ["q0", "an answer", "q1'", "edited answer"]
    assert listing(sid, source) == before
    assert invoke("get_chat", session=sid, chat=chat["chatId"]).body == chat
    # Its own messages can be edited in turn, and so can a shared one.
    mine = listing(sid, chat["chatId"])
    again = invoke(
        "edit_message", session=sid, chat=chat["chatId"], message=mine[0]["messageId"], body={"content": "z"}
    )
    assert again.status == 201 and contents(listing(sid, again.body["chat"]["chatId"])) == ["z", "edited answer"]


def test_edit_refusals_leave_nothing_behind(table: str) -> None:
    sid = new_session()
    chat = new_chat(sid)
    conversation(sid, chat, 1)
    user, reply = listing(sid, chat)
    chats_before = invoke("list_chats", session=sid).body

    def edit(message: str, **kwargs: Any) -> Any:
        return invoke("edit_message", session=sid, chat=chat, message=message, body={"content": "x"}, **kwargs)

    assert edit(reply["messageId"]).status == 400
    assert edit(user["messageId"][:-1] + "9").status == 404  # names seq 9: no such message
    assert edit(user["messageId"][:-3] + "ZZZ").status == 404
    assert edit("not-an-id").status == 404
    assert edit(user["messageId"], user="bob").status == 404
    assert invoke("pause_session", session=sid).status == 200
    paused = edit(user["messageId"])
    assert paused.status == 409 and paused.body["error"]["code"] == "session_paused"
    assert invoke("list_chats", session=sid).body == {**chats_before}


def test_a_send_in_a_fork_reads_the_shared_history_in_a_bounded_number_of_queries(
    table: str, model: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window of a fork whose own messages do not fill it: one query for the fork's own
    range, one per chat of its lineage, newest first, and no more once the window is full."""
    from benchmarks.meter import DynamoMeter
    from chat_sessions import store

    monkeypatch.setenv("CONTEXT_MAX_MESSAGES", "3")
    from tests.support import reset_caches

    reset_caches()
    sid = new_session()
    source = new_chat(sid)
    conversation(sid, source, 3)
    first = fork(sid, source, 4)["chatId"]
    send(sid, first, "in the first fork")
    second = fork(sid, first, 6)["chatId"]
    meter = DynamoMeter().attach(store.dynamodb_client())
    send(sid, second, "in the second fork")
    reading = meter.take()
    meter.detach()
    # Own range (nothing of its own yet), the first fork's range (2 messages), the source's (1).
    assert reading.operations == ["Query", "Query", "Query", "TransactWriteItems", "TransactWriteItems"]
    assert [m["content"] for m in model.received[-1]["messages"]] == [
        "an answer",
        "in the first fork",
        "an answer",
        "in the second fork",
    ][-4:]


def test_an_archived_session_refuses_forks_and_edits(table: str) -> None:
    sid = new_session()
    chat = new_chat(sid)
    conversation(sid, chat, 1)
    question = listing(sid, chat)[0]
    assert invoke("archive_session", session=sid).status == 200
    chats_before = invoke("list_chats", session=sid).body
    forked = invoke("fork_chat", session=sid, chat=chat, body={"uptoSeq": 1})
    edited = invoke("edit_message", session=sid, chat=chat, message=question["messageId"], body={"content": "x"})
    for refused in (forked, edited):
        assert refused.status == 409 and refused.body["error"]["code"] == "session_archived", refused.body
    assert invoke("list_chats", session=sid).body == chats_before


def test_a_keyed_edit_repeated_answers_the_first_response_without_a_second_fork(table: str, model: Upstream) -> None:
    """The key's record keeps the fork as answered and the exchange by reference (a record with
    both messages' text and the fork's system prompt could pass DynamoDB's 400 KB item limit)."""
    sid = new_session()
    chat = new_chat(sid, system_prompt="p" * 32_000)
    big = "é" * 32_000
    send(sid, chat, big)
    question = listing(sid, chat)[0]
    headers = {"Idempotency-Key": "edit-once"}
    where: dict[str, Any] = {"session": sid, "chat": chat, "message": question["messageId"]}
    first = invoke("edit_message", **where, body={"content": big}, headers=headers)
    assert first.status == 201, first.body
    calls = model.calls
    again = invoke("edit_message", **where, body={"content": big}, headers=headers)
    assert (again.status, again.body) == (201, first.body)
    assert model.calls == calls
    assert len(invoke("list_chats", session=sid).body["items"]) == 2
