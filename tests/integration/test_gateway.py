"""The gateway emulator itself: payload-v2 events, Lambda context, response translation, routing.

A function that echoes what it receives is added to (a copy of) template.yaml, and the gateway is
built from that template exactly as ``python -m local_stack`` builds it from the real one: so
these tests also show that a route added to the template is served with no other change.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from local_stack import template as cfn
from local_stack.gateway import Gateway, GatewayServer, PoolInvoker, Unauthorized, authorize, function_configs
from local_stack.token import make_token

SECRET = "gateway-test-secret"

ECHO = """
import base64, json

def lambda_handler(event, context):
    path = event["rawPath"]
    if path.endswith("/plain"):
        return "hello from a plain string"
    if path.endswith("/dict"):
        return {"plain": True}
    if path.endswith("/cookies"):
        return {"statusCode": 201, "headers": {"X-One": "1"}, "multiValueHeaders": {"X-Many": ["a", "b"]},
                "cookies": ["a=1; Path=/", "b=2"], "body": ""}
    if path.endswith("/binary"):
        return {"statusCode": 200, "headers": {"Content-Type": "application/octet-stream"},
                "isBase64Encoded": True, "body": base64.b64encode(bytes(range(256))).decode()}
    if path.endswith("/boom"):
        raise RuntimeError("boom")
    if path.endswith("/malformed"):
        return {"statusCode": "teapot"}
    seen = {
        "function_name": context.function_name,
        "aws_request_id": context.aws_request_id,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"event": event, "context": seen})}
