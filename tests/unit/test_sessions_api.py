"""Sessions through the real handlers and store, on moto (tables from template.yaml)."""

from __future__ import annotations

import pytest

from tests.support import invoke, table_items


def create(name: str = "s", user: str = "alice", **extra: object) -> dict[str, object]:
    result = invoke("create_session", user=user, body={"name": name, **extra})
    assert result.status == 201, result
    body: dict[str, object] = result.body
    return body


def test_create_get_update(table: str) -> None:
    session = create("Debug", metadata={"team": "core"})
    assert session["status"] == "active"
    assert session["activeChatId"] is None
    assert session["chatCount"] == 0 and session["messageCount"] == 0
    assert session["usage"] == {"promptTokens": 0, "completionTokens": 0, "totalTokens": 0}
    assert str(session["createdAt"]).endswith("Z")

    got = invoke("get_session", session=str(session["sessionId"]))
    assert got.status == 200 and got.body == session

    patched = invoke("update_session", session=str(session["sessionId"]), body={"metadata": {"a": "b"}})
    assert patched.status == 200
    assert patched.body["metadata"] == {"a": "b"} and patched.body["name"] == "Debug"
    renamed = invoke("update_session", session=str(session["sessionId"]), body={"name": "Renamed"})
    assert renamed.body["name"] == "Renamed" and renamed.body["metadata"] == {"a": "b"}


def test_list_is_newest_first_and_pages_never_stop_short(table: str) -> None:
    made = [create(f"s{i}")["sessionId"] for i in range(9)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": "4"} | ({"cursor": cursor} if cursor else {})
        page = invoke("list_sessions", query=query)
        assert page.status == 200
        pages += 1
        seen += [s["sessionId"] for s in page.body["items"]]
        cursor = page.body["nextCursor"]
        if cursor is None:
            break
        assert len(page.body["items"]) == 4
    assert seen == list(reversed(made))
    assert pages == 3


def test_exact_multiple_of_the_page_size_has_no_empty_last_page(table: str) -> None:
    for i in range(4):
        create(f"s{i}")
    first = invoke("list_sessions", query={"limit": "2"})
    second = invoke("list_sessions", query={"limit": "2", "cursor": first.body["nextCursor"]})
    assert len(second.body["items"]) == 2
    assert second.body["nextCursor"] is None


def test_cursor_of_another_user_is_refused(table: str) -> None:
    for i in range(3):
        create(f"s{i}")
    page = invoke("list_sessions", query={"limit": "1"})
    stolen = invoke("list_sessions", user="bob", query={"limit": "1", "cursor": page.body["nextCursor"]})
    assert stolen.status == 400
    assert stolen.body["error"]["code"] == "validation_error"


def test_pause_resume_and_the_active_session_limit(table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support import reset_caches

    monkeypatch.setenv("MAX_ACTIVE_SESSIONS", "2")
    reset_caches()
    a = create("a")["sessionId"]
    create("b")
    over = invoke("create_session", body={"name": "c"})
    assert over.status == 409 and over.body["error"]["code"] == "session_limit_reached"

    paused = invoke("pause_session", session=str(a))
    assert paused.status == 200 and paused.body["status"] == "paused"
    again = invoke("pause_session", session=str(a))
    assert again.status == 200 and again.body["status"] == "paused"
    c = create("c")["sessionId"]  # the paused one freed a place

    refused = invoke("resume_session", session=str(a))
    assert refused.status == 409 and refused.body["error"]["code"] == "session_limit_reached"
    assert invoke("get_session", session=str(a)).body["status"] == "paused"

    assert invoke("delete_session", session=str(c)).status == 204
    resumed = invoke("resume_session", session=str(a))
    assert resumed.status == 200 and resumed.body["status"] == "active"
    # Other users have their own quota.
    assert invoke("create_session", user="bob", body={"name": "x"}).status == 201


def test_delete_removes_every_item_of_the_session(table: str, model: object) -> None:
    keep = create("keep")["sessionId"]
    sid = str(create("gone")["sessionId"])
    for n in range(3):
        chat = invoke("create_chat", session=sid, body={"name": f"c{n}"}).body["chatId"]
        for m in range(2):
            assert invoke("send_message", session=sid, chat=chat, body={"content": f"hi {m}"}).status == 201
    before = table_items(table)
    assert any(sid in str(i["PK"]) for i in before)
    assert invoke("delete_session", session=sid).status == 204
    after = table_items(table)
    assert not [i for i in after if sid in str(i["PK"]) or sid in str(i["SK"])]
    assert invoke("get_session", session=sid).status == 404
    assert invoke("get_session", session=str(keep)).status == 200
    assert invoke("delete_session", session=sid).status == 404


def test_delete_session_with_more_items_than_one_batch_or_page(table: str) -> None:
    sid = str(create("big")["sessionId"])
    for n in range(30):
        assert invoke("create_chat", session=sid, body={"name": f"c{n}"}).status == 201
    assert invoke("delete_session", session=sid).status == 204
    assert not [i for i in table_items(table) if sid in str(i["PK"])]


def test_user_id_comes_only_from_the_authorizer(table: str) -> None:
    sid = str(create("mine", user="alice")["sessionId"])
    # A header, query or body naming another user changes nothing.
    sneaky = invoke("get_session", user="bob", session=sid, headers={"x-user-id": "alice"}, query={"userId": "alice"})
    assert sneaky.status == 404
    assert sneaky.body == {"error": {"code": "not_found", "message": "Session not found."}}
    assert invoke("get_session", user=None, session=sid).status == 401
