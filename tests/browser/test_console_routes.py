"""The local stack's console routes (``local_stack/console.py``) through the gateway, no browser:
the static files at ``/`` and the token minted for a user name at ``POST /local/token``."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest

from local_stack.gateway import FunctionConfig, Gateway, HttpRequest, HttpResponse, authorize
from local_stack.template import Route

SECRET = "console-test-secret-of-32-bytes!"


def never_invoked(route: Route, function: FunctionConfig, event: dict[str, Any]) -> Any:
    raise AssertionError("a console route reached a function")


def request(method: str, target: str, body: bytes = b"") -> HttpResponse:
    gateway = Gateway([], {}, never_invoked, secret=SECRET)
    return gateway.handle(HttpRequest(method, target, [("Host", "127.0.0.1")], body))


def header(response: HttpResponse, name: str) -> str:
    return next(value for key, value in response.headers if key.lower() == name.lower())


def test_a_token_is_minted_for_a_user_name_and_the_authorizer_accepts_it() -> None:
    response = request("POST", "/local/token", json.dumps({"user": "  alice  "}).encode())
    assert response.status == 200, response.body
    body = json.loads(response.body)
    assert body["user"] == "alice" and body["expiresIn"] == 3600
    assert authorize(f"Bearer {body['token']}", SECRET)["sub"] == "alice"
    claims = jwt.decode(body["token"], SECRET, algorithms=["HS256"])
    assert abs(claims["exp"] - (time.time() + 3600)) < 60


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[]",
        b'"alice"',
        b"{}",
        b'{"user": ""}',
        b'{"user": "   "}',
        b'{"user": 7}',
        json.dumps({"user": "x" * 129}).encode(),
        json.dumps({"user": "a\nb"}).encode(),
    ],
    ids=["empty", "not-json", "array", "string", "no-user", "blank", "spaces", "number", "too-long", "control"],
)
def test_a_token_request_without_a_usable_user_name_is_refused_in_words(body: bytes) -> None:
    response = request("POST", "/local/token", body)
    assert response.status == 400
    error = json.loads(response.body)["error"]
    assert error["code"] == "validation_error" and "user" in error["message"].lower()


def test_the_console_is_served_at_the_root_and_its_files_by_name() -> None:
    page = request("GET", "/")
    assert page.status == 200 and header(page, "Content-Type").startswith("text/html")
    assert b'<script type="module" src="./app.js">' in page.body
    for path, kind in [("/app.js", "text/javascript"), ("/api.js", "text/javascript"), ("/style.css", "text/css")]:
        response = request("GET", path)
        assert response.status == 200 and header(response, "Content-Type").startswith(kind), path
        assert len(response.body) > 500


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/local/token"),
        ("GET", "/../pyproject.toml"),
        ("GET", "/%2e%2e/pyproject.toml"),
        ("GET", "/web/index.html"),
        ("GET", "/nope.js"),
        ("POST", "/"),
        ("DELETE", "/app.js"),
    ],
)
def test_nothing_else_is_served_by_the_console(method: str, target: str) -> None:
    response = request(method, target)
    assert response.status == 404, response.body
    assert json.loads(response.body)["error"]["code"] == "not_found"