"""


def _function(handler: str, code: Path, method: str, path: str, **props: Any) -> dict[str, Any]:
    events = {"Api": {"Type": "HttpApi", "Properties": {"ApiId": {"Ref": "HttpApi"}, "Method": method, "Path": path}}}
    return {
        "Type": "AWS::Serverless::Function",
        "Properties": {"Handler": handler, "CodeUri": str(code), "Events": events, **props},
    }


@dataclass
class Running:
    url: str
    log: io.StringIO
    gateway: Gateway


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    code = tmp_path_factory.mktemp("echo")
    (code / "echo_fn.py").write_text(ECHO)
    template = copy.deepcopy(cfn.load())
    template["Resources"]["EchoFunction"] = _function(
        "echo_fn.lambda_handler", code, "ANY", "/echo/{proxy+}", Timeout=7, MemorySize=256
    )
    template["Resources"]["EchoItemFunction"] = _function("echo_fn.lambda_handler", code, "GET", "/echo/items/{itemId}")
    routes = cfn.routes(template)
    paths = [str(p) for p in cfn.layer_dirs(template)] + sorted({str(r.code_dir) for r in routes})
    invoker = PoolInvoker(paths, concurrency=2)
    log = io.StringIO()
    gateway = Gateway(routes, function_configs(template), invoker, secret=SECRET, log=log)
    server = GatewayServer(("127.0.0.1", 0), gateway, log=log)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Running(f"http://127.0.0.1:{server.server_port}", log, gateway)
    finally:
        server.shutdown()
        server.server_close()
        invoker.shutdown()


def _token(**claims: Any) -> str:
    return make_token("eve", 600, key=SECRET, **claims)


def _get(running: Running, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {_token()}", **kwargs.pop("headers", {})}
    return httpx.request(kwargs.pop("method", "GET"), running.url + path, headers=headers, timeout=60, **kwargs)


def test_request_becomes_a_payload_v2_event(echo: Running) -> None:
    token = _token(groups=["admin", "users"], n=5, flag=True)
    before = time.time()
    response = httpx.get(
        echo.url + "/echo/a/b%20c?x=1&x=2&y=&z=a%2Bb",
        headers=[
            ("Authorization", f"Bearer {token}"),
            ("Cookie", "a=1; b=2"),
            ("X-Multi", "1"),
            ("X-Multi", "2"),
            ("User-Agent", "echo-test/1"),
        ],
        timeout=60,
    )
    assert response.status_code == 200, response.text
    event, context = response.json()["event"], response.json()["context"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "ANY /echo/{proxy+}"
    assert event["rawPath"] == "/echo/a/b%20c"
    assert event["rawQueryString"] == "x=1&x=2&y=&z=a%2Bb"
    assert event["queryStringParameters"] == {"x": "1,2", "y": "", "z": "a+b"}
    assert event["pathParameters"] == {"proxy": "a/b c"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-multi"] == "1,2"
    assert event["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert all(name == name.lower() for name in event["headers"])
    assert event["isBase64Encoded"] is False and "body" not in event
    rc = event["requestContext"]
    assert rc["http"] == {
        "method": "GET",
        "path": "/echo/a/b%20c",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "echo-test/1",
    }
    assert rc["routeKey"] == event["routeKey"] and rc["stage"] == "$default"
    assert uuid.UUID(rc["requestId"])
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", rc["time"])
    assert before * 1000 - 1000 <= rc["timeEpoch"] <= time.time() * 1000 + 1000
    assert rc["domainName"] == "127.0.0.1"
    claims = rc["authorizer"]["jwt"]["claims"]
    assert rc["authorizer"]["jwt"]["scopes"] is None
    assert {k: claims[k] for k in ("sub", "groups", "n", "flag")} == {
        "sub": "eve",
        "groups": "[admin users]",
        "n": "5",
        "flag": "true",
    }
    assert all(isinstance(value, str) for value in claims.values())
    assert context["function_name"] == "EchoFunction"
    assert context["memory_limit_in_mb"] == 256
    assert context["invoked_function_arn"].endswith(":function:EchoFunction")
    assert uuid.UUID(context["aws_request_id"])
    assert 5000 < context["remaining_ms"] <= 7000


def test_bodies_text_and_binary(echo: Running) -> None:
    text = _get(echo, "/echo/x", method="POST", json={"content": "héllo"}).json()["event"]
    assert text["isBase64Encoded"] is False and json.loads(text["body"]) == {"content": "héllo"}
    raw = b"\xff\x00binary\x80"
    binary = _get(echo, "/echo/x", method="POST", content=raw).json()["event"]
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == raw


def test_the_most_specific_route_wins_and_takes_globals(echo: Running) -> None:
    body = _get(echo, "/echo/items/42").json()
    assert body["event"]["routeKey"] == "GET /echo/items/{itemId}"
    assert body["event"]["pathParameters"] == {"itemId": "42"}
    # Timeout and MemorySize come from Globals.Function in template.yaml (10 s, 512 MB).
    assert body["context"]["function_name"] == "EchoItemFunction"
    assert body["context"]["memory_limit_in_mb"] == 512
    assert 7000 < body["context"]["remaining_ms"] <= 10_000
    # POST does not match the GET-only route; the greedy ANY route takes it.
    assert _get(echo, "/echo/items/42", method="POST").json()["event"]["routeKey"] == "ANY /echo/{proxy+}"


def test_every_template_route_is_routed_to_its_function(echo: Running) -> None:
    for route in cfn.routes():
        concrete = re.sub(r"\{(\w+)\}", "01JDQ3Z8N4V2K7M9XQ4W5T6Y7Z", route.path)
        found = echo.gateway.route_for(route.method, concrete)
        assert found is not None, route
        assert found[0].route.function == route.function


def test_responses_are_translated_back(echo: Running) -> None:
    plain = _get(echo, "/echo/plain")
    assert (plain.status_code, plain.text) == (200, "hello from a plain string")
    assert plain.headers["content-type"] == "application/json"
    assert _get(echo, "/echo/dict").json() == {"plain": True}
    cookies = _get(echo, "/echo/cookies")
    assert cookies.status_code == 201 and cookies.content == b""
    assert cookies.headers["x-one"] == "1"
    assert cookies.headers.get_list("x-many") == ["a", "b"]
    assert cookies.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2"]
    binary = _get(echo, "/echo/binary")
    assert binary.content == bytes(range(256))
    assert binary.headers["content-type"] == "application/octet-stream"


def test_function_failures_are_500_with_the_contract_body(echo: Running) -> None:
    for path, logged in [("/echo/boom", "RuntimeError: boom"), ("/echo/malformed", "malformed response")]:
        response = _get(echo, path)
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "internal_error"
        assert logged in echo.log.getvalue()
    assert re.search(r"^GET /echo/boom 500 \d+ms$", echo.log.getvalue(), re.MULTILINE)


def test_oversized_bodies_are_413(echo: Running) -> None:
    response = _get(echo, "/echo/big", method="POST", content=b"x" * (10 * 1024 * 1024 + 1))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_authorizer_accepts_only_valid_hs256_tokens() -> None:
    now = int(time.time())
    good = jwt.encode({"sub": "u", "exp": now + 60, "aud": "anything"}, SECRET, algorithm="HS256")
    assert authorize(f"Bearer {good}", SECRET)["sub"] == "u"
    assert authorize(f"bearer  {good}", SECRET)["aud"] == "anything"
    cases = {
        None: "Missing Authorization",
        f"Token {good}": "must be 'Bearer <token>'",
        f"Bearer {jwt.encode({'sub': 'u', 'exp': now - 1}, SECRET, algorithm='HS256')}": "expired",
        f"Bearer {jwt.encode({'exp': now + 60}, SECRET, algorithm='HS256')}": "no subject",
        f"Bearer {jwt.encode({'sub': ' '}, SECRET, algorithm='HS256')}": "non-empty string",
        f"Bearer {jwt.encode({'sub': 'u'}, 'other-secret', algorithm='HS256')}": "signature",
        f"Bearer {jwt.encode({'sub': 'u'}, SECRET, algorithm='HS512')}": "not valid",
        "Bearer a.b.c": "not valid",
    }
    for header, message in cases.items():
        with pytest.raises(Unauthorized, match=message):
            authorize(header, SECRET)
