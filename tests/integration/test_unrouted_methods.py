"""A method no route has answers as API Gateway answers an unrouted request: 404, before the
authorizer, here with the contract's JSON error body (issue 16: TRACE was a 501 HTML page)."""

from __future__ import annotations

import pytest

from tests.integration.conftest import client, error_code, new_user, ok

METHODS = ["TRACE", "PROPFIND", "PUT", "CONNECTX"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("authenticated", [True, False], ids=["token", "no-token"])
def test_an_unrouted_method_is_404_with_the_error_body(stack: str, method: str, authenticated: bool) -> None:
    user = new_user("unrouted")
    with client(stack, user) as http:
        session = ok(http.post("/sessions", json={"name": "s"}), 201)
    with client(stack, user if authenticated else None) as http:
        for path in ("/sessions", f"/sessions/{session['sessionId']}", "/sessions/x/chats"):
            response = http.request(method, path, headers={"Content-Type": "application/json"}, content=b"{}")
            assert response.headers["content-type"].startswith("application/json"), response.text
            assert error_code(response, 404) == "not_found", (method, path)


def test_the_session_is_untouched_by_an_unrouted_method(stack: str) -> None:
    with client(stack, new_user("unrouted")) as http:
        session = ok(http.post("/sessions", json={"name": "s"}), 201)
        path = f"/sessions/{session['sessionId']}"
        assert http.request("PUT", path, json={"name": "changed"}).status_code == 404
        assert ok(http.get(path))["name"] == "s"
