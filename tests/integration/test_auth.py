"""The gateway as API Gateway's JWT authorizer and router, and per-user isolation, over HTTP."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from local_stack.token import make_token
from tests.integration.conftest import all_pages, client, error_code, new_user, ok

SECRET = "local-dev-secret"


def _hs256(claims: dict[str, object], key: str = SECRET) -> str:
    return jwt.encode(claims, key, algorithm="HS256")


CASES = [
    "no header",
    "no scheme",
    "basic scheme",
    "bearer without token",
    "malformed token",
    "garbage token",
    "wrong secret",
    "expired",
    "no sub",
    "empty sub",
    "numeric sub",
    "alg none",
    "not yet valid",
]


def _bad_authorization(case: str) -> str | None:
    now = int(time.time())
    return {
        "no header": None,
        "no scheme": make_token("mallory"),
        "basic scheme": "Basic " + make_token("mallory"),
        "bearer without token": "Bearer",
        "malformed token": "Bearer not.a.jwt",
        "garbage token": "Bearer abc",
        "wrong secret": "Bearer " + make_token("mallory", key="some-other-secret"),
        "expired": "Bearer " + _hs256({"sub": "mallory", "exp": now - 5}),
        "no sub": "Bearer " + _hs256({"name": "mallory", "exp": now + 600}),
        "empty sub": "Bearer " + _hs256({"sub": "", "exp": now + 600}),
        "numeric sub": "Bearer " + _hs256({"sub": 42, "exp": now + 600}),
        "alg none": "Bearer " + jwt.encode({"sub": "mallory"}, key="", algorithm="none"),
        "not yet valid": "Bearer " + _hs256({"sub": "mallory", "nbf": now + 600}),
    }[case]


@pytest.mark.parametrize("case", CASES)
def test_bad_tokens_get_401_before_any_handler(stack: str, case: str) -> None:
    authorization = _bad_authorization(case)
    headers = {"Authorization": authorization} if authorization is not None else {}
    with httpx.Client(base_url=stack, timeout=30) as http:
        response = http.post("/sessions", json={"name": "should not exist"}, headers=headers)
        assert error_code(response, 401) == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
        assert error_code(http.get("/sessions", headers=headers), 401) == "unauthorized"
    # No handler ran: mallory has no session.
    with client(stack, "mallory") as http:
        assert [s["name"] for s in all_pages(http, "/sessions")] == []


def test_token_without_exp_is_accepted(stack: str) -> None:
    with client(stack, token=_hs256({"sub": new_user("noexp")})) as http:
        assert ok(http.get("/sessions")) == {"items": [], "nextCursor": None}


def test_unknown_route_and_wrong_method_are_404(stack: str) -> None:
    with client(stack, new_user()) as http:
        for method, path in [("GET", "/nope"), ("PUT", "/sessions"), ("GET", "/sessions/x/y/z"), ("POST", "/")]:
            assert error_code(http.request(method, path), 404) == "not_found", (method, path)
    with httpx.Client(base_url=stack, timeout=30) as anonymous:  # no route: 404 before the authorizer
        assert error_code(anonymous.get("/nope"), 404) == "not_found"


@pytest.mark.e2e(users=2)
def test_users_only_see_their_own_resources(stack: str) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    with client(stack, alice) as a:
        sid = ok(a.post("/sessions", json={"name": "private"}), 201)["sessionId"]
        cid = ok(a.post(f"/sessions/{sid}/chats", json={"name": "secret chat"}), 201)["chatId"]
        ok(a.post(f"/sessions/{sid}/messages", json={"content": "my secret"}), 201)
    with client(stack, bob) as b:
        probes = [
            ("GET", f"/sessions/{sid}", None),
            ("PATCH", f"/sessions/{sid}", {"name": "mine now"}),
            ("POST", f"/sessions/{sid}/pause", None),
            ("DELETE", f"/sessions/{sid}", None),
            ("GET", f"/sessions/{sid}/chats", None),
            ("POST", f"/sessions/{sid}/chats", {"name": "intruder"}),
            ("GET", f"/sessions/{sid}/chats/{cid}", None),
            ("POST", f"/sessions/{sid}/chats/{cid}/activate", None),
            ("GET", f"/sessions/{sid}/chats/{cid}/messages", None),
            ("POST", f"/sessions/{sid}/chats/{cid}/messages", {"content": "hi"}),
            ("POST", f"/sessions/{sid}/messages", {"content": "hi"}),
            ("POST", f"/sessions/{sid}/chats/{cid}/regenerate", None),
            ("DELETE", f"/sessions/{sid}/chats/{cid}", None),
        ]
        for method, path, body in probes:
            response = b.request(method, path, json=body)
            assert error_code(response, 404) == "not_found", (method, path, response.text)
        assert sid not in {s["sessionId"] for s in all_pages(b, "/sessions")}  # (a real bob may have his own)
    with client(stack, alice) as a:  # untouched
        session = ok(a.get(f"/sessions/{sid}"))
        assert [session[k] for k in ("name", "status", "chatCount", "messageCount")] == ["private", "active", 1, 2]
        messages = all_pages(a, f"/sessions/{sid}/chats/{cid}/messages")
        assert [(m["seq"], m["role"]) for m in messages] == [(1, "user"), (2, "assistant")]
        assert messages[0]["content"] == "my secret"
