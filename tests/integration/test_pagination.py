"""Listing many sessions a page at a time through the HTTP API, and cursors that must fail."""

from __future__ import annotations

from tests.integration.conftest import client, error_code, new_user, ok

SESSIONS = 45
LIMIT = 7


def test_paging_returns_every_session_once_newest_first(stack: str) -> None:
    user = new_user("pager")
    with client(stack, user) as http:
        created = [ok(http.post("/sessions", json={"name": f"s{i}"}), 201)["sessionId"] for i in range(SESSIONS)]
        seen: list[str] = []
        pages = 0
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": LIMIT, **({"cursor": cursor} if cursor else {})}
            page = ok(http.get("/sessions", params=params))
            pages += 1
            seen.extend(s["sessionId"] for s in page["items"])
            cursor = page["nextCursor"]
            if cursor is None:
                break
            assert len(page["items"]) == LIMIT  # a page with a cursor after it is never short
        assert pages == -(-SESSIONS // LIMIT)
        assert seen == list(reversed(created))
        assert [s["name"] for s in ok(http.get("/sessions", params={"limit": 2}))["items"]] == [
            f"s{SESSIONS - 1}",
            f"s{SESSIONS - 2}",
        ]


def test_bad_cursors_and_limits_are_400(stack: str) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    with client(stack, alice) as a:
        for i in range(3):
            ok(a.post("/sessions", json={"name": f"a{i}"}), 201)
        alices_cursor = ok(a.get("/sessions", params={"limit": 1}))["nextCursor"]
        assert isinstance(alices_cursor, str)
        for cursor in ["garbage", "eyJrIjoiU0VTU0lPTiMxIn0", alices_cursor[:-3], "x" * 2000]:
            assert error_code(a.get("/sessions", params={"cursor": cursor}), 400) == "validation_error", cursor
        for limit in ["0", "101", "-1", "ten"]:
            assert error_code(a.get("/sessions", params={"limit": limit}), 400) == "validation_error", limit
    with client(stack, bob) as b:
        ok(b.post("/sessions", json={"name": "b"}), 201)
        response = b.get("/sessions", params={"cursor": alices_cursor})
        assert error_code(response, 400) == "validation_error"
