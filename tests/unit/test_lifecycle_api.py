"""Archive and unarchive through the real handlers and store, on moto (tables from template.yaml)."""

from __future__ import annotations

from typing import Any

import pytest

from chat_sessions import keys
from tests.support import invoke, reset_caches, table_items
from tests.upstream import Upstream


def new_session(user: str = "alice") -> str:
    created = invoke("create_session", user=user, body={"name": "s"})
    assert created.status == 201, created
    return str(created.body["sessionId"])


def new_chat(sid: str, name: str = "c") -> str:
    created = invoke("create_chat", session=sid, body={"name": name, "model": "test-model"})
    assert created.status == 201, created
    return str(created.body["chatId"])


def quota(table: str, user: str = "alice") -> int:
    key = keys.quota_key(user)
    (item,) = [i for i in table_items(table) if i["PK"] == key["PK"] and i["SK"] == key["SK"]]
    return int(item["activeSessions"])


def code(result: Any) -> str:
    return str(result.body["error"]["code"])


def test_archive_frees_the_place_and_unarchive_answers_paused(table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_ACTIVE_SESSIONS", "1")
    reset_caches()
    sid = new_session()
    assert invoke("create_session", body={"name": "second"}).body["error"]["code"] == "session_limit_reached"
    archived = invoke("archive_session", session=sid)
    assert archived.status == 200 and archived.body["status"] == "archived"
    assert quota(table) == 0
    assert invoke("get_session", session=sid).body == archived.body
    # archive again: no change, and no second place freed
    again = invoke("archive_session", session=sid)
    assert again.status == 200 and again.body == archived.body
    assert quota(table) == 0
    other = new_session()  # the place is free
    unarchived = invoke("unarchive_session", session=sid)
    assert unarchived.status == 200 and unarchived.body["status"] == "paused"
    assert quota(table) == 1
    # paused, it takes no place; resuming it is refused at the limit, as for any paused session
    assert code(invoke("resume_session", session=sid)) == "session_limit_reached"
    # unarchive of a session that is not archived answers it unchanged
    assert invoke("unarchive_session", session=other).body["status"] == "active"


def test_archive_of_a_paused_session_moves_no_counter(table: str) -> None:
    sid = new_session()
    invoke("pause_session", session=sid)
    assert quota(table) == 0
    assert invoke("archive_session", session=sid).body["status"] == "archived"
    assert quota(table) == 0
    assert invoke("unarchive_session", session=sid).body["status"] == "paused"
    assert invoke("resume_session", session=sid).body["status"] == "active"
    assert quota(table) == 1


def test_an_archived_session_is_read_only(table: str, model: Upstream) -> None:
    sid = new_session()
    chat = new_chat(sid)
    other = new_chat(sid, "other")  # now the active one
    invoke("activate_chat", session=sid, chat=chat)
    assert invoke("send_message", session=sid, chat=chat, body={"content": "hi"}).status == 201
    invoke("archive_session", session=sid)
    before = sorted(table_items(table), key=lambda i: (i["PK"], i["SK"]))

    refused = {
        "send": invoke("send_message", session=sid, chat=chat, body={"content": "x"}),
        "send to active": invoke("send_to_active_chat", session=sid, body={"content": "x"}),
        "regenerate": invoke("regenerate", session=sid, chat=chat),
        "create chat": invoke("create_chat", session=sid, body={"name": "n"}),
        "activate chat": invoke("activate_chat", session=sid, chat=other),
        "rename chat": invoke("update_chat", session=sid, chat=chat, body={"name": "n"}),
        "change model": invoke("update_chat", session=sid, chat=chat, body={"model": "m2"}),
        "delete chat": invoke("delete_chat", session=sid, chat=other),
        "rename session": invoke("update_session", session=sid, body={"name": "n"}),
        "pause": invoke("pause_session", session=sid),
        "resume": invoke("resume_session", session=sid),
    }
    assert {name: (r.status, code(r)) for name, r in refused.items()} == {
        name: (409, "session_archived") for name in refused
    }
    assert sorted(table_items(table), key=lambda i: (i["PK"], i["SK"])) == before

    # reads work
    assert invoke("get_session", session=sid).status == 200
    assert invoke("list_chats", session=sid).status == 200
    assert invoke("get_chat", session=sid, chat=chat).status == 200
    assert len(invoke("list_messages", session=sid, chat=chat).body["items"]) == 2
    # unarchived, it is paused: writes to chats work again, sends need a resume
    invoke("unarchive_session", session=sid)
    assert invoke("update_chat", session=sid, chat=chat, body={"name": "n"}).status == 200
    assert code(invoke("send_message", session=sid, chat=chat, body={"content": "x"})) == "session_paused"


def test_an_archived_session_can_be_deleted(table: str) -> None:
    sid = new_session()
    new_chat(sid)
    invoke("archive_session", session=sid)
    assert invoke("delete_session", session=sid).status == 204
    assert invoke("get_session", session=sid).status == 404
    assert quota(table) == 0
    assert [i for i in table_items(table) if str(i["PK"]).startswith(keys.session_partition("alice", sid))] == []


def test_archive_of_another_users_session_is_not_found(table: str) -> None:
    sid = new_session("bob")
    assert invoke("archive_session", session=sid).status == 404
    assert invoke("unarchive_session", session=sid).status == 404
    assert invoke("archive_session", session="not-an-id").status == 404


def listed(query: dict[str, str], user: str = "alice") -> tuple[list[list[str]], list[str]]:
    """Every page of a listing followed to its end: the pages' ids, and their statuses."""
    pages: list[list[str]] = []
    statuses: list[str] = []
    cursor = None
    while True:
        page = invoke("list_sessions", user=user, query=query | ({"cursor": cursor} if cursor else {}))
        assert page.status == 200, page
        pages.append([s["sessionId"] for s in page.body["items"]])
        statuses += [s["status"] for s in page.body["items"]]
        cursor = page.body["nextCursor"]
        if cursor is None:
            return pages, statuses


def test_listing_by_status_never_stops_short(table: str) -> None:
    """Statuses interleaved (one archived between each two sessions listed, and runs of them):
    every page of a filtered listing is full but the last, and the default listing leaves the
    archived ones out, whatever lies between."""
    made: dict[str, list[str]] = {"active": [], "paused": [], "archived": []}
    pattern = ["active", "archived", "paused", "archived", "archived", "active", "archived", "paused"] * 3
    for status in pattern:
        sid = new_session()
        if status == "paused":
            invoke("pause_session", session=sid)
        elif status == "archived":
            invoke("archive_session", session=sid)
        made[status].append(sid)
    for status, ids in made.items():
        pages, statuses = listed({"status": status, "limit": "2"})
        assert [sid for page in pages for sid in page] == list(reversed(ids))
        assert all(len(page) == 2 for page in pages[:-1]) and statuses == [status] * len(ids)
    live = [sid for sid in made["active"] + made["paused"]]
    pages, statuses = listed({"limit": "3"})
    assert [sid for page in pages for sid in page] == sorted(live, reverse=True)
    assert all(len(page) == 3 for page in pages[:-1]) and "archived" not in statuses
    assert len(pages) == 4  # 10 sessions in pages of 3; no empty page after an exact multiple


def test_a_session_leaves_and_joins_status_listings_with_its_status(table: str) -> None:
    sid = new_session()
    assert listed({"status": "active"})[0] == [[sid]]
    invoke("archive_session", session=sid)
    assert listed({"status": "active"})[0] == [[]]
    assert listed({})[0] == [[]]
    assert listed({"status": "archived"})[0] == [[sid]]
    invoke("unarchive_session", session=sid)
    assert listed({"status": "archived"})[0] == [[]]
    assert listed({"status": "paused"})[0] == [[sid]] == listed({})[0]
    invoke("delete_session", session=sid)
    assert listed({"status": "paused"})[0] == [[]]


def test_a_cursor_belongs_to_its_status(table: str) -> None:
    for _ in range(3):
        invoke("archive_session", session=new_session())
    cursor = invoke("list_sessions", query={"status": "archived", "limit": "1"}).body["nextCursor"]
    assert cursor
    for other in ({"status": "active"}, {}):
        refused = invoke("list_sessions", query=other | {"cursor": cursor})
        assert (refused.status, code(refused)) == (400, "validation_error")
    assert invoke("list_sessions", query={"status": "deleted"}).status == 400
    assert invoke("list_sessions", user="bob", query={"status": "archived"}).body["items"] == []


def test_a_cursor_whose_session_changed_status_continues_after_it(table: str) -> None:
    """The cursor names a place in the index, not an item: the session it was issued after
    may be archived (or deleted) meanwhile, and the listing continues after its place."""
    ids = [new_session() for _ in range(4)]
    first = invoke("list_sessions", query={"status": "active", "limit": "2"})
    assert [s["sessionId"] for s in first.body["items"]] == ids[:1:-1]
    invoke("archive_session", session=ids[2])
    rest = invoke("list_sessions", query={"status": "active", "limit": "2", "cursor": first.body["nextCursor"]})
    assert [s["sessionId"] for s in rest.body["items"]] == [ids[1], ids[0]]
    assert rest.body["nextCursor"] is None
