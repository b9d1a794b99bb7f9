"""Chats: the one-active-chat rule through create, activate and delete."""

from __future__ import annotations

from typing import Any

from tests.support import invoke


def new_session(user: str = "alice") -> str:
    return str(invoke("create_session", user=user, body={"name": "s"}).body["sessionId"])


def new_chat(sid: str, name: str, **extra: Any) -> dict[str, Any]:
    result = invoke("create_chat", session=sid, body={"name": name, **extra})
    assert result.status == 201, result
    body: dict[str, Any] = result.body
    return body


def active_state(sid: str) -> tuple[str | None, list[str]]:
    session = invoke("get_session", session=sid).body
    chats = invoke("list_chats", session=sid, query={"limit": "100"}).body["items"]
    return session["activeChatId"], [c["chatId"] for c in chats if c["active"]]


def test_new_chat_becomes_the_active_one(table: str) -> None:
    sid = new_session()
    debug = new_chat(sid, "Debug Session", systemPrompt="be brief")
    assert debug["active"] is True and debug["systemPrompt"] == "be brief" and debug["model"] == "gpt-4o-mini"
    assert active_state(sid) == (debug["chatId"], [debug["chatId"]])
    feature = new_chat(sid, "Feature Development", model="local-echo-1")
    assert active_state(sid) == (feature["chatId"], [feature["chatId"]])
    assert invoke("get_chat", session=sid, chat=debug["chatId"]).body["active"] is False
    assert invoke("get_session", session=sid).body["chatCount"] == 2


def test_activate_switches_and_is_idempotent(table: str) -> None:
    sid = new_session()
    a = new_chat(sid, "a")["chatId"]
    b = new_chat(sid, "b")["chatId"]
    switched = invoke("activate_chat", session=sid, chat=a)
    assert switched.status == 200 and switched.body["active"] is True and switched.body["chatId"] == a
    assert active_state(sid) == (a, [a])
    assert invoke("activate_chat", session=sid, chat=a).status == 200
    assert active_state(sid) == (a, [a])
    assert invoke("activate_chat", session=sid, chat=b).body["chatId"] == b
    assert active_state(sid) == (b, [b])


def test_deleting_the_active_chat_leaves_none(table: str) -> None:
    sid = new_session()
    a = new_chat(sid, "a")["chatId"]
    b = new_chat(sid, "b")["chatId"]
    assert invoke("delete_chat", session=sid, chat=a).status == 204
    assert active_state(sid) == (b, [b])
    assert invoke("delete_chat", session=sid, chat=b).status == 204
    assert active_state(sid) == (None, [])
    session = invoke("get_session", session=sid).body
    assert session["chatCount"] == 0
    assert invoke("get_chat", session=sid, chat=b).status == 404
    assert invoke("delete_chat", session=sid, chat=b).status == 404
    sent = invoke("send_to_active_chat", session=sid, body={"content": "hello?"})
    assert sent.status == 409 and sent.body["error"]["code"] == "no_active_chat"


def test_update_chat(table: str) -> None:
    sid = new_session()
    chat = new_chat(sid, "a", systemPrompt="old")
    updated = invoke("update_chat", session=sid, chat=chat["chatId"], body={"systemPrompt": "new", "model": "m-2"})
    assert updated.status == 200
    assert (updated.body["systemPrompt"], updated.body["model"], updated.body["name"]) == ("new", "m-2", "a")
    cleared = invoke("update_chat", session=sid, chat=chat["chatId"], body={"systemPrompt": None})
    assert cleared.body["systemPrompt"] is None
    bad = invoke("update_chat", session=sid, chat=chat["chatId"], body={"name": None})
    assert bad.status == 400


def test_chats_page_in_creation_order(table: str) -> None:
    sid = new_session()
    made = [new_chat(sid, f"c{i}")["chatId"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        page = invoke("list_chats", session=sid, query={"limit": "3"} | ({"cursor": cursor} if cursor else {}))
        seen += [c["chatId"] for c in page.body["items"]]
        cursor = page.body["nextCursor"]
        if cursor is None:
            break
    assert seen == made


def test_another_users_chat_is_not_found(table: str) -> None:
    sid = new_session("alice")
    chat = new_chat(sid, "private")["chatId"]
    for module in ("get_chat", "activate_chat", "delete_chat", "list_messages", "regenerate"):
        result = invoke(module, user="bob", session=sid, chat=chat)
        assert result.status == 404, module
        assert result.body["error"]["code"] == "not_found"
    assert invoke("get_chat", session=sid, chat=chat).status == 200


def test_empty_patch_changes_nothing(table: str) -> None:
    sid = new_session()
    chat = new_chat(sid, "a")
    session = invoke("get_session", session=sid).body
    assert invoke("update_session", session=sid, body={}).body == session
    assert invoke("update_chat", session=sid, chat=chat["chatId"], body={}).body == chat
    assert invoke("update_chat", session=sid, chat="01" + "A" * 24, body={}).status == 404
